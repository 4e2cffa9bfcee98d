// The fleet at a glance: devices by state, connected now, commands and records in
// the last hour, records per day, classification today. Redrawn when a device
// changes state or a record arrives (at most every few seconds), and every minute.

import { can, get, query } from "../api.js";
import { debounce, h, put } from "../dom.js";
import { number, t, term } from "../i18n.js";
import { link, problem, section } from "../ui.js";

const REFRESH_MS = 60_000;

function tile(label, value, path) {
  const shown = h("strong", { class: "value" }, typeof value === "number" ? number(value) : value);
  return h("div", { class: "tile" }, h("span", { class: "label" }, label), path ? link(path, shown) : shown);
}

/** Horizontal bars of name → count, largest first. */
function bars(title, counts, prefix) {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  const top = Math.max(1, ...entries.map(([, n]) => n));
  return section(
    title,
    entries.length
      ? h(
          "ul",
          { class: "bars" },
          entries.map(([name, n]) =>
            h(
              "li",
              {},
              h("span", { class: "name" }, prefix ? term(prefix, name) : name),
              h("meter", { min: 0, max: top, value: n }),
              h("span", { class: "count" }, number(n)),
            ),
          ),
        )
      : h("p", { class: "empty" }, t("list.empty")),
  );
}

async function fleet() {
  const hourAgo = new Date(Date.now() - 3600_000).toISOString();
  const [stats, records, classification] = await Promise.all([
    get("/stats"),
    can("records:read") ? get(`/records/stats${query({ since: hourAgo })}`) : null,
    can("records:read") ? get("/classify/stats") : null,
  ]);
  const days = records ? await get("/records/stats") : null;
  const tiles = [
    tile(t("overview.devices"), stats.devices, "devices"),
    ...["online", "unknown", "offline"].map((state) => tile(term("state", state), stats.by_state[state], `devices?state=${state}`)),
    tile(t("overview.connected"), stats.connected),
    tile(t("overview.commands_hour"), stats.commands_last_hour),
  ];
  if (records) tiles.push(tile(t("overview.records_hour"), records.records, "records"));
  const parts = [h("div", { class: "tiles", "data-testid": "tiles" }, tiles), bars(t("overview.by_type"), stats.by_type)];
  if (days) parts.push(bars(t("overview.records_by_day"), Object.fromEntries(Object.entries(days.by_day).sort().reverse().slice(0, 7))));
  if (classification) {
    parts.push(
      section(
        t("overview.classification"),
        h(
          "div",
          { class: "tiles" },
          tile(t("overview.requests_today"), classification.requests),
          tile(t("overview.hit_rate"), `${number(classification.hit_rate * 100, 1)}%`),
          tile(t("overview.calls_saved"), classification.model_calls_saved),
        ),
      ),
      bars(t("overview.categories"), classification.categories),
    );
  }
  return parts;
}

export async function overview(ctx) {
  const root = h("div", { class: "overview" }, h("h1", {}, t("nav.overview")));
  const body = h("div", {}, await fleet());
  root.append(body);
  const redraw = async () => {
    if (ctx.stale()) return;
    try {
      put(body, await fleet());
    } catch (error) {
      put(body, problem(error));
    }
  };
  const soon = debounce(redraw, 2000);
  ctx.live((event) => {
    if (event.type === "device.state" || event.type === "record.created") soon();
  });
  const timer = setInterval(redraw, REFRESH_MS);
  ctx.onDispose(() => clearInterval(timer));
  return root;
}
