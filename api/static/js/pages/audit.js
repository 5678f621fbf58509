// The audit trail (soc_admin): every request that changed or tried to change something.
"use strict";
import { api } from "../api.js";
import { field, h, replace, select } from "../dom.js";
import { dateTime, t } from "../i18n.js";

export async function render(page, ctx) {
  ctx.title(t("audit.title"));
  const query = ctx.query;
  const user = h("input", { name: "user", value: query.get("user") || "", size: 14 });
  const action = h("input", { name: "action", value: query.get("action") || "", size: 18, placeholder: "update_alert" });
  const outcome = select([["", t("common.all")], ["success", t("audit.success")], ["failure", t("audit.failure")]],
    query.get("outcome"), { name: "outcome" });
  const form = h("form", { class: "filters", role: "search", "aria-label": t("audit.filters"), on: { submit: (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [name, value] of new FormData(form).entries()) if (value) next.set(name, String(value));
    ctx.go(`/audit?${next}`);
  } } },
  field(t("field.user"), user), field(t("audit.action"), action), field(t("audit.outcome"), outcome),
  h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, t("action.apply")),
    h("button", { type: "button", on: { click: () => ctx.go("/audit") } }, t("action.reset"))));
  const result = await api.get("audit", {
    user: query.get("user"), action: query.get("action"), outcome: query.get("outcome"), limit: 200,
  });
  if (!ctx.alive()) return;
  const columns = ["field.time", "field.user", "audit.action", "audit.target", "audit.outcome", "audit.request", "audit.detail"];
  replace(page,
    h("div", { class: "toolbar" }, h("h1", {}, t("audit.title")), h("span", { class: "spacer" }),
      h("button", { type: "button", on: { click: () => ctx.refresh() } }, t("action.refresh"))),
    form,
    h("p", { class: "muted" }, t("audit.count", { count: result.data.length })),
    h("div", { class: "table-wrap" }, h("table", { class: "data", "aria-label": t("audit.title") },
      h("thead", {}, h("tr", {}, columns.map((key) => h("th", { scope: "col" }, t(key))))),
      h("tbody", {}, result.data.length ? result.data.map((entry) => h("tr", {},
        h("td", {}, dateTime(entry.at)),
        h("td", {}, entry.user || t("common.none"), entry.roles.length ? h("div", { class: "muted" }, entry.roles.join(", ")) : null,
          entry.agency ? h("div", { class: "muted" }, entry.agency) : null),
        h("td", {}, h("span", { class: "mono" }, entry.action), h("div", { class: "muted mono" }, `${entry.method || ""} ${entry.path || ""}`)),
        h("td", {}, entry.target_type ? `${entry.target_type}: ${entry.target_id || ""}` : t("common.none")),
        h("td", {}, h("span", { class: entry.outcome === "success" ? "ok" : "bad" },
          t(entry.outcome === "success" ? "audit.success" : "audit.failure")), ` ${entry.status_code ?? ""}`,
          entry.reason ? h("div", { class: "muted" }, entry.reason) : null),
        h("td", { class: "mono" }, entry.source_ip || "", h("div", { class: "muted" }, entry.request_id || "")),
        h("td", { class: "mono truncate", title: entry.detail ? JSON.stringify(entry.detail) : "" },
          entry.detail ? JSON.stringify(entry.detail) : "")))
        : h("tr", {}, h("td", { colspan: columns.length }, t("common.empty")))))));
}
