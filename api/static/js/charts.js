// Small hand-drawn SVG charts (no library). Each chart is an <svg class="chart" role="img"> with
// a <title>, drawn in a viewBox so that it scales with its panel (1366×768 up to a wall screen),
// followed by the same numbers as a table in a <details>: screen readers, keyboards and tests
// read the table. Bars that lead somewhere (``href``: a console address such as
// "/alerts?agency=x") are clickable with a mouse; the table has the same places as links.
"use strict";
import { h, replace, svg } from "./dom.js";
import { dateOnly, hourLabel, number, t } from "./i18n.js";

// An estimate of a character's width at the charts' 11px type, to keep labels apart.
const CHAR_WIDTH = 6.4;

/** Round steps (1, 2, 5 × 10^n) for an axis from 0 to at least ``max``, about ``count`` of them. */
export function ticks(max, count = 4) {
  const top = Math.max(1, max);
  const raw = top / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw));
  const values = [];
  for (let value = 0; value < top + step; value += step) {
    values.push(value);
    if (value >= top) break;
  }
  return values;
}

function clip(text, chars) {
  const value = String(text ?? "");
  return value.length > chars ? `${value.slice(0, Math.max(1, chars - 1))}…` : value;
}

/** Replace what ``container`` holds, keeping the keyboard focus on the element of the same
 * ``data-focus`` key when it was inside (a refresh must not throw a keyboard user out). */
export function redraw(container, ...children) {
  const active = document.activeElement;
  const key = active && active !== container && container.contains(active) ? active.dataset.focus : null;
  replace(container, ...children);
  if (key) {
    const again = [...container.querySelectorAll("[data-focus]")].find((node) => node.dataset.focus === key);
    if (again) again.focus({ preventScroll: true });
  }
  return container;
}

/** The console address ``href`` as a link's target. */
function hashOf(href) {
  return href.startsWith("#") ? href : `#${href}`;
}

/** The numbers of a chart as a table in a <details> (closed unless ``open``). */
function dataTable({ caption, columns, rows, open = false, id }) {
  const table = h("table", { class: "data" },
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, columns.map((column) =>
      h("th", { scope: "col", class: column.numeric ? "num" : null }, column.label)))),
    h("tbody", {}, rows.length
      ? rows.map((row) => h("tr", {}, row.map((cell, n) =>
        h(n === 0 ? "th" : "td", { scope: n === 0 ? "row" : null, class: columns[n].numeric ? "num" : null }, cell))))
      : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, t("common.empty")))));
  return h("details", { class: "chart-data", open, dataset: id ? { key: id } : {} },
    h("summary", { dataset: id ? { focus: `summary:${id}` } : {} }, t("charts.show_data")),
    h("div", { class: "table-wrap" }, table));
}

/**
 * Alerts over time: one bar per interval, a y axis with round ticks, times under the bars.
 * points: [{start, alerts, detections}]; options: label (the chart's name), interval ("1h" or
 * "1d": hours or days on the axis), id (to remember its table open across refreshes).
 */
