// What the queue and an alert's page share: the ATT&CK tactics, and escalating alerts to a case.
"use strict";
import { api } from "../api.js";
import { t } from "../i18n.js";

export const TACTICS = [
  "reconnaissance", "resource_development", "initial_access", "execution", "persistence",
  "privilege_escalation", "defense_evasion", "credential_access", "discovery", "lateral_movement",
  "collection", "command_and_control", "exfiltration", "impact", "stealth", "defense_impairment",
];

/** A new case holding ``ids`` (titled after the first alert); the case, or null on an error. */
export async function escalate(ctx, ids, alerts) {
  const first = alerts[0];
  const title = first
    ? t("triage.case_title", { rule: first.rule.title, agency: first.entities.agency, count: ids.length })
    : t("triage.case_title_plain", { count: ids.length });
  try {
    const created = await api.post("cases", { title: title.slice(0, 200), alert_ids: ids });
    ctx.say(t("triage.escalated", { id: created.id }), "ok");
    return created;
  } catch (error) {
    ctx.sayError(error);
    return null;
  }
}
