// The device list: paged by the server, filtered by state, type, group, text and
// a label selector. The filters live in the URL (#/devices?state=online&q=cam),
// and every filter there is handed to GET /api/v1/devices as it is, so a new
// filter of the API needs only its control here. States change live.

import { can, get, query } from "../api.js";
import { debounce, field, h, put, select } from "../dom.js";
import { t, term, when } from "../i18n.js";
import { badge, link, pager, problem, table } from "../ui.js";

const PER_PAGE = 50;
const STATES = ["online", "unknown", "offline"];

export async function devices(ctx) {
  const filters = Object.fromEntries(ctx.query);
  const results = h("div", { class: "results", "data-testid": "device-results" });
  const rows = new Map();

  let asked = 0;
  const apply = async () => {
    const shown = Object.fromEntries(Object.entries(filters).filter(([, v]) => v));
    history.replaceState(null, "", `#/devices${query(shown)}`);
    const turn = ++asked; // typing asks again and again: only the last answer is drawn
    try {
      const page = await get(`/devices${query({ per_page: PER_PAGE, ...shown })}`);
      if (turn === asked && !ctx.stale()) draw(page);
    } catch (error) {
      put(results, problem(error));
    }
  };
  const go = (page) => {
    filters.page = String(page);
    apply();
  };

  function draw(page) {
    rows.clear();
    const columns = [
      [t("device.name"), (d) => link(`devices/${d.device_id}`, d.name)],
      [t("device.state"), (d) => badge(d.state)],
      [t("device.type"), (d) => d.type],
      [t("device.serial"), (d) => d.hardware_sn],
      [t("device.model"), (d) => d.hardware_model],
      [t("device.updated"), (d) => when(d.updated_at)],
    ];
    const node = table(t("nav.devices"), columns, page.items, (d) => ({ "data-device": d.device_id }));
    for (const tr of node.querySelectorAll("tr[data-device]")) rows.set(tr.dataset.device, tr);
    put(results, node, pager(page.page, page.per_page, page.total, go));
  }

  ctx.live((event) => {
    if (event.type !== "device.state") return;
    const row = rows.get(event.device_id);
    if (row) row.cells[1].replaceChildren(badge(event.data.state));
  });

  const change = (name) => (event) => {
    filters[name] = event.target.value;
    delete filters.page;
    apply();
  };
  const stateOptions = [["", t("filter.any_state")], ...STATES.map((s) => [s, term("state", s)])];
  const typeSelect = select({ name: "type", onchange: change("type") }, [["", t("filter.any_type")]], "");
  const controls = [
    field(t("filter.state"), select({ name: "state", onchange: change("state") }, stateOptions, filters.state)),
    field(t("filter.type"), typeSelect),
  ];
  const groupSelect = select({ name: "group", onchange: change("group") }, [["", t("filter.any_group")]], "");
  if (can("groups:read")) controls.push(field(t("filter.group"), groupSelect));
  const search = h("input", { name: "q", type: "search", value: filters.q ?? "", oninput: debounce(change("q"), 300) });
  controls.push(field(t("filter.text"), search));
  const labels = h("input", {
    name: "selector", type: "search", value: filters.selector ?? "",
    oninput: debounce(change("selector"), 500),
  });
  controls.push(field(t("filter.labels"), labels));
  const form = h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() }, controls);

  // The list first, alone: the server answers it sooner without the fleet's
  // counts to read at the same time; what the filters offer fills in after.
  const offer = (control, options, value) => {
    control.append(...options.map(([v, label]) => h("option", { value: v }, label)));
    control.value = value ?? "";
  };
  await apply();
  get("/stats")
    .then((stats) => offer(typeSelect, Object.keys(stats.by_type).sort().map((k) => [k, k]), filters.type))
    .catch((error) => put(results, problem(error)));
  if (can("groups:read")) {
    get("/groups?per_page=500")
      .then((page) => offer(groupSelect, page.items.map((g) => [g.group_id, g.name]), filters.group))
      .catch((error) => put(results, problem(error)));
  }
  return h("div", {}, h("h1", {}, t("nav.devices")), form, results);
}
