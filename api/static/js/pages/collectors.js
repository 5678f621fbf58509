// #/collectors: the agencies' collectors as their heartbeats show them (GET /collectors), silent
// ones marked; one collector's sources in a panel (GET /collectors/{agency}/{collector}); and
// completeness per agency and hour (GET /collectors/completeness): what the collectors sent,
// what the SOC received, parsed, detected and indexed, and the gaps between the stages.
// Filters (agency, state, hours) are kept in the address; everything refreshes every 30 s.
"use strict";
import { api, ApiError } from "../api.js";
import { pairedBars, redraw } from "../charts.js";
import { field, h, replace, select } from "../dom.js";
import { ago, dateTime, hourLabel, language, number, t } from "../i18n.js";

const REFRESH_MS = 30_000;
const HOURS = ["6", "24", "48", "168"];
const STATES = ["running", "silent", "stopped"];
// The stages' counts of a completeness row, in the pipeline's order.
const MEASURES = ["collected", "received", "parsed", "unparsed", "detected", "indexed", "events_indexed", "dead_lettered"];
const GAPS = ["not_received", "unaccounted", "not_indexed"];
// Counters of a source that mean records were lost or refused.
const LOSSES = ["dropped", "unreadable", "malformed", "refused", "invalid_utf8", "truncated"];
// Agencies seen in earlier answers: the agency filter's choices.
const knownAgencies = new Map();

function locale() {
  return language() === "vi" ? "vi-VN" : "en-GB";
}

/** A size in bytes as people read it (kB, MB...). */
function bytes(value) {
  const units = ["byte", "kilobyte", "megabyte", "gigabyte", "terabyte"];
  let amount = Number(value) || 0;
  let unit = 0;
  while (amount >= 1000 && unit < units.length - 1) {
    amount /= 1000;
    unit += 1;
  }
  return new Intl.NumberFormat(locale(), {
    style: "unit", unit: units[unit], unitDisplay: "short", maximumFractionDigits: unit ? 1 : 0,
  }).format(amount);
}

function seconds(value) {
  return new Intl.NumberFormat(locale(), { style: "unit", unit: "second", unitDisplay: "short", maximumFractionDigits: 1 })
    .format(Number(value) || 0);
}

/** running, silent or stopped (said it was stopping, so not missing). */
function stateOf(collector) {
  if (collector.silent) return "silent";
  return collector.stopping ? "stopped" : "running";
}

function stateText(state) {
  return { running: t("collectors.state.running"), silent: t("collectors.state.silent"), stopped: t("collectors.state.stopped") }[state];
}

function stateBadge(state) {
  const tone = { running: "ok", silent: "bad", stopped: "warn" }[state];
  return h("span", { class: ["badge", "state", `state-${state}`, tone] }, stateText(state));
}

function kafkaText(kafka) {
  if (!kafka || !kafka.state) return t("common.none");
  return { up: t("collectors.kafka.up"), away: t("collectors.kafka.away") }[kafka.state] || kafka.state;
}

function tierText(tier) {
  return { province: t("tier.province"), commune: t("tier.commune") }[tier] || t("common.none");
}

/** A moment the collector wrote with its own clock: as a date when it reads as one. */
function theirTime(value) {
  if (!value) return t("common.none");
  const moment = new Date(value);
  return Number.isNaN(moment.getTime()) ? value : dateTime(value);
}

function measureText(name) {
  return {
    collected: t("collectors.measure.collected"),
    received: t("collectors.measure.received"),
    parsed: t("collectors.measure.parsed"),
    unparsed: t("collectors.measure.unparsed"),
    detected: t("collectors.measure.detected"),
    indexed: t("collectors.measure.indexed"),
    events_indexed: t("collectors.measure.events_indexed"),
    dead_lettered: t("collectors.measure.dead_lettered"),
  }[name];
}

function gapText(name, value) {
  const vars = { count: number(value) };
  return {
    not_received: t("collectors.gap.not_received", vars),
    unaccounted: t("collectors.gap.unaccounted", vars),
    not_indexed: t("collectors.gap.not_indexed", vars),
  }[name];
}

