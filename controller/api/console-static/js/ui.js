// Pieces every page uses: errors, state badges, tables, pagers, sections.

import { h, put, uid } from "./dom.js";
import { query } from "./api.js";
import { t, term } from "./i18n.js";

/** What went wrong, in the reader's language, with the server's own words after. */
export function problem(error) {
  const type = error?.type;
  const known = type ? term("error", type) : null;
  const summary = known && known !== type ? known : t("error.unexpected");
  return h("p", { class: "problem", role: "alert" }, summary, h("span", { class: "detail" }, error?.message ?? ""));
}

export function badge(state) {
  return h("span", { class: `badge state-${state}`, "data-state": state }, term("state", state));
}

/** A section named by its heading: a landmark (region) a screen reader lists. */
export function section(title, ...children) {
  const id = uid("h");
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

/** A table: columns are [heading, row => cell]. */
export function table(caption, columns, rows, rowProps) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, columns.map(([heading]) => h("th", { scope: "col" }, heading)))),
      h(
        "tbody",
        {},
        rows.length
          ? rows.map((row) => h("tr", rowProps ? rowProps(row) : {}, columns.map(([, cell]) => h("td", {}, cell(row)))))
          : h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, t("list.empty"))),
      ),
    ),
  );
}

/** Previous / next with "page N of M"; go(page) moves. */
export function pager(page, perPage, total, go) {
  const pages = Math.max(1, Math.ceil(total / perPage));
  return h(
    "nav",
    { class: "pager", "aria-label": t("list.pages") },
    h("button", { type: "button", disabled: page <= 1, onclick: () => go(page - 1) }, t("list.previous")),
    h("span", { "aria-live": "polite" }, t("list.page", { page, pages, total })),
    h("button", { type: "button", disabled: page >= pages, onclick: () => go(page + 1) }, t("list.next")),
  );
}

/** JSON as a reader sees it, in a pre block. */
export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

/** A link inside the console. */
export function link(path, ...children) {
  return h("a", { href: `#/${path}` }, ...children);
}

/** A definition list of [term, value] pairs (values may be nodes). */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value === null || value === undefined || value === "" ? "—" : value)]),
  );
}

/** A form whose submit runs action(message); while it runs the button is off,
 *  and what fails shows in message, in the reader's language. */
export function actionForm(props, controls, label, action) {
  const message = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit" }, label);
  const submit = async (event) => {
    event.preventDefault();
    button.disabled = true;
    put(message);
    try {
      await action(message);
    } catch (error) {
      put(message, problem(error));
    } finally {
      button.disabled = false;
    }
  };
  return h("form", { ...props, onsubmit: submit }, controls, message, button);
}

/** A button for what cannot be undone: it asks first, then runs action(). */
export function dangerButton(label, name, question, action) {
  const press = async () => {
    if (confirm(question)) await action();
  };
  return h("button", { type: "button", class: "danger", "aria-label": name, onclick: press }, label);
}

/** A list page's filters kept in the URL: move({kind: "x"}) goes to that list,
 *  on its first page unless the change is the page. */
export function filterMover(route, filters) {
  return (changes) => {
    const next = { ...filters, ...changes };
    if (!("page" in changes)) delete next.page;
    window.location.hash = `#/${route}${query(next)}`;
  };
}
