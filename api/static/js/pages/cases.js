// Cases: the list (by status) and one case with its alerts, notes, status and timeline.
"use strict";
import { api } from "../api.js";
import { field, h, replace, select } from "../dom.js";
import { dateTime, t, tOr } from "../i18n.js";

const STATUSES = ["open", "in_progress", "closed"];

export async function render(page, ctx) {
  if (ctx.params[0]) return renderCase(page, ctx, ctx.params[0]);
  ctx.title(t("cases.title"));
  const chosen = ctx.query.get("status") || "";
  const result = await api.get("cases", { status: chosen, limit: 200 });
  if (!ctx.alive()) return;
  const filter = select([["", t("common.all")], ...STATUSES.map((s) => [s, t(`cases.status.${s}`)])], chosen,
    { on: { change: (event) => ctx.go(`/cases${event.target.value ? `?status=${event.target.value}` : ""}`) } });
  replace(page,
    h("div", { class: "toolbar" }, h("h1", {}, t("cases.title")), h("span", { class: "spacer" }),
      field(t("status.label"), filter)),
    h("p", { class: "muted" }, t("cases.count", { count: result.total })),
    result.data.length ? h("table", { class: "data", "aria-label": t("cases.title") },
      h("thead", {}, h("tr", {}, ["cases.case", "status.label", "cases.alerts", "field.agency", "cases.created_by", "cases.updated"]
        .map((key) => h("th", { scope: "col" }, t(key))))),
      h("tbody", {}, result.data.map((c) => h("tr", {},
        h("td", {}, h("a", { href: `#/cases/${c.id}` }, c.title)),
        h("td", {}, h("span", { class: `badge cs-${c.status}` }, t(`cases.status.${c.status}`))),
        h("td", { class: "num" }, c.alert_ids.length),
        h("td", {}, c.agencies.join(", ") || t("common.none")),
        h("td", {}, c.created_by),
        h("td", {}, dateTime(c.updated_at))))))
      : h("p", {}, t("cases.empty")));
}

