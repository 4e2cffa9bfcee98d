// Building the page: elements from plain calls, never from HTML strings, so that
// what a device or a user typed is always text and never markup.

const SVG = "http://www.w3.org/2000/svg";

function fill(el, props, children) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = value;
    else if (key === "value" && "value" in el) el.value = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: tag, attributes and listeners (onclick: f), then children. */
export function h(tag, props, ...children) {
  return fill(document.createElement(tag), props, children);
}

/** An SVG element, for the charts. */
export function s(tag, props, ...children) {
  return fill(document.createElementNS(SVG, tag), props, children);
}

/** Replace the children of an element. */
export function put(el, ...children) {
  el.replaceChildren();
  return fill(el, {}, children);
}

let unique = 0;
/** An id for a label's "for", unique on the page. */
export function uid(prefix) {
  unique += 1;
  return `${prefix}-${unique}`;
}

/** A labelled form control: the label names it for screen readers too. */
export function field(label, control) {
  const id = control.id || uid("f");
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}

/** A select of [value, label] pairs, with value selected. */
export function select(props, options, value) {
  const el = h("select", props, options.map(([v, label]) => h("option", { value: v }, label)));
  el.value = value ?? "";
  return el;
}

/** Fire f at most once per wait milliseconds, with the last arguments. */
export function debounce(f, wait) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => f(...args), wait);
  };
}
