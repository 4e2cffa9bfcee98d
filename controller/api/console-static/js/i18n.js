// Messages in English and Simplified Chinese. Every word the console shows comes
// from the catalogues in ../i18n/ (a test checks that the scripts hold no prose
// and that both catalogues have the same keys).

export const LANGUAGES = ["en", "zh-CN"];
const STORED = "edgefleet.language";
let messages = {};
let current = "en";

/** The language the user chose before, else the browser's first we speak. */
export function preferred() {
  const chosen = localStorage.getItem(STORED);
  if (LANGUAGES.includes(chosen)) return chosen;
  for (const wanted of navigator.languages || [navigator.language]) {
    if (wanted.toLowerCase().startsWith("zh")) return "zh-CN";
    if (wanted.toLowerCase().startsWith("en")) return "en";
  }
  return "en";
}

export async function load(language, remember = false) {
  const answer = await fetch(`/console/i18n/${language}.json`);
  messages = await answer.json();
  current = language;
  document.documentElement.lang = language;
  if (remember) localStorage.setItem(STORED, language);
}

export function language() {
  return current;
}

/** The message under key, with {name} replaced by vars.name. */
export function t(key, vars) {
  const text = messages[key] ?? key;
  if (!vars) return text;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

/** The message under prefix + value when there is one, else the value as it is
 *  (a device type or an event name that the catalogues do not know). */
export function term(prefix, value) {
  const key = `${prefix}.${value}`;
  return key in messages ? messages[key] : value;
}

export function when(instant) {
  if (!instant) return "";
  return new Date(instant).toLocaleString(current, {
    dateStyle: "short",
    timeStyle: "medium",
  });
}

export function number(value, digits = 0) {
  if (value === null || value === undefined) return "";
  return Number(value).toLocaleString(current, { maximumFractionDigits: digits });
}
