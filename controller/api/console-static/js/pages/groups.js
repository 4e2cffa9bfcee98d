// Groups, by name, with their device counts; a group opens its devices.

import { get, query } from "../api.js";
import { h } from "../dom.js";
import { number, t, when } from "../i18n.js";
import { link, pager, table } from "../ui.js";

export async function groups(ctx) {
  const page = Number(ctx.query.get("page") || 1);
  const found = await get(`/groups${query({ page, per_page: 100 })}`);
  const columns = [
    [t("group.name"), (g) => link(`devices?group=${g.group_id}`, g.name)],
    [t("group.description"), (g) => g.description],
    [t("group.devices"), (g) => number(g.device_count)],
    [t("group.created"), (g) => when(g.created_at)],
  ];
  return h(
    "div",
    {},
    h("h1", {}, t("nav.groups")),
    table(t("nav.groups"), columns, found.items),
    pager(found.page, found.per_page, found.total, (n) => (window.location.hash = `#/groups?page=${n}`)),
  );
}
