// A line chart of percentages over the last hour, in SVG: no chart library.
// Colours and line styles come from the style sheet (classes), so the policy
// that forbids inline styles holds here too.

import { h, s } from "./dom.js";
import { number, t } from "./i18n.js";

const HEIGHT = 200;
const PAD = { left: 34, right: 8, top: 8, bottom: 22 };
const HOUR = 3600 * 1000;

/** series: [{key, label, points: [[time ms, percent], ...]}]; now: the right edge. */
export function percentChart(title, series, now = Date.now()) {
  // Drawn at about the size it is shown, so that its labels stay readable on a phone.
  const WIDTH = Math.round(Math.min(760, Math.max(300, window.innerWidth - 64)));
  const x = (at) => PAD.left + ((at - (now - HOUR)) / HOUR) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - v / 100) * (HEIGHT - PAD.top - PAD.bottom);
  const grid = [0, 25, 50, 75, 100].map((v) => [
    s("line", { class: "grid", x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v) }),
    s("text", { class: "tick", x: PAD.left - 4, y: y(v) + 4, "text-anchor": "end" }, `${v}%`),
  ]);
  const marks = WIDTH < 500 ? [60, 30, 0] : [60, 45, 30, 15, 0];
  const anchor = (m) => (m === 60 ? "start" : m === 0 ? "end" : "middle");
  const minutes = marks.map((m) =>
    s("text", { class: "tick", x: x(now - m * 60000), y: HEIGHT - 6, "text-anchor": anchor(m) }, m ? t("chart.minutes_ago", { m }) : t("chart.now")),
  );
  const lines = series.map(({ key, points }) => {
    const shown = points.filter(([at, v]) => at >= now - HOUR && v !== null && v !== undefined);
    const path = shown.map(([at, v]) => `${x(at).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    const last = shown[shown.length - 1];
    return [
      s("polyline", { class: `line series-${key}`, points: path }),
      last ? s("circle", { class: `dot series-${key}`, cx: x(last[0]), cy: y(last[1]), r: 3 }) : null,
    ];
  });
  const latest = series.map(({ key, label, points }) => {
    const value = points.length ? points[points.length - 1][1] : null;
    return h("li", { class: `series-${key}` }, h("span", { class: "swatch" }), `${label} `, h("strong", {}, value === null ? "—" : `${number(value, 1)}%`));
  });
  return h(
    "figure",
    { class: "chart" },
    s("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": title }, grid, minutes, lines),
    h("figcaption", {}, h("ul", { class: "legend" }, latest)),
  );
}

/** Columns of counts, one per [label, count] pair in order; every step-th labelled. */
export function columnChart(title, pairs, step = 6) {
  const width = Math.round(Math.min(760, Math.max(300, window.innerWidth - 64)));
  const height = 140;
  const top = Math.max(1, ...pairs.map(([, n]) => n));
  const slot = (width - PAD.left - PAD.right) / Math.max(1, pairs.length);
  const y = (n) => PAD.top + (1 - n / top) * (height - PAD.top - PAD.bottom);
  const columns = pairs.map(([label, n], i) => {
    const x = PAD.left + i * slot;
    return [
      s("rect", { class: "column", x: x + 1, y: y(n), width: Math.max(1, slot - 2), height: y(0) - y(n) }, s("title", {}, `${label}: ${number(n)}`)),
      i % step === 0 ? s("text", { class: "tick", x, y: height - 6 }, label) : null,
    ];
  });
  const axis = [
    s("line", { class: "grid", x1: PAD.left, x2: width - PAD.right, y1: y(0), y2: y(0) }),
    s("text", { class: "tick", x: PAD.left - 4, y: y(top) + 4, "text-anchor": "end" }, number(top)),
  ];
  return h("figure", { class: "chart" }, s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title }, axis, columns));
}
