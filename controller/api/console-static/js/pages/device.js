// One device: details, live status with the last hour's chart, its configuration
// (desired beside reported), groups, the event log, recent records with
// thumbnails, and (for those who may) a command form.
//
// The chart starts from the last hour the device's session keeps (a point per
// 30 s; for a device not connected, the statuses its log kept) and grows with
// each status the page reads while it is open.

import { ApiError, call, can, fileUrl, get, query } from "../api.js";
import { percentChart } from "../chart.js";
import { field, h, put } from "../dom.js";
import { number, t, term, when } from "../i18n.js";
import { badge, facts, json, link, problem, section, table } from "../ui.js";
import { configPanel } from "./device-config.js";

const STATUS_EVERY_MS = 15_000;
const HOUR_MS = 3600_000;
const EVENTS = 20;
const RECORDS = 6;
const SERIES = [
  ["cpu", "cpu_percent", "status.cpu"],
  ["memory", "memory_used_percent", "status.memory"],
  ["disk", "disk_used_percent", "status.disk"],
];
const ORDERS = ["restart", "upload_log"];

function details(d) {
  return facts([
    [t("device.id"), d.device_id],
    [t("device.type"), d.type],
    [t("device.serial"), d.hardware_sn],
    [t("device.model"), d.hardware_model],
    [t("device.description"), d.description],
    [t("device.eth_mac"), d.eth_mac],
    [t("device.wifi_mac"), d.wifi_mac],
    [t("device.imei"), d.lte_imei],
    [t("device.base_version"), d.base_version],
    [t("device.business_version"), d.business_version],
    [t("device.disabled"), d.disabled ? t("common.yes") : t("common.no")],
    [t("device.created"), when(d.created_at)],
    [t("device.updated"), when(d.updated_at)],
  ]);
}

/** The last hour as [time ms, values]: what the session keeps (a point per
 *  30 s), or for a device that is not connected the statuses its log kept. */
async function lastHour(deviceId, state) {
  if (state !== "offline") {
    try {
      const kept = await get(`/devices/${deviceId}/status/history`);
      return kept.items.map((item) => [Date.parse(item.at), item]);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 409)) throw error;
    }
  }
  const since = new Date(Date.now() - HOUR_MS).toISOString();
  const logged = await get(`/devices/${deviceId}/events${query({ event: "status_uploaded", since, per_page: 500 })}`);
  return logged.items.reverse().map((e) => [Date.parse(e.at), e.detail]);
}

/** The live status panel: numbers, the chart, and the points behind it. */
function statusPanel(deviceId, history) {
  const points = Object.fromEntries(SERIES.map(([key]) => [key, []]));
  for (const [at, values] of history) {
    for (const [key, field] of SERIES) points[key].push([at, values[field]]);
  }
  const body = h("div", { "data-testid": "status" });
  let lastSeen = null;
  const draw = (note) => {
    const series = SERIES.map(([key, , label]) => ({ key, label: t(label), points: points[key] }));
    put(body, percentChart(t("status.chart"), series), note ?? []);
  };
  const add = (at, values) => {
    for (const [key, field] of SERIES) points[key].push([at, values[field]]);
  };
  const read = async () => {
    try {
      const status = await get(`/devices/${deviceId}/status`);
      if (status.last_seen !== lastSeen) {
        lastSeen = status.last_seen;
        add(Date.parse(status.last_seen), status);
      }
      draw(h("p", { class: "hint" }, t("status.last_seen", { at: when(status.last_seen) })));
    } catch (error) {
      if (error instanceof ApiError && error.status === 409) draw(h("p", { class: "hint" }, t("status.offline")));
      else draw(problem(error));
    }
  };
  return { node: section(t("status.title"), body), read, draw, add };
}

