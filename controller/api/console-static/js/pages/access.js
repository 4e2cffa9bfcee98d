// Users and their roles, the roles, and API keys (an administrator's pages; the
// keys page shows everyone their own keys).

import { call, can, currentUser, get, query } from "../api.js";
import { field, h, put, select } from "../dom.js";
import { t, when } from "../i18n.js";
import { actionForm, dangerButton, pager, section, table } from "../ui.js";

function bindings(roles) {
  return roles.map((b) => (b.group_id ? t("access.binding_group", { role: b.role, group: b.group_id }) : b.role)).join(", ");
}

function form(title, controls, label, action) {
  return section(title, actionForm({ class: "inline-form" }, controls, label, action));
}

const reload = () => window.dispatchEvent(new HashChangeEvent("hashchange"));

export async function access() {
  const [users, roles] = await Promise.all([get("/users?per_page=500"), get("/roles")]);
  const me = currentUser().user?.user_id;
  const columns = [
    [t("access.username"), (u) => u.username],
    [t("access.email"), (u) => u.email ?? ""],
    [t("access.roles"), (u) => bindings(u.roles)],
    [t("access.active"), (u) => (u.is_active ? t("common.yes") : t("common.no"))],
    [t("access.last_login"), (u) => when(u.last_login_at)],
    [
      t("access.actions"),
      (u) =>
        u.user_id === me
          ? ""
          : dangerButton(t("common.delete"), t("access.delete_user", { name: u.username }), t("access.confirm_delete", { name: u.username }), async () => {
              await call("DELETE", `/users/${u.user_id}`);
              reload();
            }),
    ],
  ];
  const username = h("input", { name: "username", required: true, autocomplete: "off" });
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password" });
  const role = select({ name: "role" }, roles.items.map((r) => [r.code, r.name]), "viewer");
  const group = h("input", { name: "group_id", inputmode: "numeric", pattern: "[0-9]*" });
  const create = form(
    t("access.new_user"),
    [field(t("access.username"), username), field(t("access.password"), password), field(t("access.role"), role), field(t("access.group_id"), group)],
    t("common.create"),
    async () => {
      const body = { username: username.value.trim(), roles: [{ role: role.value, group_id: group.value || null }] };
      if (password.value) body.password = password.value;
      await call("POST", "/users", body);
      reload();
    },
  );
  return h("div", {}, h("h1", {}, t("nav.users")), table(t("nav.users"), columns, users.items), create);
}

export async function roles() {
  const found = await get("/roles");
  const columns = [
    [t("access.code"), (r) => r.code],
    [t("access.name"), (r) => r.name],
    [t("access.permissions"), (r) => h("ul", { class: "chips" }, r.permissions.map((p) => h("li", {}, h("code", {}, p))))],
    [t("access.builtin"), (r) => (r.builtin ? t("common.yes") : t("common.no"))],
  ];
  return h("div", {}, h("h1", {}, t("nav.roles")), table(t("nav.roles"), columns, found.items));
}

export async function apiKeys(ctx) {
  const everyone = can("users:admin");
  const page = Number(ctx.query.get("page") || 1);
  const found = await get(`/api-keys${query({ all: everyone ? "true" : "", page, per_page: 100 })}`);
  const columns = [
    [t("keys.name"), (k) => k.name],
    [t("keys.prefix"), (k) => h("code", {}, k.prefix)],
    [t("access.roles"), (k) => bindings(k.roles)],
    [t("keys.expires"), (k) => when(k.expires_at)],
    [t("keys.last_used"), (k) => when(k.last_used_at)],
    [
      t("access.actions"),
      (k) =>
        k.revoked_at
          ? t("keys.revoked", { at: when(k.revoked_at) })
          : dangerButton(t("keys.revoke"), t("keys.revoke_named", { name: k.name }), t("keys.confirm_revoke", { name: k.name }), async () => {
              await call("DELETE", `/api-keys/${k.key_id}`);
              reload();
            }),
    ],
  ];
  const name = h("input", { name: "name", required: true, autocomplete: "off" });
  const create = form(t("keys.new"), [field(t("keys.name"), name)], t("common.create"), async (message) => {
    const key = await call("POST", "/api-keys", { name: name.value.trim() });
    put(message, h("p", { class: "secret" }, t("keys.shown_once"), h("code", { "data-testid": "new-key" }, key.key)));
  });
  return h(
    "div",
    {},
    h("h1", {}, t("nav.keys")),
    table(t("nav.keys"), columns, found.items),
    pager(found.page, found.per_page, found.total, (n) => (window.location.hash = `#/keys?page=${n}`)),
    create,
  );
}
