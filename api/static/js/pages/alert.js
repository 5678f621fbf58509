// One alert: what fired (the rule and its ATT&CK technique, or the anomaly's features in words),
// the triggering events laid out readably (ECS fields by group, the original line), notes,
// history, and the triage actions.
"use strict";
import { api } from "../api.js";
import { field, h, replace, select } from "../dom.js";
import { dateTime, number, t, tOr } from "../i18n.js";
import { QUEUE_KEY } from "./queue.js";
import { escalate } from "./triage.js";

const VERDICTS = ["true_positive", "benign_positive", "false_positive", "duplicate"];
const CLOSED = ["resolved", "false_positive"];
// ECS groups shown first, in this order; others follow by name.
const GROUPS = ["event", "source", "destination", "user", "host", "process", "url", "http", "user_agent",
  "network", "file", "winlog", "organization", "log", "related"];
const SKIPPED = new Set(["message", "@timestamp", "v"]);

export async function render(page, ctx) {
  const id = ctx.params[0];
  const triager = ctx.can("soc_admin", "analyst");
  let alert = await api.get(`alerts/${encodeURIComponent(id)}`);
  if (!ctx.alive()) return;

  const queue = JSON.parse(sessionStorage.getItem(QUEUE_KEY) || "null");
  const position = queue ? queue.ids.indexOf(id) : -1;
  const neighbour = (step) => (position >= 0 ? queue.ids[position + step] : undefined);
  const back = () => ctx.go(`/alerts${queue && queue.query ? `?${queue.query}` : ""}`);

  async function change(body, done) {
    try {
      alert = await api.patch(`alerts/${encodeURIComponent(id)}`, body);
      ctx.say(t(done), "ok");
      draw();
    } catch (error) {
      ctx.sayError(error);
    }
  }

  ctx.keys({
    j: () => neighbour(1) && ctx.go(`/alerts/${neighbour(1)}`, true),
    k: () => neighbour(-1) && ctx.go(`/alerts/${neighbour(-1)}`, true),
    Escape: back,
    a: () => triager && alert.status === "new" && change({ status: "acknowledged" }, "triage.done_acknowledged"),
    m: () => triager && change({ assignee: ctx.me.name }, "triage.done_assigned"),
  });

  function draw() {
    ctx.title(alert.rule.title);
    replace(page,
      h("nav", { class: "toolbar", "aria-label": t("alert.navigation") },
        h("button", { type: "button", on: { click: back } }, "← ", t("alert.back")),
        h("button", { type: "button", disabled: !neighbour(-1), "aria-keyshortcuts": "k",
          on: { click: () => ctx.go(`/alerts/${neighbour(-1)}`, true) } }, t("alert.previous")),
        h("button", { type: "button", disabled: !neighbour(1), "aria-keyshortcuts": "j",
          on: { click: () => ctx.go(`/alerts/${neighbour(1)}`, true) } }, t("alert.next")),
        position >= 0 ? h("span", { class: "muted" }, t("alert.position", { n: position + 1, of: queue.ids.length })) : null),
      h("h1", {}, h("span", { class: `badge sev-${alert.severity}` }, t(`severity.${alert.severity}`)), " ",
        alert.rule.title, " ", h("span", { class: `badge st-${alert.status}` }, t(`status.${alert.status}`))),
      h("div", { class: "cols-2" },
        h("div", {}, summary(), alert.anomaly ? anomaly() : null, events()),
        h("div", {}, triager ? actions() : null, rule(), notes(), history())));
  }

  function summary() {
    const e = alert.entities;
    const pairs = [
      ["field.agency", ctx.agencyName(e.agency) === e.agency ? e.agency : `${ctx.agencyName(e.agency)} (${e.agency})`],
      ["tier.label", e.tier ? t(`tier.${e.tier}`) : null],
      ["field.host", e.host], ["field.user", e.user], ["field.source_ip", e.source_ip],
      ["field.count", number(alert.count)], ["alert.risk", alert.risk_score],
      ["field.first_seen", dateTime(alert.first_seen)], ["field.last_seen", dateTime(alert.last_seen)],
      ["field.assignee", alert.assignee], ["verdict.label", alert.verdict ? tOr(`verdict.${alert.verdict}`, alert.verdict) : null],
    ];
    return h("section", { class: "panel", "aria-labelledby": "alert-summary" },
      h("h2", { id: "alert-summary" }, t("alert.summary")),
      h("dl", { class: "pairs" }, pairs.filter(([, value]) => value !== null && value !== undefined && value !== "")
        .map(([key, value]) => [h("dt", {}, t(key)), h("dd", {}, String(value))])),
      alert.cases.length ? h("p", {}, t("alert.cases"), " ",
        alert.cases.map((c) => [h("a", { href: `#/cases/${c}` }, c), " "])) : null);
  }

  function anomaly() {
    const a = alert.anomaly;
    return h("section", { class: "panel", "aria-labelledby": "alert-anomaly" },
      h("h2", { id: "alert-anomaly" }, t("alert.anomaly")),
      h("p", {}, t("alert.anomaly_score", { score: a.score.toFixed(3), threshold: a.threshold.toFixed(3) })),
      h("ul", { class: "drivers" }, (a.features || []).map((f) => h("li", {}, t("alert.feature_line", {
        name: tOr(`feature.${f.feature}`, f.feature),
        value: readable(f.feature, f.value),
        low: readable(f.feature, f.low),
        high: readable(f.feature, f.high),
      }), f.weight !== undefined ? h("span", { class: "muted" }, " ", t("alert.feature_weight", { weight: Math.round(f.weight * 100) })) : null))));
  }

  function events() {
    return h("section", { "aria-labelledby": "alert-events" },
      h("h2", { id: "alert-events" }, t("alert.events", { shown: alert.events.length, count: number(alert.count) })),
      alert.events.length ? alert.events.map((event, n) => eventView(event, n === 0)) : h("p", { class: "muted" }, t("alert.no_events")));
  }

  function rule() {
    const r = alert.rule;
    const rulesReader = ctx.can("soc_admin", "rule_author", "analyst") && alert.detector.type !== "anomaly"
      && alert.detector.type !== "check";
    return h("section", { class: "panel", "aria-labelledby": "alert-rule" },
      h("h2", { id: "alert-rule" }, t(alert.detector.type === "anomaly" ? "alert.model" : "alert.rule")),
      h("dl", { class: "pairs" },
        h("dt", {}, t("field.rule")), h("dd", {}, rulesReader ? h("a", { href: `#/rules/${r.id}` }, r.title) : r.title),
        h("dt", {}, t("alert.level")), h("dd", {}, t(`severity.${r.level}`)),
        h("dt", {}, t("tactic.label")), h("dd", {}, r.tactics.length ? r.tactics.map((x) => tOr(`tactic.${x}`, x)).join(", ") : t("common.none")),
        h("dt", {}, t("alert.techniques")), h("dd", { class: "mono" }, r.techniques.join(", ") || t("common.none")),
        h("dt", {}, t("alert.detector")), h("dd", {}, `${tOr(`detector.${alert.detector.type}`, alert.detector.type)} · ${alert.detector.version}`)));
  }

  function actions() {
    const closed = CLOSED.includes(alert.status);
    const verdict = select(VERDICTS.map((v) => [v, t(`verdict.${v}`)]), "true_positive");
    const reason = h("input", { required: true });
    const assignee = h("input", { value: alert.assignee || "", size: 16 });
    const comment = h("textarea", { rows: 3 });
    const buttons = [];
    if (alert.status === "new") {
      buttons.push(h("button", { type: "button", class: "primary", "aria-keyshortcuts": "a",
        on: { click: () => change({ status: "acknowledged" }, "triage.done_acknowledged") } }, t("triage.acknowledge")));
    }
    if (["new", "acknowledged"].includes(alert.status)) {
      buttons.push(h("button", { type: "button",
        on: { click: () => change({ status: "in_progress" }, "triage.done_started") } }, t("triage.start")));
    }
    buttons.push(h("button", { type: "button", "aria-keyshortcuts": "m",
      on: { click: () => change({ assignee: ctx.me.name }, "triage.done_assigned") } }, t("triage.assign_me")));
    buttons.push(h("button", { type: "button", on: { click: async () => {
      const created = await escalate(ctx, [alert.id], [alert]);
      if (created) ctx.go(`/cases/${created.id}`);
    } } }, t("triage.escalate")));
    const closing = closed
      ? h("form", { class: "actions", on: { submit: (event) => { event.preventDefault();
        change({ status: "in_progress", reason: reason.value.trim() }, "triage.done_reopened"); } } },
      field(t("triage.reason"), reason), h("button", { type: "submit" }, t("triage.reopen")))
      : h("form", { class: "actions", on: { submit: (event) => { event.preventDefault();
        const chosen = verdict.value;
        change({ status: chosen === "false_positive" ? "false_positive" : "resolved", verdict: chosen, reason: reason.value.trim() },
          "triage.done_resolved"); } } },
      field(t("verdict.label"), verdict), field(t("triage.reason"), reason),
      h("button", { type: "submit", class: "primary" }, t("triage.resolve")));
    return h("section", { class: "panel", "aria-labelledby": "alert-actions" },
      h("h2", { id: "alert-actions" }, t("alert.actions")),
      h("div", { class: "actions" }, buttons),
      h("h3", {}, t(closed ? "triage.reopen" : "triage.close")), closing,
      h("h3", {}, t("triage.assign")),
      h("form", { class: "actions", on: { submit: (event) => { event.preventDefault();
        change({ assignee: assignee.value.trim() || null }, "triage.done_assigned"); } } },
      field(t("triage.assign_to"), assignee), h("button", { type: "submit" }, t("triage.assign"))),
      h("h3", {}, t("triage.comment")),
      h("form", { on: { submit: (event) => { event.preventDefault();
        if (comment.value.trim()) change({ comment: comment.value.trim() }, "triage.done_commented"); } } },
      field(t("triage.comment"), comment), h("p", {}, h("button", { type: "submit" }, t("triage.add_comment")))));
  }

  function notes() {
    return h("section", { class: "panel", "aria-labelledby": "alert-notes" },
      h("h2", { id: "alert-notes" }, t("alert.notes")),
      alert.notes.length ? h("ol", { class: "timeline" }, alert.notes.map((note) => h("li", {},
        h("div", { class: "muted" }, dateTime(note.at), " · ", note.by), h("div", {}, note.text))))
        : h("p", { class: "muted" }, t("alert.no_notes")));
  }

  function history() {
    return h("section", { class: "panel", "aria-labelledby": "alert-history" },
      h("h2", { id: "alert-history" }, t("alert.history")),
      h("ol", { class: "timeline" }, [...alert.history].reverse().map((entry) => h("li", {},
        h("div", { class: "muted" }, dateTime(entry.at), " · ", entry.by),
        h("div", {}, tOr(`history.${entry.action}`, entry.action), detailText(entry.detail))))));
  }

  draw();
}

