// The audit log, newest first, filtered by actor, action and target.

import { get, query } from "../api.js";
import { field, h } from "../dom.js";
import { t, term, when } from "../i18n.js";
import { filterMover, pager, table } from "../ui.js";

const FILTERS = ["actor", "action", "target"];

export async function audit(ctx) {
  const filters = Object.fromEntries(ctx.query);
  const found = await get(`/audit${query({ per_page: 50, ...filters })}`);
  const move = filterMover("audit", filters);
  const controls = FILTERS.map((name) =>
    field(t(`audit.${name}`), h("input", { name, value: filters[name] ?? "", onchange: (e) => move({ [name]: e.target.value.trim() }) })),
  );
  const columns = [
    [t("audit.at"), (a) => when(a.at)],
    [t("audit.actor"), (a) => a.actor_name],
    [t("audit.action"), (a) => h("code", {}, a.action)],
    [t("audit.target"), (a) => (a.target_id ? `${a.target_type}:${a.target_id}` : a.target_type)],
    [t("audit.result"), (a) => term("audit.outcome", a.result) + (a.error_type ? ` (${a.error_type})` : "")],
    [t("audit.status"), (a) => a.http_status],
    [t("audit.source"), (a) => a.source_address],
    [t("audit.fields"), (a) => a.fields.join(", ")],
  ];
  return h(
    "div",
    {},
    h("h1", {}, t("nav.audit")),
    h("form", { class: "filters", onsubmit: (e) => e.preventDefault() }, controls),
    table(t("nav.audit"), columns, found.items),
    pager(found.page, found.per_page, found.total, (page) => move({ page })),
  );
}
