// Records from devices: a filtered, paged list, and one record with its files,
// their images and their classification.

import { fileUrl, get, query } from "../api.js";
import { field, h, select } from "../dom.js";
import { number, t, term, when } from "../i18n.js";
import { facts, filterMover, json, link, pager, section, table } from "../ui.js";

const STATUSES = ["", "received", "analysed", "failed"];

export async function records(ctx) {
  const filters = Object.fromEntries(ctx.query);
  const found = await get(`/records${query({ per_page: 50, ...filters })}`);
  const move = filterMover("records", filters);
  const choose = (name, values, prefix) =>
    field(
      t(`records.${name}`),
      select({ name, onchange: (e) => move({ [name]: e.target.value }) }, values.map((v) => [v, v ? term(prefix, v) : t("filter.any")]), filters[name]),
    );
  const columns = [
    [t("records.received"), (r) => link(`records/${r.id}`, when(r.received_at))],
    [t("records.device"), (r) => link(`devices/${r.device_id}`, r.device_id)],
    [t("records.kind"), (r) => term("kind", r.kind)],
    [t("records.status"), (r) => term("record_status", r.status)],
    [t("records.files"), (r) => number(r.files.length)],
  ];
  return h(
    "div",
    {},
    h("h1", {}, t("nav.records")),
    h(
      "form",
      { class: "filters", onsubmit: (e) => e.preventDefault() },
      field(t("records.kind"), h("input", { name: "kind", value: filters.kind ?? "", onchange: (e) => move({ kind: e.target.value.trim() }) })),
      choose("status", STATUSES, "record_status"),
    ),
    table(t("nav.records"), columns, found.items),
    pager(found.page, found.per_page, found.total, (page) => move({ page })),
  );
}

function fileView(file) {
  const figure = h(
    "figure",
    { class: "file" },
    h(
      "figcaption",
      {},
      facts([
        [t("records.digest"), h("code", {}, file.sha256)],
        [t("records.size"), file.size === null ? t("records.file_missing") : number(file.size)],
        [t("records.category"), file.classification ? `${file.classification.category} (${number(file.classification.confidence * 100, 1)}%)` : null],
      ]),
    ),
  );
  if (file.present && (file.content_type || "").startsWith("image/")) {
    fileUrl(file.url)
      .then(({ url }) => figure.prepend(h("img", { src: url, alt: t("records.image") })))
      .catch(() => {});
  }
  return figure;
}

export async function record(ctx) {
  const r = await get(`/records/${ctx.params.id}`);
  return h(
    "div",
    {},
    h("h1", {}, t("records.title", { kind: term("kind", r.kind) })),
    section(
      t("device.details"),
      facts([
        [t("records.device"), link(`devices/${r.device_id}`, r.device_id)],
        [t("records.record_id"), r.record_id],
        [t("records.at"), when(r.at)],
        [t("records.received"), when(r.received_at)],
        [t("records.status"), term("record_status", r.status)],
        [t("records.error"), r.analysis?.last_error || null],
      ]),
    ),
    section(t("records.payload"), json(r.payload)),
    section(t("records.files"), r.files.length ? h("div", { class: "thumbs" }, r.files.map(fileView)) : h("p", { class: "empty" }, t("list.empty"))),
  );
}