/** The assessment of a row: complete, or its gaps one per line. */
function verdict(gaps, gapsOf, summary) {
  if (!gaps) return h("td", { class: "ok verdict" }, t("collectors.completeness.complete"));
  return h("td", { class: "bad verdict" },
    h("div", {}, summary),
    GAPS.filter((name) => gapsOf[name]).map((name) => h("div", { class: "gap-kind" }, gapText(name, gapsOf[name]))));
}

function gapTotal(row) {
  return GAPS.reduce((sum, name) => sum + (row.gaps[name] || 0), 0);
}

/** A number cell; ``tone`` when it is not 0. */
function count(value, tone) {
  return h("td", { class: ["num", value && tone ? tone : null] }, number(value));
}

export async function render(page, ctx) {
  const scoped = Boolean(ctx.me && ctx.me.agency);
  const state = {
    agency: scoped ? ctx.me.agency : ctx.query.get("agency") || "",
    state: STATES.includes(ctx.query.get("state")) ? ctx.query.get("state") : "",
    hours: HOURS.includes(ctx.query.get("hours")) ? ctx.query.get("hours") : "24",
    open: null, // {agency, collector} whose detail is shown
    hourly: null, // the agency whose completeness is shown per hour
  };
  if (state.agency && !knownAgencies.has(state.agency)) knownAgencies.set(state.agency, null);
  ctx.title(t("collectors.title"));

  const agencySelect = select([], "", { name: "agency" });
  const stateSelect = select([
    ["", t("common.all")], ["running", t("collectors.state.running")], ["silent", t("collectors.state.silent")],
    ["stopped", t("collectors.state.stopped")],
  ], state.state, { name: "state" });
  const hoursSelect = select([
    ["6", t("collectors.hours.6")], ["24", t("collectors.hours.24")], ["48", t("collectors.hours.48")],
    ["168", t("collectors.hours.168")],
  ], state.hours, { name: "hours" });
  const refreshButton = h("button", { type: "button", on: { click: () => load() } }, t("action.refresh"));
  const updated = h("p", { class: "muted updated" });
  const summary = h("div", { class: "collectors-summary" });
  const list = h("div", { class: "collectors-list", "aria-busy": "true" }, h("p", { class: "muted" }, t("common.loading")));
  const detail = h("div", { class: "collectors-detail" });
  const completeness = h("div", { class: "collectors-completeness", "aria-busy": "true" });
  let last = null; // the last answers, to redraw without asking again

  function fillAgencies() {
    const options = [...knownAgencies.entries()].sort(([a], [b]) => a.localeCompare(b))
      .map(([id, name]) => [id, name ? `${name} (${id})` : id]);
    replace(agencySelect, [...select([["", t("common.all")], ...options], state.agency).options]);
    agencySelect.value = state.agency;
  }
  fillAgencies();

  function remember() {
    const query = new URLSearchParams();
    if (state.agency && !scoped) query.set("agency", state.agency);
    if (state.state) query.set("state", state.state);
    if (state.hours !== "24") query.set("hours", state.hours);
    const text = query.toString();
    history.replaceState(null, "", `#/collectors${text ? `?${text}` : ""}`);
  }

  agencySelect.addEventListener("change", () => { state.agency = agencySelect.value; remember(); load(); });
  hoursSelect.addEventListener("change", () => { state.hours = hoursSelect.value; remember(); load(); });
  stateSelect.addEventListener("change", () => {
    state.state = stateSelect.value;
    remember();
    if (last && last.collectors) drawList(last.collectors);
  });

  const filters = h("form", {
    class: "filters", role: "search", "aria-label": t("collectors.filters"),
    on: { submit: (event) => { event.preventDefault(); load(); } },
  },
  scoped ? h("p", { class: "scope" }, h("span", { class: "muted" }, `${t("field.agency")}: `), ctx.agencyName(ctx.me.agency))
    : field(t("field.agency"), agencySelect),
  field(t("collectors.state"), stateSelect),
  refreshButton,
  updated);

  const listHeading = h("h2", { id: "collectors-list" }, t("collectors.list"));
  const completenessHeading = h("h2", { id: "collectors-completeness" }, t("collectors.completeness"));
  replace(page,
    h("h1", {}, t("collectors.title")),
    filters,
    summary,
    h("section", { class: "panel", "aria-labelledby": listHeading.id }, listHeading, list),
    detail,
    h("section", { class: "panel", "aria-labelledby": completenessHeading.id },
      completenessHeading,
      h("p", { class: "hint" }, t("collectors.completeness.intro")),
      h("div", { class: "toolbar" }, field(t("collectors.hours"), hoursSelect)),
      completeness));

  // --- the collectors ------------------------------------------------------------------------

  function drawSummary(collectors) {
    const silent = collectors.data.filter((c) => c.silent);
    replace(summary, h("div", { class: "kpis" },
      h("div", { class: "kpi" }, h("div", { class: "value" }, number(collectors.data.length)),
        h("div", { class: "label" }, t("collectors.kpi.total"))),
      h("div", { class: "kpi" }, h("div", { class: "value ok" }, number(collectors.data.filter((c) => stateOf(c) === "running").length)),
        h("div", { class: "label" }, t("collectors.kpi.running"))),
      h("div", { class: ["kpi", silent.length ? "bad" : null] }, h("div", { class: "value" }, number(silent.length)),
        h("div", { class: "label" }, t("collectors.kpi.silent"))),
      h("div", { class: "kpi" }, h("div", { class: "value" }, number(collectors.agencies_without_collectors.length)),
        h("div", { class: "label" }, t("collectors.kpi.without")))),
    silent.length
      ? h("p", { class: "panel bad silent-warning" }, t("collectors.silent_warning", {
        count: number(silent.length), names: silent.map((c) => `${c.collector} (${c.agency_name || c.agency})`).join(", "),
      }))
      : null);
  }

  function drawList(collectors) {
    const shown = collectors.data.filter((c) => !state.state || stateOf(c) === state.state);
    const without = collectors.agencies_without_collectors;
    let table;
    if (!collectors.data.length) {
      table = h("p", { class: "muted empty" }, t("collectors.none"));
    } else if (!shown.length) {
      table = h("p", { class: "muted empty" }, t("collectors.none_matching"));
    } else {
      table = h("div", { class: "table-wrap" }, h("table", { class: "data collectors" },
        h("caption", { class: "visually-hidden" }, t("collectors.list")),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, t("field.agency")),
          h("th", { scope: "col" }, t("collectors.collector")),
          h("th", { scope: "col" }, t("field.host")),
          h("th", { scope: "col" }, t("collectors.version")),
          h("th", { scope: "col" }, t("collectors.state")),
          h("th", { scope: "col" }, t("collectors.kafka")),
          h("th", { scope: "col" }, t("collectors.last_heartbeat")),
          h("th", { scope: "col", class: "num" }, t("collectors.interval")),
          h("th", { scope: "col", class: "num" }, t("collectors.backlog")))),
        h("tbody", {}, shown.map(collectorRow))));
    }
    redraw(list,
      table,
      // Most agencies may have no collector yet: the list is there when asked for, kept open
      // across refreshes once opened.
      without.length ? h("details", {
        class: "without-list", open: state.withoutOpen,
        on: { toggle: (event) => { state.withoutOpen = event.target.open; } },
      },
        h("summary", {}, h("strong", {}, t("collectors.without", { count: number(without.length) }))),
        h("p", { class: "hint" }, t("collectors.without.hint")),
        h("div", { class: "table-wrap" }, h("table", { class: "data without" },
          h("thead", {}, h("tr", {},
            h("th", { scope: "col" }, t("collectors.agency_id")),
            h("th", { scope: "col" }, t("collectors.agency_name")),
            h("th", { scope: "col" }, t("tier.label")))),
          h("tbody", {}, without.map((agency) => h("tr", {},
            h("td", { class: "mono" }, agency.id), h("td", {}, agency.name), h("td", {}, tierText(agency.tier)))))))) : null);
  }

  function collectorRow(c) {
    const current = state.open && state.open.agency === c.agency && state.open.collector === c.collector;
    const collectorState = stateOf(c);
    const backlog = c.spool.entries || c.queued_bytes
      ? [t("collectors.spool", { entries: number(c.spool.entries), size: bytes(c.spool.bytes) }),
        c.queued_bytes ? h("div", { class: "muted" }, t("collectors.queued", { size: bytes(c.queued_bytes) })) : null]
      : t("collectors.no_backlog");
    return h("tr", { class: [collectorState === "silent" ? "silent" : null, current ? "current" : null] },
      h("td", {},
        h("div", { class: c.agency_name ? null : "mono" }, c.agency_name || c.agency),
        c.agency_name ? h("div", { class: "muted mono" }, c.agency) : null,
        h("div", { class: "muted" }, c.tier ? tierText(c.tier) : null,
          c.registered ? null : h("span", { class: "warn" }, c.tier ? " · " : "", t("collectors.unregistered")))),
      h("td", {}, h("button", {
        type: "button", class: "link mono", "aria-expanded": String(Boolean(current)), "aria-controls": current ? "collector-detail" : null,
        dataset: { focus: `collector:${c.agency}/${c.collector}` },
        "aria-label": t("collectors.show_detail", { collector: c.collector, agency: c.agency }),
        on: { click: () => showDetail(c.agency, c.collector) },
      }, c.collector)),
      h("td", { class: "mono" }, c.host || t("common.none")),
      h("td", { class: "mono" }, c.version || t("common.none")),
      h("td", {}, stateBadge(collectorState)),
      h("td", { class: c.kafka.state === "away" ? "warn" : null, title: c.kafka.error || null },
        kafkaText(c.kafka), c.kafka.error ? h("div", { class: "muted truncate" }, c.kafka.error) : null),
      h("td", {},
        h("time", { datetime: c.last_heartbeat }, dateTime(c.last_heartbeat)),
        h("div", { class: collectorState === "silent" ? "bad" : "muted" }, ago(c.last_heartbeat))),
      h("td", { class: "num" }, seconds(c.interval_s)),
      h("td", { class: "num" }, backlog));
  }

  // --- one collector's detail ------------------------------------------------------------------

  async function showDetail(agency, collector) {
    const same = state.open && state.open.agency === agency && state.open.collector === collector;
    state.open = same ? null : { agency, collector };
    if (last && last.collectors) drawList(last.collectors);
    if (!state.open) {
      replace(detail);
      return;
    }
    replace(detail, h("section", { class: "panel", id: "collector-detail" }, h("p", { class: "muted" }, t("common.loading"))));
    await loadDetail(true);
  }

  async function loadDetail(focus) {
    const open = state.open;
    if (!open) return;
    try {
      const found = await api.get(`collectors/${encodeURIComponent(open.agency)}/${encodeURIComponent(open.collector)}`);
      if (!ctx.alive() || state.open !== open) return;
      drawDetail(found, focus);
    } catch (error) {
      if (!ctx.alive() || state.open !== open) return;
      if (error instanceof ApiError && error.status === 404) {
        replace(detail, h("section", { class: "panel", id: "collector-detail" },
          h("p", { class: "muted" }, t("collectors.detail.gone", { collector: open.collector }))));
      } else {
        ctx.sayError(error);
      }
    }
  }

  function closeDetail() {
    const open = state.open;
    state.open = null;
    replace(detail);
    if (last && last.collectors) drawList(last.collectors);
    if (open) {
      const button = [...list.querySelectorAll("[data-focus]")]
        .find((node) => node.dataset.focus === `collector:${open.agency}/${open.collector}`);
      if (button) button.focus();
    }
  }

  function drawDetail(c, focus) {
    const collectorState = stateOf(c);
    const heading = h("h2", { id: "collector-detail-title", tabindex: "-1" },
      t("collectors.detail.title", { collector: c.collector, agency: c.agency_name || c.agency }));
    const pairs = [
      [t("field.agency"), `${c.agency_name || c.agency} (${c.agency})`],
      [t("tier.label"), tierText(c.tier)],
      [t("collectors.registered"), c.registered ? t("common.yes") : t("common.no")],
      [t("field.host"), c.host || t("common.none")],
      [t("collectors.version"), c.version || t("common.none")],
      [t("collectors.topic"), c.topic || t("common.none")],
      [t("collectors.state"), stateBadge(collectorState)],
      [t("collectors.last_heartbeat"), [dateTime(c.last_heartbeat), " (", ago(c.last_heartbeat), ")"]],
      [t("collectors.interval"), seconds(c.interval_s)],
      [t("collectors.started"), theirTime(c.started)],
      [t("collectors.sent_at"), theirTime(c.sent_at)],
      [t("collectors.kafka"), [kafkaText(c.kafka), c.kafka.error ? ` · ${c.kafka.error}` : ""]],
      [t("collectors.spool_label"), t("collectors.spool_detail", {
        entries: number(c.spool.entries), size: bytes(c.spool.bytes), max: bytes(c.spool.max_bytes),
      })],
      [t("collectors.queued_label"), bytes(c.queued_bytes)],
    ];
    const sources = c.sources.length
      ? h("div", { class: "table-wrap" }, h("table", { class: "data sources" },
        h("caption", { class: "visually-hidden" }, t("collectors.sources")),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, t("collectors.source.name")),
          h("th", { scope: "col", class: "num" }, t("collectors.source.read")),
          h("th", { scope: "col", class: "num" }, t("collectors.source.sent")),
          h("th", { scope: "col", class: "num" }, t("collectors.source.spooled")),
          h("th", { scope: "col", class: "num" }, t("collectors.source.lag")),
          h("th", { scope: "col", class: "num" }, t("collectors.source.dropped")),
          h("th", { scope: "col", class: "num" }, t("collectors.source.unreadable")),
          h("th", { scope: "col", class: "num" }, t("collectors.source.malformed")),
          h("th", { scope: "col", class: "num" }, t("collectors.source.refused")),
          h("th", { scope: "col", class: "num" }, t("collectors.source.invalid_utf8")),
          h("th", { scope: "col", class: "num" }, t("collectors.source.truncated")),
          h("th", { scope: "col" }, t("collectors.source.last_error")))),
        h("tbody", {}, c.sources.map((source) => {
          const lost = LOSSES.some((name) => source[name]);
          return h("tr", { class: lost ? "lossy" : null },
            h("th", { scope: "row", class: "mono" }, source.name || t("common.none")),
            count(source.read), count(source.sent), count(source.spooled, "warn"), count(source.lag, "warn"),
            ...LOSSES.map((name) => count(source[name], "bad")),
            h("td", { class: "error" }, source.last_error
              ? [h("div", { class: "bad" }, source.last_error), h("div", { class: "muted" }, theirTime(source.last_error_at))]
              : t("common.none")));
        }))))
      : h("p", { class: "muted" }, t("collectors.no_sources"));
    const sourcesHeading = h("h3", {}, t("collectors.sources"));
    redraw(detail, h("section", { class: "panel", id: "collector-detail", "aria-labelledby": heading.id },
      h("div", { class: "toolbar" }, heading, h("span", { class: "spacer" }),
        h("button", { type: "button", dataset: { focus: "close-detail" }, on: { click: closeDetail } }, t("action.close"))),
      h("dl", { class: "pairs" }, pairs.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)])),
      sourcesHeading,
      sources));
    if (focus) {
      heading.scrollIntoView({ block: "start" });
      heading.focus({ preventScroll: true });
    }
  }

  // --- completeness --------------------------------------------------------------------------

  function perAgency(rows) {
    const totals = new Map();
    for (const row of rows) {
      let total = totals.get(row.agency);
      if (!total) {
        total = { agency: row.agency, hours: 0, gapHours: 0, gaps: Object.fromEntries(GAPS.map((n) => [n, 0])) };
        for (const name of MEASURES) total[name] = 0;
        totals.set(row.agency, total);
      }
      total.hours += 1;
      if (gapTotal(row)) total.gapHours += 1;
      for (const name of MEASURES) total[name] += row[name] || 0;
      for (const name of GAPS) total.gaps[name] += row.gaps[name] || 0;
    }
    return [...totals.values()].sort((a, b) => gapTotal(b) - gapTotal(a) || a.agency.localeCompare(b.agency));
  }

  function perHour(rows, since, until) {
    // Every hour of the range, so that an hour nothing was counted in shows as 0.
    const byHour = new Map();
    for (const row of rows) {
      const key = new Date(row.hour).getTime();
      const sum = byHour.get(key) || { collected: 0, received: 0 };
      sum.collected += row.collected || 0;
      sum.received += row.received || 0;
      byHour.set(key, sum);
    }
    const hours = [];
    const step = 3600_000;
    for (let hour = Math.floor(new Date(since).getTime() / step) * step; hour < new Date(until).getTime(); hour += step) {
      const sum = byHour.get(hour) || { collected: 0, received: 0 };
      hours.push({ label: hourLabel(new Date(hour).toISOString()), values: [sum.collected, sum.received] });
    }
    return hours;
  }

  function agencyName(id) {
    return knownAgencies.get(id) || id;
  }

  function measureHead() {
    return MEASURES.map((name) => h("th", { scope: "col", class: "num" }, measureText(name)));
  }

  /** The counts of a row; ``dead``: what each stage dead-lettered, as a hint. */
  function measureCells(row, dead) {
    return MEASURES.map((name) => {
      const cell = count(row[name], name === "dead_lettered" || name === "unparsed" ? "warn" : null);
      if (name === "dead_lettered" && dead) cell.title = dead;
      return cell;
    });
  }

  function drawCompleteness(answer) {
    const rows = answer.data;
    if (!rows.length) {
      redraw(completeness, h("p", { class: "muted empty" }, t("collectors.completeness.none", {
        since: dateTime(answer.since), until: dateTime(answer.until),
      })));
      return;
    }
    const agencies = perAgency(rows);
    const range = h("p", { class: "muted" }, t("collectors.completeness.range", {
      since: dateTime(answer.since), until: dateTime(answer.until),
    }));
    const chartTitle = t("collectors.completeness.chart");
    const chart = pairedBars(perHour(rows, answer.since, answer.until), {
      label: chartTitle, series: [measureText("collected"), measureText("received")], id: "completeness-chart",
      open: Boolean(completeness.querySelector('details[data-key="completeness-chart"][open]')),
    });
    const table = h("div", { class: "table-wrap" }, h("table", { class: "data completeness" },
      h("caption", { class: "visually-hidden" }, t("collectors.completeness.by_agency")),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, t("field.agency")),
        ...measureHead(),
        h("th", { scope: "col" }, t("collectors.completeness.verdict")))),
      h("tbody", {}, agencies.map((total) => {
        const gaps = gapTotal(total);
        const chosen = state.hourly === total.agency;
        return h("tr", { class: [gaps ? "gap" : null, chosen ? "current" : null] },
          h("th", { scope: "row" }, h("button", {
            type: "button", class: "link", "aria-expanded": String(chosen), "aria-controls": chosen ? "completeness-hourly" : null,
            dataset: { focus: `hourly:${total.agency}` },
            "aria-label": t("collectors.completeness.show_hours", { agency: agencyName(total.agency) }),
            on: { click: () => { state.hourly = chosen ? null : total.agency; drawCompleteness(answer); } },
          }, agencyName(total.agency)),
          agencyName(total.agency) !== total.agency ? h("div", { class: "muted mono" }, total.agency) : null),
          ...measureCells(total),
          verdict(gaps, total.gaps, t("collectors.completeness.gaps", { hours: number(total.gapHours), total: number(total.hours) })));
      }))));
    redraw(completeness,
      range,
      h("h3", {}, t("collectors.completeness.by_agency")),
      table,
      state.hourly ? hourly(rows.filter((row) => row.agency === state.hourly)) : null,
      h("h3", {}, chartTitle),
      chart);
  }

  function hourly(rows) {
    const title = t("collectors.completeness.hourly", { agency: agencyName(state.hourly) });
    return h("section", { id: "completeness-hourly", "aria-label": title },
      h("h3", {}, title),
      rows.length ? h("div", { class: "table-wrap" }, h("table", { class: "data hourly" },
        h("caption", { class: "visually-hidden" }, title),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, t("collectors.completeness.hour")),
          ...measureHead(),
          h("th", { scope: "col" }, t("collectors.completeness.verdict")))),
        h("tbody", {}, [...rows].reverse().map((row) => {
          const gaps = gapTotal(row);
          const dead = Object.entries(row.dead_lettered_by_stage || {}).map(([stage, n]) => `${stage}: ${number(n)}`).join(", ");
          return h("tr", { class: gaps ? "gap" : null },
            h("th", { scope: "row" }, h("time", { datetime: row.hour }, hourLabel(row.hour))),
            ...measureCells(row, dead),
            verdict(gaps, row.gaps, t("collectors.completeness.gap")));
        }))))
        : h("p", { class: "muted" }, t("common.empty")));
  }

  // --- loading -------------------------------------------------------------------------------

  let sequence = 0;
  async function load() {
    const mine = ++sequence;
    const until = new Date();
    const since = new Date(until.getTime() - Number(state.hours) * 3600_000);
    list.setAttribute("aria-busy", "true");
    completeness.setAttribute("aria-busy", "true");
    const query = { agency: scoped ? undefined : state.agency };
    // Each answer drawn on its own: completeness failing does not hide the collectors.
    const [collectors, rows] = await Promise.allSettled([
      api.get("collectors", query),
      api.get("collectors/completeness", { ...query, since: since.toISOString(), until: until.toISOString() }),
    ]);
    if (mine !== sequence || !ctx.alive()) return;
    list.setAttribute("aria-busy", "false");
    completeness.setAttribute("aria-busy", "false");
    if (collectors.status === "fulfilled") {
      const answer = collectors.value;
      for (const c of answer.data) knownAgencies.set(c.agency, c.agency_name || knownAgencies.get(c.agency) || null);
      for (const agency of answer.agencies_without_collectors) knownAgencies.set(agency.id, agency.name);
    }
    if (rows.status === "fulfilled") {
      for (const row of rows.value.data) if (!knownAgencies.has(row.agency)) knownAgencies.set(row.agency, null);
    }
    if (!scoped) fillAgencies();
    if (collectors.status === "fulfilled") {
      last = { ...last, collectors: collectors.value };
      drawSummary(collectors.value);
      drawList(collectors.value);
    } else if (!last || !last.collectors) {
      // What was drawn before stays (its time says when); nothing yet: say so, not "loading".
      replace(list, h("p", { class: "muted empty" }, t("collectors.unavailable")));
    }
    if (rows.status === "fulfilled") {
      last = { ...last, rows: rows.value };
      drawCompleteness(rows.value);
    } else if (!last || !last.rows) {
      replace(completeness, h("p", { class: "muted empty" }, t("collectors.completeness.unavailable")));
    }
    const failed = [collectors, rows].find((answer) => answer.status === "rejected");
    if (failed) ctx.sayError(failed.reason);
    else replace(updated, t("common.updated", { time: dateTime(new Date().toISOString()) }));
    if (state.open) await loadDetail(false);
  }

  await load();
  ctx.every(REFRESH_MS, load);
}
