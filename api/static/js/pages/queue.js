// The alert queue: filters kept in the address (#/alerts?severity=high&status=new), a sort, live
// refresh, pages by cursor, a current row moved with j/k, and multi-select for bulk actions.
"use strict";
import { api } from "../api.js";
import { field, h, replace, select } from "../dom.js";
import { dateTime, number, t } from "../i18n.js";
import { escalate, TACTICS } from "./triage.js";

const SEVERITIES = ["critical", "high", "medium", "low", "informational"];
const STATUSES = ["new", "acknowledged", "in_progress", "resolved", "false_positive"];
const SORTS = ["last_seen", "first_seen", "severity", "risk_score", "count"];
const RANGES = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };
const REFRESH_MS = 10000;
const PAGE = 50;
// The queue's order, for next/previous on an alert's page.
export const QUEUE_KEY = "socpipe-queue";

/** A moment as a datetime-local value in Vietnam's time (UTC+7, no daylight saving). */
function local(iso) {
  if (!iso) return "";
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return "";
  return new Date(moment.getTime() + 7 * 3600 * 1000).toISOString().slice(0, 16);
}

/** The API's query for the filters in the address. */
function apiQuery(query) {
  const range = query.get("range") || "7d";
  const since = query.get("since") || (RANGES[range] ? new Date(Date.now() - RANGES[range] * 1000).toISOString() : "");
  return {
    status: query.getAll("status"),
    severity: query.getAll("severity"),
    agency: query.get("agency"),
    tier: query.get("tier"),
    rule_id: query.get("rule_id"),
    tactic: query.get("tactic"),
    host: query.get("host"),
    user: query.get("user"),
    source_ip: query.get("source_ip"),
    q: query.get("q"),
    since,
    until: query.get("until"),
    sort: query.get("sort") || "last_seen",
    order: query.get("order") || "desc",
  };
}

