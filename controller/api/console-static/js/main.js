// The console's shell: sign-in or the signed-in frame (navigation, language,
// sign-out), and a router from the URL's #/path to the page that draws it.

import { can, currentUser, everywhere, onSignedOut, restore, signOut } from "./api.js";
import { field, h, put, select } from "./dom.js";
import { LANGUAGES, language, load, preferred, t } from "./i18n.js";
import * as live from "./live.js";
import { access, apiKeys, roles } from "./pages/access.js";
import { audit } from "./pages/audit.js";
import { classify } from "./pages/classify.js";
import { device } from "./pages/device.js";
import { devices } from "./pages/devices.js";
import { groups } from "./pages/groups.js";
import { job, jobs } from "./pages/jobs.js";
import { overview } from "./pages/overview.js";
import { record, records } from "./pages/records.js";
import { signInForm } from "./pages/sign-in.js";
import { problem } from "./ui.js";

// [path pattern, page, permission needed (null: anyone signed in; a function:
// whether the caller may), menu entry]
const ROUTES = [
  ["overview", overview, "devices:read", "nav.overview"],
  ["devices", devices, "devices:read", "nav.devices"],
  ["devices/:id", device, "devices:read", null],
  ["groups", groups, "groups:read", "nav.groups"],
  ["jobs", jobs, () => everywhere("devices:read"), "nav.jobs"],
  ["jobs/:id", job, () => everywhere("devices:read"), null],
  ["records", records, "records:read", "nav.records"],
  ["records/:id", record, "records:read", null],
  ["classify", classify, "records:read", "nav.classify"],
  ["users", access, "users:admin", "nav.users"],
  ["roles", roles, "users:admin", "nav.roles"],
  ["keys", apiKeys, null, "nav.keys"],
  ["audit", audit, "audit:read", "nav.audit"],
];

const app = document.getElementById("app");
let disposers = [];
let rendering = 0;

function allowed([, , permission]) {
  if (typeof permission === "function") return permission();
  return permission === null || can(permission);
}

/** The route whose pattern fits the path, with its :parameters. */
function match(path) {
  const parts = path.split("/");
  for (const route of ROUTES) {
    const names = route[0].split("/");
    if (names.length !== parts.length) continue;
    const params = {};
    const fits = names.every((name, i) => {
      if (!name.startsWith(":")) return name === parts[i];
      params[name.slice(1)] = decodeURIComponent(parts[i]);
      return true;
    });
    if (fits) return { route, params };
  }
  return null;
}

function address() {
  const [path, search] = window.location.hash.replace(/^#\/?/, "").split("?");
  return { path, query: new URLSearchParams(search || "") };
}

function languageSwitch() {
  const names = LANGUAGES.map((code) => [code, t(`language.${code}`)]);
  const control = select({ onchange: (e) => changeLanguage(e.target.value) }, names, language());
  return field(t("language.label"), control);
}

async function changeLanguage(code) {
  await load(code, true);
  draw();
}

function shell() {
  const user = currentUser();
  const main = h("main", { id: "main", tabindex: "-1" });
  const here = address().path.split("/")[0];
  const menu = ROUTES.filter((route) => route[3] && allowed(route)).map(([path, , , label]) =>
    h("li", {}, h("a", { href: `#/${path}`, "aria-current": here === path ? "page" : false }, t(label))),
  );
  const skip = h("button", { type: "button", class: "skip", onclick: () => main.focus() }, t("nav.skip"));
  const header = h(
    "header",
    { class: "top" },
    h("a", { class: "brand", href: "#/" }, t("app.name")),
    h("nav", { "aria-label": t("nav.label") }, h("ul", {}, menu)),
    h(
      "div",
      { class: "who" },
      languageSwitch(),
      h("span", { class: "user", "data-testid": "user" }, user.name),
      h("button", { type: "button", onclick: leave }, t("auth.sign_out")),
    ),
  );
  put(app, skip, header, main);
  return main;
}

async function leave() {
  live.stop();
  await signOut();
}

function dispose() {
  for (const f of disposers) f();
  disposers = [];
}

/** Draw the page the URL names (or sign-in); a later call wins over an earlier one. */
async function draw() {
  const turn = ++rendering;
  dispose();
  if (!currentUser()) {
    document.title = t("app.name");
    put(app, h("main", { id: "main", class: "sign-in" }, signInForm(languageSwitch, start)));
    return;
  }
  const { path, query } = address();
  let found = match(path);
  if (!found || !allowed(found.route)) {
    const first = ROUTES.find((route) => route[3] && allowed(route));
    if (path !== first[0]) {
      window.location.hash = `#/${first[0]}`;
      return;
    }
    found = match(first[0]);
  }
  const main = shell();
  const [pattern, page, , label] = found.route;
  // A page under a menu entry (a device, a job) is titled by its entry.
  const entry = ROUTES.find((route) => route[0] === pattern.split("/")[0]);
  document.title = `${t(label || entry[3])} · ${t("app.name")}`;
  main.setAttribute("aria-busy", "true");
  const ctx = {
    params: found.params,
    query,
    onDispose: (f) => disposers.push(f),
    live: (listener) => disposers.push(live.listen(listener)),
    stale: () => turn !== rendering,
  };
  try {
    const node = await page(ctx);
    if (turn === rendering) put(main, node);
  } catch (error) {
    if (turn === rendering) put(main, problem(error));
  }
  main.removeAttribute("aria-busy");
}

function start() {
  if (can("devices:read")) live.start();
  draw();
}

onSignedOut(() => {
  live.stop();
  draw();
});
window.addEventListener("hashchange", draw);

(async () => {
  const messages = load(preferred());
  try {
    await Promise.all([messages, restore()]);
  } catch (error) {
    await messages;
    put(app, problem(error));
    return;
  }
  if (currentUser()) start();
  else draw();
})();