export function timeChart(points, { label, interval = "1h", id, open } = {}) {
  const width = 1200;
  const height = 260;
  const margin = { top: 14, right: 48, bottom: 30, left: 48 };
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const when = interval === "1d" ? dateOnly : hourLabel;
  const values = points.map((point) => point.alerts || 0);
  const axis = ticks(Math.max(0, ...values));
  const top = axis[axis.length - 1];
  const band = plotWidth / Math.max(1, points.length);
  const barWidth = Math.max(1, band * (band > 6 ? 0.78 : 0.9));
  const y = (value) => margin.top + plotHeight - (value / top) * plotHeight;
  const total = values.reduce((sum, value) => sum + value, 0);

  const grid = axis.map((value) => svg("g", { class: "tick" },
    svg("line", { class: "axis", x1: margin.left, x2: width - margin.right, y1: y(value), y2: y(value) }),
    svg("text", { x: margin.left - 6, y: y(value) + 4, "text-anchor": "end" }, number(value))));

  const bars = points.map((point, n) => {
    const value = point.alerts || 0;
    const x = margin.left + n * band + (band - barWidth) / 2;
    const text = t("charts.point", { time: when(point.start), alerts: number(value), detections: number(point.detections || 0) });
    return svg("rect", {
      class: "bar", x: x.toFixed(2), y: y(value).toFixed(2), width: barWidth.toFixed(2),
      height: Math.max(0, margin.top + plotHeight - y(value)).toFixed(2),
    }, svg("title", {}, text));
  });

  // Labels far enough apart not to overlap; the first interval is always labelled.
  const longest = Math.max(1, ...points.map((point) => when(point.start).length));
  const every = Math.max(1, Math.ceil((longest * CHAR_WIDTH + 10) / band));
  const labels = points.map((point, n) => {
    if (n % every !== 0) return null;
    const x = margin.left + n * band + band / 2;
    return svg("g", {},
      svg("line", { class: "axis", x1: x, x2: x, y1: margin.top + plotHeight, y2: margin.top + plotHeight + 4 }),
      svg("text", { x, y: margin.top + plotHeight + 18, "text-anchor": "middle" }, when(point.start)));
  });

  const title = `${label}: ${t("charts.total", { alerts: number(total), count: number(points.length) })}`;
  const chart = svg("svg", {
    class: "chart chart-time", role: "img", "aria-label": title, viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "xMidYMid meet",
  },
  svg("title", {}, title),
  grid,
  bars,
  svg("line", { class: "axis baseline", x1: margin.left, x2: width - margin.right, y1: margin.top + plotHeight, y2: margin.top + plotHeight }),
  labels);

  const table = dataTable({
    caption: label,
    id,
    open,
    columns: [{ label: t("field.time") }, { label: t("charts.alerts"), numeric: true }, { label: t("charts.detections"), numeric: true }],
    rows: points.map((point) => [
      h("time", { datetime: point.start }, when(point.start)), number(point.alerts), number(point.detections)]),
  });
  return h("div", { class: "chart-box" }, chart, table);
}

/**
 * Horizontal bars, the label above each bar and the value after it.
 * items: [{key, label, value, detections?, href?, tone?: "alt", color?: a CSS colour}];
 * options: label (the chart's name), keyLabel (the table's first column), limit (bars drawn;
 * the table has them all), id, open, empty (the text when there are no items), go (how a
 * clicked bar navigates: the page's ctx.go; by default the address's hash).
 */
export function barChart(items, { label, keyLabel, limit = 12, id, open, empty, go } = {}) {
  if (!items.length) {
    return h("div", { class: "chart-box" }, h("p", { class: "muted empty" }, empty || t("charts.empty")));
  }
  const shown = items.slice(0, limit);
  const width = 340;
  const row = 34;
  const margin = { top: 4, right: 8, bottom: 4, left: 4 };
  const valueRoom = 64;
  const barRoom = width - margin.left - margin.right - valueRoom;
  const height = margin.top + margin.bottom + shown.length * row;
  const max = Math.max(1, ...shown.map((item) => item.value || 0));
  const chars = Math.floor((width - margin.left - margin.right) / CHAR_WIDTH);

  const rows = shown.map((item, n) => {
    const top = margin.top + n * row;
    const length = Math.max(item.value ? 2 : 0, ((item.value || 0) / max) * barRoom);
    const bar = svg("rect", {
      class: item.tone ? `bar ${item.tone}` : "bar", x: margin.left, y: top + 17, width: length.toFixed(2), height: 12, rx: 2,
    });
    if (item.color) bar.style.fill = item.color;
    const text = `${item.label}: ${number(item.value)}`;
    const group = svg("g", { class: item.href ? "item clickable" : "item" },
      svg("title", {}, item.href ? `${text} · ${t("charts.open_alerts")}` : text),
      // An invisible band over the whole row: the click target is the row, not only the bar.
      svg("rect", { class: "hit", x: 0, y: top, width, height: row, fill: "transparent" }),
      svg("text", { class: "label", x: margin.left, y: top + 12 }, clip(item.label, chars)),
      bar,
      svg("text", { class: "value", x: margin.left + length + 5, y: top + 27 }, number(item.value)));
    if (item.href) group.addEventListener("click", () => (go ? go(item.href) : location.assign(hashOf(item.href))));
    return group;
  });

  const title = label;
  const chart = svg("svg", {
    class: "chart chart-bars", role: "img", "aria-label": title, viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "xMinYMin meet",
  }, svg("title", {}, title), rows);

  const withDetections = items.some((item) => item.detections !== undefined);
  const columns = [{ label: keyLabel || t("charts.item") }, { label: t("charts.alerts"), numeric: true }];
  if (withDetections) columns.push({ label: t("charts.detections"), numeric: true });
  const table = dataTable({
    caption: label,
    id,
    open,
    columns,
    rows: items.map((item) => {
      const name = item.href ? h("a", { href: hashOf(item.href), dataset: { focus: `link:${item.href}` } }, item.label) : item.label;
      const cells = [name, number(item.value)];
      if (withDetections) cells.push(number(item.detections));
      return cells;
    }),
  });
  const more = items.length > shown.length
    ? h("p", { class: "muted more" }, t("charts.more", { count: number(items.length - shown.length) }))
    : null;
  return h("div", { class: "chart-box" }, chart, more, table);
}

