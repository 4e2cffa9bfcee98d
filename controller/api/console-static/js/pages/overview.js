// The fleet at a glance: devices by state, connected now, commands and records in
// the last hour, records per day, classification today. Redrawn when a device
// changes state or a record arrives (at most every few seconds), and every minute.

import { can, get, query } from "../api.js";
import { debounce, h, put } from "../dom.js";
import { columnChart } from "../chart.js";
import { language, number, t, term } from "../i18n.js";
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

const HOUR_MS = 3600_000;

/** The last 24 UTC hours, oldest first, as the API names them, with a local label. */
function lastDay(byHour) {
  const now = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
  return Array.from({ length: 24 }, (_, i) => {
    const at = new Date(now - (23 - i) * HOUR_MS);
    const key = at.toISOString().slice(0, 13);
    const label = at.toLocaleTimeString(language(), { hour: "2-digit", minute: "2-digit" });
    return [label, byHour[key] ?? 0];
  });
}

async function fleet() {
  const since = (hours) => query({ since: new Date(Date.now() - hours * HOUR_MS).toISOString() });
  const readsRecords = can("records:read");
  const [stats, records, day, classification] = await Promise.all([
    get("/stats"),
    readsRecords ? get(`/records/stats${since(1)}`) : null,
    readsRecords ? get(`/records/stats${since(24)}`) : null,
    readsRecords ? get("/classify/stats") : null,
  ]);
  const tiles = [
    tile(t("overview.devices"), stats.devices, "devices"),
    ...["online", "unknown", "offline"].map((state) => tile(term("state", state), stats.by_state[state], `devices?state=${state}`)),
    tile(t("overview.connected"), stats.connected),
    tile(t("overview.commands_hour"), stats.commands_last_hour),
  ];
  if (records) tiles.push(tile(t("overview.records_hour"), records.records, "records"));
  const parts = [h("div", { class: "tiles", "data-testid": "tiles" }, tiles), bars(t("overview.by_type"), stats.by_type)];
  if (day) parts.push(section(t("overview.uploads_per_hour"), columnChart(t("overview.uploads_per_hour"), lastDay(day.by_hour))));
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
