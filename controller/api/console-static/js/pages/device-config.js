// A device's configuration on its page: what it should run (its groups' documents
// merged, its own on top) beside what it last reported, whether they agree, and
// for those who may, its own document to edit.
//
// A save sends If-Match with the version the editor was opened on: when someone
// changed the document meanwhile the server answers 412, and the panel says so,
// shows the newer document, and keeps what the user typed for them to redo.

import { ApiError, call, can, get } from "../api.js";
import { field, h, put } from "../dom.js";
import { number, t, when } from "../i18n.js";
import { facts, json, problem, section } from "../ui.js";

function syncBadge(config) {
  if (config.in_sync === null) return h("span", { class: "badge sync-unsupported", "data-sync": "unsupported" }, t("config.unsupported"));
  const key = config.in_sync ? "in_sync" : "out_of_sync";
  return h("span", { class: `badge sync-${key}`, "data-sync": key }, t(`config.${key}`));
}

function summary(own, effective) {
  const pairs = [
    [t("config.sync"), syncBadge(effective)],
    [t("config.own_version"), number(own.desired_version)],
    [t("config.effective_version"), number(effective.effective_version)],
    [t("config.reported_version"), effective.reported_version === null ? null : number(effective.reported_version)],
    [t("config.groups"), effective.groups.join(", ")],
    [t("config.updated"), when(effective.updated_at)],
    [t("config.reported_at"), when(effective.reported_at)],
  ];
  if (effective.reason) pairs.splice(1, 0, [t("config.reason"), effective.reason]);
  return facts(pairs);
}

function documents(effective) {
  const reported = effective.reported === null || effective.reported === undefined ? h("p", { class: "empty" }, t("config.not_reported")) : json(effective.reported);
  return h(
    "div",
    { class: "side-by-side" },
    h("figure", { class: "doc", "data-testid": "config-desired" }, h("figcaption", {}, t("config.desired")), json(effective.desired)),
    h("figure", { class: "doc", "data-testid": "config-reported" }, h("figcaption", {}, t("config.reported")), reported),
  );
}

/** The editor of the device's own document; saved(answer) after a save. */
function editor(deviceId, own, saved, reread) {
  let version = own.desired_version;
  const text = h("textarea", { name: "config", rows: 8, spellcheck: "false" });
  text.value = JSON.stringify(own.desired, null, 2);
  const shown = h("span", { "data-testid": "config-version" }, String(version));
  const message = h("div", { "aria-live": "polite", "data-testid": "config-message" });
  const button = h("button", { type: "submit" }, t("config.save"));
  const submit = async (event) => {
    event.preventDefault();
    put(message);
    let doc;
    try {
      doc = JSON.parse(text.value);
    } catch {
      doc = null;
    }
    if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
      put(message, problem({ type: "CONFIG_JSON", message: "" }));
      return;
    }
    button.disabled = true;
    try {
      const answer = await call("PUT", `/devices/${deviceId}/config`, { config: doc }, { "If-Match": String(version) });
      version = answer.desired_version;
      shown.textContent = String(version);
      put(message, h("p", { class: "outcome outcome-success" }, t("config.saved", { version })));
      await saved();
    } catch (error) {
      if (error instanceof ApiError && error.status === 412) {
        const now = await reread();
        version = now.desired_version;
        shown.textContent = String(version);
        put(message, h("p", { class: "problem", role: "alert" }, t("config.changed_meanwhile", { version })));
      } else {
        put(message, problem(error));
      }
    } finally {
      button.disabled = false;
    }
  };
  return h(
    "form",
    { class: "config-edit", "data-testid": "config-form", onsubmit: submit },
    h("h3", {}, t("config.edit")),
    h("p", { class: "hint" }, t("config.edit_hint"), " ", t("config.editing_version"), " ", shown),
    field(t("config.document"), text),
    button,
    message,
  );
}

/** The panel; ctx.live redraws it when the device reports its configuration.
 *  groupIds: a promise of the device's groups (who may edit depends on them). */
export async function configPanel(deviceId, groupIds, ctx) {
  const read = () => Promise.all([get(`/devices/${deviceId}/config`), get(`/devices/${deviceId}/config?effective=true`)]);
  const state = h("div", { "data-testid": "config" });
  const draw = ([own, effective]) => put(state, summary(own, effective), documents(effective));
  const redraw = async () => {
    try {
      const both = await read();
      if (!ctx.stale()) draw(both);
      return both[0];
    } catch (error) {
      put(state, problem(error));
      throw error;
    }
  };
  const [both, groups] = await Promise.all([read(), groupIds]);
  draw(both);
  ctx.live((event) => {
    if (event.device_id === deviceId && event.type === "config.reported") redraw().catch(() => {});
  });
  const parts = [state];
  if (can("config:write", groups)) parts.push(editor(deviceId, both[0], redraw, redraw));
  return section(t("config.title"), ...parts);
}
