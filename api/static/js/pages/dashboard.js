// #/dashboard: counts of the alerts last seen in a range (GET /stats): key figures, alerts over
// time, per severity, status, agency, tier, ATT&CK tactic and rule, and the most frequent hosts,
// users and source addresses. Filters (range, agency, tier) are kept in the address
// (#/dashboard?range=7d&agency=so-tttt&tier=province); the figures refresh every minute.
// A bar of a status, an agency, a tactic or a rule opens the alert queue filtered on it.
"use strict";
import { api } from "../api.js";
import { barChart, redraw, timeChart } from "../charts.js";
import { field, h, replace, select } from "../dom.js";
import { dateTime, number, t, TIME_ZONE, tOr } from "../i18n.js";

const REFRESH_MS = 60_000;
const RANGES = {
  "24h": { hours: 24, interval: "1h" },
  "7d": { hours: 24 * 7, interval: "1h" },
  "30d": { hours: 24 * 30, interval: "1d" },
};
const SEVERITIES = ["critical", "high", "medium", "low", "informational"];
const STATUSES = ["new", "acknowledged", "in_progress", "resolved", "false_positive"];
const OPEN = ["new", "acknowledged", "in_progress"];
const TIERS = ["province", "commune"];
// The agency filter's choices: the registry's agencies (GET /agencies), and those seen in earlier
// answers (an agency the registry does not know still has alerts).
const knownAgencies = new Set();

function countOf(list, keys) {
  return list.filter((item) => keys.includes(item.key)).reduce((sum, item) => sum + item.alerts, 0);
}

/** ``list`` in the order of ``order`` (keys it lacks counted 0, keys not in it last). */
function ordered(list, order) {
  const found = new Map(list.map((item) => [item.key, item]));
  const known = order.map((key) => found.get(key) || { key, alerts: 0, detections: 0 });
  return [...known, ...list.filter((item) => !order.includes(item.key))];
}

/** "/alerts?name=value" with the dashboard's agency filter kept (when not the one set). */
function queue(name, value, agency) {
  const query = new URLSearchParams({ [name]: value });
  if (agency && name !== "agency") query.set("agency", agency);
  return `/alerts?${query}`;
}