function commandForm(deviceId, onResult) {
  const order = h("input", { name: "order", list: "orders", required: true, autocomplete: "off" });
  const params = h("textarea", { name: "params", rows: 3, spellcheck: "false" });
  const timeout = h("input", { name: "timeout", type: "number", min: "0.1", max: "300", step: "0.1" });
  const result = h("div", { class: "result", "aria-live": "polite", "data-testid": "command-result" });
  const button = h("button", { type: "submit" }, t("command.send"));
  const form = h(
    "form",
    {
      class: "command",
      "data-testid": "command-form",
      onsubmit: async (event) => {
        event.preventDefault();
        let parsed = {};
        if (params.value.trim()) {
          try {
            parsed = JSON.parse(params.value);
          } catch {
            put(result, problem({ type: "PARAMS_JSON", message: "" }));
            return;
          }
          if (typeof parsed !== "object" || Array.isArray(parsed) || parsed === null) {
            put(result, problem({ type: "PARAMS_JSON", message: "" }));
            return;
          }
        }
        const body = { order: order.value.trim(), params: parsed };
        if (timeout.value) body.timeout = Number(timeout.value);
        button.disabled = true;
        put(result, h("p", { class: "hint" }, t("command.waiting")));
        try {
          const answer = await call("POST", `/devices/${deviceId}/commands`, body);
          put(
            result,
            h("p", { class: `outcome outcome-${answer.status}` }, term("command.status", answer.status), " ", answer.message),
            answer.data === null || answer.data === undefined ? [] : json(answer.data),
          );
          onResult();
        } catch (error) {
          put(result, problem(error));
        } finally {
          button.disabled = false;
        }
      },
    },
    h("datalist", { id: "orders" }, ORDERS.map((o) => h("option", { value: o }))),
    field(t("command.order"), order),
    field(t("command.params"), params),
    field(t("command.timeout"), timeout),
    button,
    result,
  );
  return section(t("command.title"), h("p", { class: "hint" }, t("command.hint")), form);
}

function eventLog(events) {
  const columns = [
    [t("event.at"), (e) => when(e.at)],
    [t("event.event"), (e) => term("event", e.event)],
    [t("event.detail"), (e) => (Object.keys(e.detail || {}).length ? h("code", {}, JSON.stringify(e.detail)) : "")],
  ];
  return table(t("event.title"), columns, events);
}

function thumbnails(page) {
  const items = page.items.map((r) => {
    const figure = h("figure", { class: "thumb" }, h("figcaption", {}, link(`records/${r.id}`, `${r.kind} · ${when(r.received_at)}`)));
    if (r.files.length) {
      fileUrl(`/api/v1/files/${r.files[0]}`)
        .then(({ url, type }) => {
          if (type.startsWith("image/")) figure.prepend(h("img", { src: url, alt: t("records.image_of", { kind: r.kind }) }));
        })
        .catch(() => figure.prepend(h("span", { class: "hint" }, t("records.file_missing"))));
    }
    return figure;
  });
  return items.length ? h("div", { class: "thumbs" }, items) : h("p", { class: "empty" }, t("list.empty"));
}

export async function device(ctx) {
  const id = ctx.params.id;
  const found = get(`/devices/${id}`);
  const memberOf = get(`/devices/${id}/groups`);
  const [d, groups, events, history, records, config] = await Promise.all([
    found,
    memberOf,
    get(`/devices/${id}/events${query({ per_page: EVENTS })}`),
    found.then((d) => lastHour(id, d.state)),
    can("records:read") ? get(`/records${query({ device_id: id, per_page: RECORDS })}`) : null,
    configPanel(id, memberOf.then((page) => page.items.map((g) => g.group_id)), ctx),
  ]);
  const groupIds = groups.items.map((g) => g.group_id);
  const state = h("span", { "data-testid": "state" }, badge(d.state));
  const status = statusPanel(id, history);
  const log = h("div", {}, eventLog(events.items));
  const reloadLog = async () => {
    const page = await get(`/devices/${id}/events${query({ per_page: EVENTS })}`);
    if (!ctx.stale()) put(log, eventLog(page.items));
  };
  let current = d.state;
  if (current === "offline") status.draw(h("p", { class: "hint" }, t("status.offline")));
  else await status.read();
  const timer = setInterval(() => current !== "offline" && status.read(), STATUS_EVERY_MS);
  ctx.onDispose(() => clearInterval(timer));
  ctx.live((event) => {
    if (event.device_id !== id) return;
    if (event.type === "device.state") {
      current = event.data.state;
      put(state, badge(current));
      if (current !== "offline") status.read();
    } else if (event.type === "device.status") {
      status.add(Date.parse(event.at), event.data);
      status.draw();
    }
    reloadLog().catch(() => {});
  });
  const parts = [
    h("h1", {}, d.name, " ", state),
    section(t("device.details"), details(d)),
    status.node,
    config,
  ];
  if (can("commands:send", groupIds)) parts.push(commandForm(id, () => reloadLog().catch(() => {})));
  parts.push(
    section(
      t("device.groups"),
      groups.items.length ? h("ul", { class: "chips" }, groups.items.map((g) => h("li", {}, link(`devices?group=${g.group_id}`, g.name)))) : h("p", { class: "empty" }, t("list.empty")),
    ),
    section(t("event.title"), log),
  );
  if (records) parts.push(section(t("records.recent"), thumbnails(records)));
  return h("div", { class: "device" }, parts);
}