/**
 * Two series side by side per group (e.g. collected vs indexed per hour): grouped bars, the
 * second series in the "alt" colour, with a legend.
 * groups: [{label, values: [a, b]}]; options: label, series: [name a, name b], id, open.
 */
export function pairedBars(groups, { label, series, id, open } = {}) {
  const width = 1200;
  const height = 240;
  const margin = { top: 12, right: 48, bottom: 30, left: 56 };
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const axis = ticks(Math.max(0, ...groups.flatMap((group) => group.values)));
  const top = axis[axis.length - 1];
  const band = plotWidth / Math.max(1, groups.length);
  const barWidth = Math.max(1, (band * 0.8) / 2);
  const y = (value) => margin.top + plotHeight - (value / top) * plotHeight;

  const grid = axis.map((value) => svg("g", { class: "tick" },
    svg("line", { class: "axis", x1: margin.left, x2: width - margin.right, y1: y(value), y2: y(value) }),
    svg("text", { x: margin.left - 6, y: y(value) + 4, "text-anchor": "end" }, number(value))));
  const bars = groups.map((group, n) => group.values.map((value, s) => {
    const x = margin.left + n * band + band * 0.1 + s * barWidth;
    return svg("rect", {
      class: s ? "bar alt" : "bar", x: x.toFixed(2), y: y(value).toFixed(2), width: barWidth.toFixed(2),
      height: Math.max(0, margin.top + plotHeight - y(value)).toFixed(2),
    }, svg("title", {}, `${group.label} · ${series[s]}: ${number(value)}`));
  }));
  const longest = Math.max(1, ...groups.map((group) => group.label.length));
  const every = Math.max(1, Math.ceil((longest * CHAR_WIDTH + 10) / band));
  const labels = groups.map((group, n) => (n % every ? null
    : svg("text", { x: margin.left + n * band + band / 2, y: margin.top + plotHeight + 18, "text-anchor": "middle" }, group.label)));

  const chart = svg("svg", {
    class: "chart chart-pairs", role: "img", "aria-label": label, viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "xMidYMid meet",
  }, svg("title", {}, label), grid, bars,
  svg("line", { class: "axis baseline", x1: margin.left, x2: width - margin.right, y1: margin.top + plotHeight, y2: margin.top + plotHeight }),
  labels);
  const legend = h("p", { class: "legend" }, series.map((name, s) => {
    const swatch = h("span", { class: s ? "swatch alt" : "swatch", "aria-hidden": "true" });
    swatch.style.background = s ? "#f2a900" : "var(--accent)";
    return h("span", {}, swatch, name);
  }));
  const table = dataTable({
    caption: label,
    id,
    open,
    columns: [{ label: t("field.time") }, ...series.map((name) => ({ label: name, numeric: true }))],
    rows: groups.map((group) => [group.label, ...group.values.map((value) => number(value))]),
  });
  return h("div", { class: "chart-box" }, legend, chart, table);
}