async function renderCase(page, ctx, id) {
  const writer = ctx.can("soc_admin", "analyst");
  let item = await api.get(`cases/${encodeURIComponent(id)}`);
  if (!ctx.alive()) return;
  const titles = new Map();
  await Promise.all(item.alert_ids.slice(0, 50).map(async (alertId) => {
    try {
      titles.set(alertId, await api.get(`alerts/${encodeURIComponent(alertId)}`));
    } catch {
      // An alert deleted by retention: its id is still shown.
    }
  }));

  async function change(body, done) {
    try {
      item = await api.patch(`cases/${encodeURIComponent(id)}`, body);
      ctx.say(t(done), "ok");
      draw();
    } catch (error) {
      ctx.sayError(error);
    }
  }

  function draw() {
    ctx.title(item.title);
    const title = h("input", { value: item.title, size: 50, maxlength: 200, required: true });
    const status = select(STATUSES.map((s) => [s, t(`cases.status.${s}`)]), item.status);
    const note = h("textarea", { rows: 3, maxlength: 4000 });
    replace(page,
      h("div", { class: "toolbar" },
        h("button", { type: "button", on: { click: () => ctx.go("/cases") } }, "← ", t("cases.back"))),
      h("h1", {}, item.title, " ", h("span", { class: `badge cs-${item.status}` }, t(`cases.status.${item.status}`))),
      h("div", { class: "cols-2" },
        h("div", {},
          h("section", { class: "panel", "aria-labelledby": "case-alerts" },
            h("h2", { id: "case-alerts" }, t("cases.alerts_of", { count: item.alert_ids.length })),
            h("table", { class: "data" },
              h("thead", {}, h("tr", {}, ["severity.label", "field.rule", "field.agency", "field.host", "status.label", ""]
                .map((key) => h("th", { scope: "col" }, key ? t(key) : h("span", { class: "visually-hidden" }, t("cases.remove")))))),
              h("tbody", {}, item.alert_ids.map((alertId) => {
                const a = titles.get(alertId);
                return h("tr", {},
                  h("td", {}, a ? h("span", { class: `badge sev-${a.severity}` }, t(`severity.${a.severity}`)) : ""),
                  h("td", {}, h("a", { href: `#/alerts/${alertId}` }, a ? a.rule.title : alertId)),
                  h("td", {}, a ? ctx.agencyName(a.entities.agency) : ""), h("td", {}, a ? a.entities.host || "" : ""),
                  h("td", {}, a ? t(`status.${a.status}`) : ""),
                  h("td", {}, writer ? h("button", { type: "button", class: "link",
                    on: { click: () => change({ remove_alerts: [alertId] }, "cases.done_removed") } }, t("cases.remove")) : null));
              })))),
          h("section", { class: "panel", "aria-labelledby": "case-notes" },
            h("h2", { id: "case-notes" }, t("alert.notes")),
            item.notes.length ? h("ol", { class: "timeline" }, item.notes.map((n) => h("li", {},
              h("div", { class: "muted" }, dateTime(n.at), " · ", n.by), h("div", {}, n.text))))
              : h("p", { class: "muted" }, t("alert.no_notes")),
            writer ? h("form", { on: { submit: (event) => { event.preventDefault();
              if (note.value.trim()) change({ notes: [note.value.trim()] }, "cases.done_note"); } } },
            field(t("cases.note"), note), h("p", {}, h("button", { type: "submit" }, t("triage.add_comment")))) : null)),
        h("div", {},
          writer ? h("section", { class: "panel", "aria-labelledby": "case-edit" },
            h("h2", { id: "case-edit" }, t("cases.edit")),
            h("form", { class: "actions", on: { submit: (event) => { event.preventDefault();
              const body = {};
              if (title.value.trim() && title.value.trim() !== item.title) body.title = title.value.trim();
              if (status.value !== item.status) body.status = status.value;
              if (Object.keys(body).length) change(body, "cases.done_saved");
            } } }, field(t("cases.case_title"), title), field(t("status.label"), status),
            h("button", { type: "submit", class: "primary" }, t("action.save")))) : null,
          h("section", { class: "panel", "aria-labelledby": "case-facts" },
            h("h2", { id: "case-facts" }, t("alert.summary")),
            h("dl", { class: "pairs" },
              h("dt", {}, t("cases.created_by")), h("dd", {}, item.created_by),
              h("dt", {}, t("cases.created")), h("dd", {}, dateTime(item.created_at)),
              h("dt", {}, t("cases.updated")), h("dd", {}, dateTime(item.updated_at)),
              item.closed_at ? [h("dt", {}, t("cases.closed")), h("dd", {}, dateTime(item.closed_at))] : null,
              h("dt", {}, t("field.agency")), h("dd", {}, item.agencies.map(ctx.agencyName).join(", ") || t("common.none")))),
          h("section", { class: "panel", "aria-labelledby": "case-timeline" },
            h("h2", { id: "case-timeline" }, t("cases.timeline")),
            h("ol", { class: "timeline" }, [...item.timeline].reverse().map((entry) => h("li", {},
              h("div", { class: "muted" }, dateTime(entry.at), " · ", entry.by),
              h("div", {}, tOr(`cases.action.${entry.action}`, entry.action), describe(entry.detail)))))))));
  }

  draw();
}

function describe(detail) {
  const parts = [];
  for (const [key, value] of Object.entries(detail || {})) {
    if (Array.isArray(value)) parts.push(`${tOr(`history.key.${key}`, key)}: ${value.length}`);
    else if (value !== null && typeof value !== "object") {
      parts.push(`${tOr(`history.key.${key}`, key)}: ${tOr(`cases.status.${value}`, String(value))}`);
    }
  }
  return parts.length ? h("span", { class: "muted" }, ` (${parts.join(", ")})`) : null;
}