/** A feature's value as read: shares as percentages, counts as numbers. */
function readable(feature, value) {
  if (value === null || value === undefined) return t("common.none");
  if (/(share|ratio)$/.test(feature)) return `${Math.round(value * 100)}%`;
  return number(Math.round(value * 100) / 100);
}

function detailText(detail) {
  const parts = Object.entries(detail || {}).filter(([, v]) => v !== null && v !== undefined && typeof v !== "object")
    .map(([k, v]) => `${tOr(`history.key.${k}`, k)}: ${tOr(`status.${v}`, String(v))}`);
  return parts.length ? h("span", { class: "muted" }, ` (${parts.join(", ")})`) : null;
}

/** An event: when, what (action, outcome), the original line, and its ECS fields by group. */
function eventView(event, open) {
  const ecs = event.event || {};
  const original = ecs.original || event.message;
  const groups = new Map();
  for (const [key, value] of Object.entries(event)) {
    if (SKIPPED.has(key)) continue;
    const rows = [...flatten(value, key)];
    if (rows.length) groups.set(key, rows);
  }
  const ordered = [...GROUPS.filter((g) => groups.has(g)), ...[...groups.keys()].filter((g) => !GROUPS.includes(g)).sort()];
  const what = [ecs.action, ecs.outcome ? tOr(`outcome.event.${ecs.outcome}`, ecs.outcome) : null, ecs.code ? `#${ecs.code}` : null]
    .filter(Boolean).join(" · ");
  return h("article", { class: "event" },
    h("div", {}, h("strong", {}, dateTime(event["@timestamp"])), what ? ` — ${what}` : "",
      ecs.dataset ? h("span", { class: "muted" }, ` (${ecs.dataset})`) : null),
    original ? [h("div", { class: "muted" }, t("alert.original")), h("pre", { class: "original" }, original)] : null,
    h("details", { open },
      h("summary", {}, t("alert.fields")),
      h("div", { class: "ecs-groups" }, ordered.map((group) => h("div", {
        // A big group (a Windows event's data) takes the whole width, its names long.
        class: ["ecs-group", groups.get(group).length > 8 ? "wide" : ""],
      },
        h("h4", {}, group),
        h("dl", { class: "pairs" }, groups.get(group).map(([name, value]) =>
          [h("dt", { class: "mono" }, name.slice(group.length + 1) || name), h("dd", { class: "mono" }, value)])))))));
}

function* flatten(value, prefix) {
  if (value === null || value === undefined) return;
  if (Array.isArray(value)) {
    if (value.every((item) => typeof item !== "object" || item === null)) yield [prefix, value.join(", ")];
    else for (const [n, item] of value.entries()) yield* flatten(item, `${prefix}.${n}`);
  } else if (typeof value === "object") {
    for (const [key, item] of Object.entries(value)) {
      if (prefix === "event" && key === "original") continue;
      yield* flatten(item, `${prefix}.${key}`);
    }
  } else {
    yield [prefix, String(value)];
  }
}