export async function render(page, ctx) {
  const query = ctx.query;
  const triager = ctx.can("soc_admin", "analyst");
  const state = { alerts: [], cursor: null, total: 0, exact: true, current: 0, selected: new Set(), loaded: PAGE };
  ctx.title(t("queue.title"));

  // --- filters -----------------------------------------------------------------------------
  const checks = (name, values, prefix) => h("fieldset", { class: "checks" },
    h("legend", {}, t(`${prefix}.label`)),
    h("div", { class: "options" }, values.map((value) => h("label", {},
      h("input", { type: "checkbox", name, value, checked: query.getAll(name).includes(value) }),
      t(`${prefix}.${value}`)))));
  const text = (name, props = {}) => h("input", { name, value: query.get(name) || "", ...props });
  const search = text("q", { type: "search", placeholder: t("queue.search_hint"), "aria-keyshortcuts": "/" });
  const form = h("form", { class: "filters", role: "search", "aria-label": t("queue.filters"),
    on: { submit: (event) => { event.preventDefault(); apply(); } } },
  field(t("queue.search"), search),
  checks("severity", SEVERITIES, "severity"),
  checks("status", STATUSES, "status"),
  field(t("field.agency"), text("agency", { size: 14, placeholder: "so-tttt" })),
  field(t("tier.label"), select([["", t("common.all")], ["province", t("tier.province")], ["commune", t("tier.commune")]],
    query.get("tier"), { name: "tier" })),
  field(t("tactic.label"), select([["", t("common.all")], ...TACTICS.map((x) => [x, t(`tactic.${x}`)])],
    query.get("tactic"), { name: "tactic" })),
  field(t("queue.rule_id"), text("rule_id", { size: 16 })),
  field(t("queue.range"), select(Object.keys(RANGES).map((r) => [r, t(`queue.range_${r}`)]).concat([["all", t("queue.range_all")]]),
    query.get("range") || "7d", { name: "range" })),
  field(t("queue.from"), h("input", { type: "datetime-local", name: "since_local", value: local(query.get("since")) })),
  field(t("queue.to"), h("input", { type: "datetime-local", name: "until_local", value: local(query.get("until")) })),
  field(t("queue.sort"), select(SORTS.map((s) => [s, t(`queue.sort_${s}`)]), query.get("sort") || "last_seen", { name: "sort" })),
  field(t("queue.order"), select([["desc", t("queue.order_desc")], ["asc", t("queue.order_asc")]],
    query.get("order") || "desc", { name: "order" })),
  h("div", { class: "actions" },
    h("button", { type: "submit", class: "primary" }, t("action.apply")),
    h("button", { type: "button", on: { click: () => ctx.go("/alerts") } }, t("action.reset"))));

  function apply() {
    const data = new FormData(form);
    const next = new URLSearchParams();
    for (const [name, value] of data.entries()) {
      if (value === "") continue;
      // A time typed in Vietnam's time (UTC+7 all year) goes to the API as a moment.
      if (name === "since_local" || name === "until_local") next.set(name.slice(0, 5), `${value}:00+07:00`);
      else next.append(name, String(value));
    }
    for (const keep of ["host", "user", "source_ip"]) {
      if (query.get(keep)) next.set(keep, query.get(keep));
    }
    ctx.go(`/alerts?${next}`);
  }

  // --- table -------------------------------------------------------------------------------
  const summary = h("p", { class: "muted", "aria-live": "polite" });
  const live = h("input", { type: "checkbox", checked: true });
  const selectAll = h("input", { type: "checkbox", "aria-label": t("queue.select_all"),
    on: { change: () => {
      state.selected = selectAll.checked ? new Set(state.alerts.map((a) => a.id)) : new Set();
      draw();
    } } });
  const body = h("tbody");
  const more = h("button", { type: "button", on: { click: () => load(true) } }, t("action.load_more"));
  const bulkbar = h("div", { class: "bulkbar", role: "region", "aria-label": t("queue.bulk"), hidden: true });
  const columns = [
    triager ? h("th", { scope: "col" }, selectAll) : null,
    ...["severity.label", "field.rule", "field.agency", "tier.label", "field.host", "field.user", "field.source_ip"]
      .map((key) => h("th", { scope: "col" }, t(key))),
    h("th", { scope: "col", class: "num" }, t("field.count")),
    h("th", { scope: "col" }, t("status.label")),
    h("th", { scope: "col" }, t("field.assignee")),
    h("th", { scope: "col" }, t("field.last_seen")),
  ];
  const table = h("table", { class: "data", "aria-label": t("queue.title") },
    h("thead", {}, h("tr", {}, columns)), body);

  function row(alert, index) {
    const chosen = state.selected.has(alert.id);
    const box = triager ? h("td", {}, h("input", {
      type: "checkbox", checked: chosen, "aria-label": t("queue.select_one", { title: alert.rule.title }),
      on: { change: (event) => { toggle(alert.id, event.target.checked); } },
    })) : null;
    const tier = alert.entities.tier;
    return h("tr", {
      class: [index === state.current ? "current" : "", chosen ? "selected" : ""],
      dataset: { id: alert.id }, "aria-current": index === state.current ? "true" : false,
      on: { click: (event) => { if (event.target.tagName === "TD") { state.current = index; draw(); } } },
    },
    box,
    h("td", {}, h("span", { class: `badge sev-${alert.severity}` }, t(`severity.${alert.severity}`))),
    h("td", {}, h("a", { href: `#/alerts/${alert.id}` }, alert.rule.title),
      alert.detector.type === "anomaly" ? h("span", { class: "muted" }, " · ", t("queue.anomaly")) : null),
    h("td", { title: alert.entities.agency }, ctx.agencyName(alert.entities.agency)),
    h("td", {}, tier ? t(`tier.short_${tier}`) : t("common.none")),
    h("td", {}, alert.entities.host || t("common.none")),
    h("td", {}, alert.entities.user || t("common.none")),
    h("td", { class: "mono" }, alert.entities.source_ip || t("common.none")),
    h("td", { class: "num" }, number(alert.count)),
    h("td", {}, h("span", { class: `badge st-${alert.status}` }, t(`status.${alert.status}`))),
    h("td", {}, alert.assignee || t("common.none")),
    h("td", {}, dateTime(alert.last_seen)));
  }

  function toggle(id, on) {
    if (on) state.selected.add(id);
    else state.selected.delete(id);
    draw();
  }

  function draw() {
    replace(body, state.alerts.length ? state.alerts.map(row)
      : h("tr", {}, h("td", { colspan: columns.length }, t("queue.empty"))));
    const total = `${number(state.total)}${state.exact ? "" : "+"}`;
    replace(summary, t("queue.summary", { shown: number(state.alerts.length), total }),
      state.updated ? ` · ${t("common.updated", { time: dateTime(state.updated) })}` : "");
    more.hidden = !state.cursor;
    selectAll.checked = state.alerts.length > 0 && state.alerts.every((a) => state.selected.has(a.id));
    drawBulk();
    sessionStorage.setItem(QUEUE_KEY, JSON.stringify({ ids: state.alerts.map((a) => a.id), query: query.toString() }));
  }

  // --- bulk actions ------------------------------------------------------------------------
  function drawBulk() {
    const ids = [...state.selected];
    bulkbar.hidden = !triager || ids.length === 0;
    if (bulkbar.hidden) return;
    const verdict = select(["true_positive", "benign_positive", "false_positive", "duplicate"]
      .map((v) => [v, t(`verdict.${v}`)]), "true_positive");
    const reason = h("input", { size: 24 });
    const assignee = h("input", { size: 14 });
    const comment = h("input", { size: 24 });
    replace(bulkbar,
      h("strong", {}, t("queue.selected", { count: number(ids.length) })),
      h("button", { type: "button", on: { click: () => bulk({ action: "acknowledge", ids }) } }, t("triage.acknowledge")),
      h("button", { type: "button", on: { click: () => bulk({ action: "assign", ids, assignee: ctx.me.name }) } }, t("triage.assign_me")),
      field(t("triage.assign_to"), assignee),
      h("button", { type: "button", on: { click: () => assignee.value.trim() &&
        bulk({ action: "assign", ids, assignee: assignee.value.trim() }) } }, t("triage.assign")),
      field(t("verdict.label"), verdict), field(t("triage.reason"), reason),
      h("button", { type: "button", on: { click: () => {
        if (!reason.value.trim()) { reason.focus(); ctx.say(t("triage.reason_needed"), "error"); return; }
        bulk({ action: "resolve", ids, verdict: verdict.value, reason: reason.value.trim() });
      } } }, t("triage.resolve")),
      field(t("triage.comment"), comment),
      h("button", { type: "button", on: { click: () => comment.value.trim() &&
        bulk({ action: "comment", ids, text: comment.value.trim() }) } }, t("triage.add_comment")),
      h("button", { type: "button", on: { click: async () => {
        const created = await escalate(ctx, ids, state.alerts.filter((a) => state.selected.has(a.id)));
        if (created) ctx.go(`/cases/${created.id}`);
      } } }, t("triage.escalate")),
      h("button", { type: "button", class: "link", on: { click: () => { state.selected.clear(); draw(); } } }, t("queue.clear_selection")));
  }

  async function bulk(body) {
    try {
      const result = await api.post("alerts/bulk", body);
      const counts = Object.entries(result.counts).map(([outcome, n]) => `${t(`outcome.${outcome}`)}: ${n}`).join(", ");
      const refused = result.results.filter((r) => r.outcome === "refused" || r.outcome === "failed");
      ctx.say(`${t(`queue.done_${body.action}`)} — ${counts}${refused.length ? ` (${refused[0].detail})` : ""}`,
        refused.length ? "error" : "ok");
      state.selected.clear();
      await load(false);
    } catch (error) {
      ctx.sayError(error);
    }
  }

  // --- loading -----------------------------------------------------------------------------
  async function load(next) {
    const params = { ...apiQuery(query), limit: next ? PAGE : Math.max(PAGE, state.loaded) };
    if (next) params.cursor = state.cursor;
    try {
      const result = await api.get("alerts", params);
      if (!ctx.alive()) return;
      const currentId = state.alerts[state.current]?.id;
      state.alerts = next ? state.alerts.concat(result.data) : result.data;
      state.loaded = state.alerts.length;
      state.cursor = result.next_cursor;
      state.total = result.total;
      state.exact = result.total_exact;
      state.updated = new Date().toISOString();
      const kept = state.alerts.findIndex((a) => a.id === currentId);
      state.current = kept >= 0 ? kept : Math.min(state.current, Math.max(0, state.alerts.length - 1));
      const known = new Set(state.alerts.map((a) => a.id));
      state.selected = new Set([...state.selected].filter((id) => known.has(id)));
      draw();
    } catch (error) {
      ctx.sayError(error);
    }
  }

  // --- keyboard ----------------------------------------------------------------------------
  function move(step) {
    if (!state.alerts.length) return;
    state.current = Math.max(0, Math.min(state.alerts.length - 1, state.current + step));
    draw();
    body.querySelector("tr.current")?.scrollIntoView({ block: "nearest" });
  }
  const currentAlert = () => state.alerts[state.current];
  ctx.keys({
    j: () => move(1),
    k: () => move(-1),
    Enter: () => currentAlert() && ctx.go(`/alerts/${currentAlert().id}`),
    o: () => currentAlert() && ctx.go(`/alerts/${currentAlert().id}`),
    x: () => currentAlert() && triager && toggle(currentAlert().id, !state.selected.has(currentAlert().id)),
    a: () => triager && currentAlert() &&
      bulk({ action: "acknowledge", ids: state.selected.size ? [...state.selected] : [currentAlert().id] }),
    m: () => triager && currentAlert() &&
      bulk({ action: "assign", ids: state.selected.size ? [...state.selected] : [currentAlert().id], assignee: ctx.me.name }),
    "/": () => search.focus(),
  });

  ctx.every(REFRESH_MS, () => { if (live.checked) load(false); });

  replace(page,
    h("div", { class: "toolbar" }, h("h1", {}, t("queue.title")), h("span", { class: "spacer" }),
      h("label", {}, live, " ", t("queue.live")),
      h("button", { type: "button", on: { click: () => load(false) } }, t("action.refresh"))),
    form, summary, bulkbar, h("div", { class: "table-wrap" }, table), h("p", {}, more));
  draw();
  await load(false);
}