export async function render(page, ctx) {
  const scoped = Boolean(ctx.me && ctx.me.agency);
  const state = {
    range: RANGES[ctx.query.get("range")] ? ctx.query.get("range") : "24h",
    agency: scoped ? "" : ctx.query.get("agency") || "",
    tier: TIERS.includes(ctx.query.get("tier")) ? ctx.query.get("tier") : "",
  };
  for (const agency of ctx.agencies()) knownAgencies.add(agency.id);
  if (state.agency) knownAgencies.add(state.agency);
  ctx.title(t("dashboard.title"));

  const rangeSelect = select([
    ["24h", t("dashboard.range.24h")], ["7d", t("dashboard.range.7d")], ["30d", t("dashboard.range.30d")],
  ], state.range, { name: "range" });
  const tierSelect = select([
    ["", t("common.all")], ["province", t("tier.province")], ["commune", t("tier.commune")],
  ], state.tier, { name: "tier" });
  const agencySelect = select([], "", { name: "agency" });
  const refreshButton = h("button", { type: "button", on: { click: () => load() } }, t("action.refresh"));
  const updated = h("p", { class: "muted updated" });
  const results = h("div", { class: "dashboard-results", "aria-busy": "true" }, h("p", { class: "muted" }, t("common.loading")));

  function fillAgencies() {
    const agencies = [...knownAgencies].sort();
    const choices = agencies.map((id) => [id, ctx.agencyName(id)]).sort((a, b) => a[1].localeCompare(b[1], "vi"));
    replace(agencySelect, [...select([["", t("common.all")], ...choices], state.agency).options]);
    agencySelect.value = state.agency;
  }
  fillAgencies();

  function remember() {
    // Kept in the address for a bookmark or a wall screen; not a navigation (no re-render).
    const query = new URLSearchParams();
    if (state.range !== "24h") query.set("range", state.range);
    if (state.agency) query.set("agency", state.agency);
    if (state.tier) query.set("tier", state.tier);
    const text = query.toString();
    history.replaceState(null, "", `#/dashboard${text ? `?${text}` : ""}`);
  }

  function changed() {
    state.range = rangeSelect.value;
    state.tier = tierSelect.value;
    if (!scoped) state.agency = agencySelect.value;
    remember();
    load();
  }
  for (const control of [rangeSelect, tierSelect, agencySelect]) control.addEventListener("change", changed);

  const filters = h("form", {
    class: "filters", role: "search", "aria-label": t("dashboard.filters"),
    on: { submit: (event) => { event.preventDefault(); load(); } },
  },
  field(t("dashboard.range"), rangeSelect),
  scoped ? h("p", { class: "scope" }, h("span", { class: "muted" }, `${t("field.agency")}: `), ctx.agencyName(ctx.me.agency))
    : field(t("field.agency"), agencySelect),
  scoped ? null : field(t("tier.label"), tierSelect),
  refreshButton,
  updated);

  replace(page,
    h("h1", {}, t("dashboard.title")),
    filters,
    results);

  let sequence = 0;
  let drawn = false;
  async function load() {
    const mine = ++sequence;
    const range = RANGES[state.range];
    const until = new Date();
    const since = new Date(until.getTime() - range.hours * 3600_000);
    results.setAttribute("aria-busy", "true");
    try {
      const stats = await api.get("stats", {
        since: since.toISOString(), until: until.toISOString(), interval: range.interval,
        tz: TIME_ZONE, agency: state.agency, tier: state.tier, top: 10,
      });
      if (mine !== sequence || !ctx.alive()) return;
      for (const item of stats.by_agency) knownAgencies.add(item.key);
      if (!scoped) fillAgencies();
      draw(stats);
      drawn = true;
      replace(updated, t("common.updated", { time: dateTime(new Date().toISOString()) }));
    } catch (error) {
      if (mine !== sequence || !ctx.alive()) return;
      ctx.sayError(error);
      // Figures drawn before stay (with their time); none yet: say so instead of "loading".
      if (!drawn) replace(results, h("p", { class: "panel muted empty" }, t("dashboard.unavailable")));
    } finally {
      if (mine === sequence) {
        results.setAttribute("aria-busy", "false");
      }
    }
  }

  function kpi(value, label, tone) {
    return h("div", { class: ["kpi", tone] }, h("div", { class: "value" }, number(value)), h("div", { class: "label" }, label));
  }

  function panel(key, title, ...content) {
    const heading = h("h2", { id: `dashboard-${key}` }, title);
    return h("section", { class: ["panel", `dashboard-${key}`], "aria-labelledby": heading.id }, heading, content);
  }

  function topTable(key, title, column, list) {
    const body = list.length
      ? h("table", { class: "data" },
        h("caption", { class: "visually-hidden" }, title),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, column),
          h("th", { scope: "col", class: "num" }, t("charts.alerts")),
          h("th", { scope: "col", class: "num" }, t("charts.detections")))),
        h("tbody", {}, list.map((item) => h("tr", {},
          h("th", { scope: "row", class: "mono truncate", title: item.key }, item.key),
          h("td", { class: "num" }, number(item.alerts)),
          h("td", { class: "num" }, number(item.detections))))))
      : h("p", { class: "muted empty" }, t("charts.empty"));
    return panel(key, title, h("div", { class: "table-wrap" }, body));
  }

  function draw(stats) {
    // The data tables' <details> open before the refresh stay open.
    const open = new Set([...results.querySelectorAll("details[open]")].map((node) => node.dataset.key));
    const range = RANGES[state.range];
    const agency = state.agency;
    const newOnes = countOf(stats.by_status, ["new"]);
    const openOnes = countOf(stats.by_status, OPEN);
    const serious = countOf(stats.by_severity, ["critical", "high"]);
    const critical = countOf(stats.by_severity, ["critical"]);

    const kpis = h("section", { class: "dashboard-kpis", "aria-labelledby": "dashboard-kpis" },
      h("h2", { id: "dashboard-kpis", class: "visually-hidden" }, t("dashboard.kpis")),
      h("div", { class: "kpis" },
        kpi(stats.alerts, t("dashboard.kpi.alerts")),
        kpi(stats.detections, t("dashboard.kpi.detections")),
        kpi(newOnes, t("dashboard.kpi.new"), newOnes ? "warn" : null),
        kpi(openOnes, t("dashboard.kpi.open")),
        kpi(serious, t("dashboard.kpi.serious", { critical: number(critical) }), serious ? "bad" : null)),
      h("p", { class: "muted period" }, t("dashboard.period", { since: dateTime(stats.since), until: dateTime(stats.until) })));

      const timeTitle = range.interval === "1d" ? t("dashboard.over_time.day") : t("dashboard.over_time.hour");
    const overTime = panel("time", timeTitle,
      timeChart(stats.histogram, {
        label: timeTitle,
        interval: range.interval, id: "time", open: open.has("time"),
      }));

    const severities = ordered(stats.by_severity, SEVERITIES).map((item) => ({
      key: item.key, label: tOr(`severity.${item.key}`, item.key), value: item.alerts, detections: item.detections,
      color: SEVERITIES.includes(item.key) ? `var(--${item.key})` : null,
    }));
    const statuses = ordered(stats.by_status, STATUSES).map((item) => ({
      key: item.key, label: tOr(`status.${item.key}`, item.key), value: item.alerts, detections: item.detections,
      href: queue("status", item.key, agency),
    }));
    const agencies = stats.by_agency.map((item) => ({
      key: item.key, label: item.label || ctx.agencyName(item.key), value: item.alerts, detections: item.detections,
      href: queue("agency", item.key),
    }));
    const tiers = ordered(stats.by_tier, TIERS).map((item) => ({
      key: item.key, label: tOr(`tier.${item.key}`, item.key), value: item.alerts, detections: item.detections,
      tone: item.key === "commune" ? "alt" : null,
    }));
    const tactics = stats.by_tactic.map((item) => ({
      key: item.key, label: tOr(`tactic.${item.key}`, item.key), value: item.alerts, detections: item.detections,
      href: queue("tactic", item.key, agency),
    }));
    const rules = stats.by_rule.map((item) => ({
      key: item.key, label: item.label || item.key, value: item.alerts, detections: item.detections,
      href: queue("rule_id", item.key, agency),
    }));
    const chart = (key, title, items, keyLabel, limit) =>
      panel(key, title, barChart(items, { label: title, keyLabel, id: key, open: open.has(key), limit, go: ctx.go }));

    const facets = h("div", { class: "grid dashboard-charts" },
      chart("severity", t("dashboard.by_severity"), severities, t("severity.label")),
      chart("status", t("dashboard.by_status"), statuses, t("status.label")),
      scoped ? null : chart("agency", t("dashboard.by_agency"), agencies, t("field.agency"), 15),
      scoped ? null : chart("tier", t("dashboard.by_tier"), tiers, t("tier.label")),
      chart("tactic", t("dashboard.by_tactic"), tactics, t("tactic.label")),
      chart("rule", t("dashboard.top_rules"), rules, t("field.rule")));

    const tops = h("div", { class: "grid dashboard-tops" },
      topTable("hosts", t("dashboard.top_hosts"), t("field.host"), stats.top_hosts),
      topTable("users", t("dashboard.top_users"), t("field.user"), stats.top_users),
      topTable("ips", t("dashboard.top_source_ips"), t("field.source_ip"), stats.top_source_ips));

    redraw(results,
      kpis,
      stats.alerts ? null : h("p", { class: "panel muted empty" }, t("dashboard.no_alerts")),
      overTime,
      h("p", { class: "hint" }, t("dashboard.click_hint")),
      facets,
      tops);
  }

  await load();
  ctx.every(REFRESH_MS, load);
}
