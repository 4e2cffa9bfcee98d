// Sign-in: a user name and a password; the server sets the refresh cookie.

import { signIn } from "../api.js";
import { field, h } from "../dom.js";
import { t } from "../i18n.js";
import { actionForm } from "../ui.js";

export function signInForm(languageSwitch, done) {
  const username = h("input", { name: "username", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = actionForm(
    { class: "card" },
    [h("h1", {}, t("app.name")), h("p", { class: "hint" }, t("auth.intro")), field(t("auth.username"), username), field(t("auth.password"), password)],
    t("auth.sign_in"),
    async () => {
      try {
        await signIn(username.value, password.value);
      } catch (error) {
        password.select();
        throw error;
      }
      done();
    },
  );
  queueMicrotask(() => username.focus());
  return [form, h("div", { class: "language" }, languageSwitch())];
}
