// Rules: the rule set as a list (#/rules: filters, paging, enable/disable, publishing) and one
// rule's editor (#/rules/<id>, #/rules/new): its YAML with line numbers, checked as one types
// (POST /rules/validate), saved as a new version, its history, tests against example events and
// a backtest over the stored events. Reading and testing are for every role that sees rules;
// changing, backtesting and publishing for rule authors and admins (the server says the same).
"use strict";
import { api, ApiError } from "../api.js";
import { field, h, replace, select, uid } from "../dom.js";
import { dateTime, number, t, TIME_ZONE, tOr } from "../i18n.js";

const WRITERS = ["soc_admin", "rule_author"];
const LEVELS = ["informational", "low", "medium", "high", "critical"];
const KINDS = ["rule", "correlation", "filter"];
// ATT&CK tactics, as the rule store keeps them (their names are core's tactic.* texts), with
// ATT&CK v18's stealth and defense_impairment, which some rules' tags use.
const TACTICS = ["reconnaissance", "resource_development", "initial_access", "execution", "persistence",
  "privilege_escalation", "defense_evasion", "stealth", "defense_impairment", "credential_access", "discovery",
  "lateral_movement", "collection", "command_and_control", "exfiltration", "impact"];
// The detectors' parser formats (detectors/parsers registry) an example line may be given in.
const FORMATS = ["auto", "syslog", "json", "apache.access", "apache.error", "nginx.access", "nginx.error",
  "auditd", "bind.query", "fortigate", "portal.json", "socpipe.health", "winlog.json", "winlog.evtx"];
// Formats whose raw record is a JSON object rather than a line.
const JSON_FORMATS = new Set(["json", "portal.json", "winlog.json", "winlog.evtx"]);
// The test form's choice for an ECS event given directly (no parser).
const AS_EVENT = "event";
const PAGE_SIZE = 50;
const CHECK_DELAY_MS = 600;
const DEFAULT_DAYS = 7;
// Example cases per rule ("new" for an unsaved one), kept while the console is open.
const CASES = new Map();

export async function render(page, ctx) {
  const which = ctx.params[0];
  if (which === undefined) return renderList(page, ctx);
  return renderEditor(page, ctx, which === "new" ? null : which);
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

const path = (id, ...rest) => ["rules", encodeURIComponent(id), ...rest].join("/");

/** A problem of a rule (RuleProblem) as one line of text: "line 12: message" when it has one. */
function problemText(problem) {
  return problem.line ? t("rules.problem_line", { line: problem.line, message: problem.message }) : problem.message;
}

/** Whether an error is the API's 422 of a rule: a list of problems, each with its line. */
function ruleProblems(error) {
  return error instanceof ApiError && error.status === 422 && Array.isArray(error.detail) &&
    error.detail.length > 0 && error.detail.every((item) => item && typeof item.message === "string");
}

function levelBadge(level) {
  return level ? h("span", { class: `badge sev-${level}` }, tOr(`severity.${level}`, level)) : t("common.none");
}

/** A tactic's name: core's text, else its id made readable ("defense_impairment"). */
function tacticName(tactic) {
  return tOr(`tactic.${tactic}`, tactic.replace(/_/g, " "));
}

function tactics(list) {
  return (list || []).map(tacticName).join(", ") || t("common.none");
}

/** A date the server gave as text (ISO), shown as people in Vietnam read it when it is one. */
function when(value) {
  return value && !Number.isNaN(Date.parse(value)) ? dateTime(value) : value || t("common.none");
}

/**
 * A modal question: ``title``, an explanation, and optionally a comment to give (why a rule
 * changes). Resolves to the comment ("" without one) when confirmed, null when cancelled.
 */
function ask(host, { title, text, confirm, comment = false }) {
  return new Promise((resolve) => {
    const heading = uid("ask");
    const input = comment ? h("textarea", { name: "comment", rows: 3, maxlength: 2000 }) : null;
    const dialog = h("dialog", { "aria-labelledby": heading },
      h("form", { method: "dialog" },
        h("h2", { id: heading }, title),
        text ? h("p", {}, text) : null,
        input ? field(t("rules.comment"), input, t("rules.comment_hint")) : null,
        h("div", { class: "actions" },
          h("button", { value: "ok", class: "primary" }, confirm),
          h("button", { value: "cancel", formnovalidate: true }, t("action.cancel")))));
    dialog.addEventListener("close", () => {
      const answer = dialog.returnValue === "ok" ? (input ? input.value.trim() : "") : null;
      dialog.remove();
      resolve(answer);
    });
    host.append(dialog);
    dialog.showModal();
  });
}

/** Enable or disable a rule (a new version) after asking why; the rule as it is now, or null.
 * ``control``, the button that asked, is disabled while the change is made. */
async function toggle(host, ctx, rule, control) {
  const enabling = !rule.enabled;
  const comment = await ask(host, {
    title: t(enabling ? "rules.enable_title" : "rules.disable_title", { title: rule.title }),
    text: t("rules.toggle_explain"),
    confirm: t(enabling ? "rules.enable" : "rules.disable"),
    comment: true,
  });
  if (comment === null) return null;
  control.disabled = true;
  try {
    const changed = await api.post(path(rule.id, enabling ? "enable" : "disable"), { comment });
    ctx.say(t(changed.enabled ? "rules.enabled_now" : "rules.disabled_now",
      { title: changed.title, version: changed.version }), "ok");
    return changed;
  } catch (error) {
    ctx.sayError(error);
    return null;
  } finally {
    control.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// The list

async function renderList(page, ctx) {
  const writer = ctx.can(...WRITERS);
  const query = ctx.query;
  const offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
  // The filters in force: the address's (the controls may have been changed but not applied).
  const applied = Object.fromEntries(["q", "level", "tactic", "enabled", "kind"].map((name) => [name, query.get(name) || ""]));
  ctx.title(t("rules.title"));

  const search = h("input", { type: "search", name: "q", value: applied.q, maxlength: 200 });
  const level = select([["", t("common.all")], ...LEVELS.map((name) => [name, t(`severity.${name}`)])],
    applied.level, { name: "level" });
  const tactic = select([["", t("common.all")], ...TACTICS.map((name) => [name, tacticName(name)])],
    applied.tactic, { name: "tactic" });
  const enabled = select([["", t("common.all")], ["true", t("rules.on")], ["false", t("rules.off")]],
    applied.enabled, { name: "enabled" });
  const kind = select([["", t("common.all")], ...KINDS.map((name) => [name, t(`rules.kind.${name}`)])],
    applied.kind, { name: "kind" });

  /** The list's address with these filters (empty ones left out) and offset. */
  function address(skip = 0) {
    const next = new URLSearchParams();
    for (const [name, control] of [["q", search], ["level", level], ["tactic", tactic], ["enabled", enabled],
      ["kind", kind]]) {
      const value = control.value.trim();
      if (value) next.set(name, value);
    }
    if (skip > 0) next.set("offset", String(skip));
    const text = next.toString();
    return text ? `/rules?${text}` : "/rules";
  }

  const filters = h("form", {
    class: "filters", role: "search", "aria-label": t("rules.filters"),
    on: { submit: (event) => { event.preventDefault(); ctx.go(address()); } },
  },
  field(t("rules.search"), search, t("rules.search_hint")),
  field(t("severity.label"), level),
  field(t("tactic.label"), tactic),
  field(t("rules.state"), enabled),
  field(t("rules.kind_label"), kind),
  h("div", { class: "actions" },
    h("button", { type: "submit", class: "primary" }, t("action.apply")),
    h("button", { type: "button", on: { click: () => ctx.go("/rules") } }, t("action.reset"))));

  const publishButton = h("button", { type: "button", on: { click: publish } }, t("rules.publish"));
  const published = h("div", { "aria-live": "polite" });
  const results = h("div", { "aria-live": "polite", "aria-busy": "true" }, h("p", { class: "muted" }, t("common.loading")));
  let shown = [];

  replace(page,
    h("div", { class: "toolbar" },
      h("h1", {}, t("rules.title")),
      h("span", { class: "spacer" }),
      writer ? h("button", { type: "button", class: "primary", on: { click: () => ctx.go("/rules/new") } },
        t("rules.new")) : null,
      writer ? publishButton : null,
      h("button", { type: "button", on: { click: () => load() } }, t("action.refresh"))),
    writer ? h("p", { class: "hint" }, t("rules.publish_hint")) : null,
    filters, published, results);
  ctx.keys({ "/": () => search.focus() });

  /** Read the page of rules and draw it; ``focusId``: the rule whose toggle keeps the focus. */
  async function load(focusId) {
    results.setAttribute("aria-busy", "true");
    let answer;
    try {
      answer = await api.get("rules", { ...applied, limit: PAGE_SIZE, offset });
    } catch (error) {
      if (!ctx.alive()) return;
      replace(results, h("p", { class: "muted" }, t("rules.list_failed")));
      results.setAttribute("aria-busy", "false");
      ctx.sayError(error);
      return;
    }
    if (!ctx.alive()) return;
    shown = answer.data;
    drawTable(answer);
    results.setAttribute("aria-busy", "false");
    if (focusId) results.querySelector(`button[data-rule="${CSS.escape(focusId)}"]`)?.focus();
  }

  function drawTable(answer) {
    if (!answer.data.length) {
      replace(results, h("p", { class: "muted" }, t(answer.total ? "rules.page_empty" : "rules.none_found")));
      return;
    }
    const rows = answer.data.map((rule) => h("tr", {},
      h("td", {}, h("a", { href: `#/${path(rule.id)}` }, rule.title)),
      h("td", {}, t(`rules.kind.${rule.kind}`)),
      h("td", {}, levelBadge(rule.level)),
      h("td", {}, tactics(rule.tactics)),
      h("td", {}, h("span", { class: rule.enabled ? "ok" : "muted" }, t(rule.enabled ? "rules.on" : "rules.off"))),
      h("td", { class: "num" }, number(rule.version)),
      h("td", {}, rule.author),
      h("td", {}, dateTime(rule.created)),
      writer ? h("td", {}, h("button", {
        type: "button", dataset: { rule: rule.id },
        "aria-label": t(rule.enabled ? "rules.disable_named" : "rules.enable_named", { title: rule.title }),
        on: {
          click: async (event) => {
            const changed = await toggle(page, ctx, rule, event.currentTarget);
            if (changed && ctx.alive()) load(rule.id);
          },
        },
      }, t(rule.enabled ? "rules.disable" : "rules.enable"))) : null));
    const first = answer.offset + 1;
    const last = answer.offset + answer.data.length;
    const previous = Math.max(0, answer.offset - answer.limit);
    replace(results,
      h("p", { class: "muted" }, t("rules.count", { first: number(first), last: number(last), total: number(answer.total) })),
      h("div", { class: "table-wrap" }, h("table", { class: "data" },
        h("caption", { class: "visually-hidden" }, t("rules.table_caption")),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, t("rules.col_title")),
          h("th", { scope: "col" }, t("rules.kind_label")),
          h("th", { scope: "col" }, t("severity.label")),
          h("th", { scope: "col" }, t("tactic.label")),
          h("th", { scope: "col" }, t("rules.state")),
          h("th", { scope: "col", class: "num" }, t("rules.col_version")),
          h("th", { scope: "col" }, t("rules.col_author")),
          h("th", { scope: "col" }, t("rules.col_created")),
          writer ? h("th", { scope: "col" }, t("rules.col_actions")) : null)),
        h("tbody", {}, rows))),
      h("nav", { class: "toolbar", "aria-label": t("rules.paging") },
        answer.offset > 0 ? h("button", { type: "button", on: { click: () => ctx.go(address(previous)) } },
          t("rules.previous_page")) : null,
        last < answer.total ? h("button", { type: "button", on: { click: () => ctx.go(address(last)) } },
          t("rules.next_page")) : null));
  }

  async function publish() {
    const confirmed = await ask(page, {
      title: t("rules.publish_title"), text: t("rules.publish_explain"), confirm: t("rules.publish"),
    });
    if (confirmed === null) return;
    publishButton.disabled = true;
    replace(published, h("p", { class: "muted" }, t("rules.publishing")));
    try {
      const result = await api.post("rules/publish");
      if (!ctx.alive()) return;
      replace(published, publishedPanel(result));
      ctx.say(t("rules.published", { version: result.version }), "ok");
    } catch (error) {
      if (!ctx.alive()) return;
      if (ruleProblems(error)) {
        replace(published, refusedPanel(error.detail));
      } else {
        replace(published);
        ctx.sayError(error);
      }
    } finally {
      publishButton.disabled = false;
    }
  }

  function publishedPanel(result) {
    const pairs = [
      ["rules.set_version", h("code", {}, result.version)],
      ["rules.set_rules", number(result.rules)],
      ["rules.set_correlations", number(result.correlations)],
      ["rules.set_filters", number(result.filters)],
      ["rules.set_files", number(result.files)],
      ["rules.set_compiled", number(result.compiled)],
      ["rules.set_failed", h("span", { class: result.failed ? "warn" : null }, number(result.failed))],
      ["rules.set_created", when(result.created)],
      ["rules.set_publisher", result.publisher || t("common.none")],
    ];
    return h("section", { class: "panel", "aria-labelledby": "rules-published" },
      h("h2", { id: "rules-published", class: "ok" }, t(result.published ? "rules.published_title" : "rules.unchanged_title")),
      h("dl", { class: "pairs" }, pairs.map(([key, value]) => [h("dt", {}, t(key)), h("dd", {}, value)])));
  }

  function refusedPanel(problems) {
    const titles = new Map(shown.map((rule) => [rule.id, rule.title]));
    return h("section", { class: "panel", "aria-labelledby": "rules-refused" },
      h("h2", { id: "rules-refused", class: "bad" }, t("rules.refused_title", { count: problems.length })),
      h("p", {}, t("rules.refused_explain")),
      h("ul", { class: "errors" }, problems.map((problem) => h("li", {},
        problem.rule_id ? [h("a", { href: `#/${path(problem.rule_id)}` }, titles.get(problem.rule_id) || problem.rule_id), " — "]
          : null,
        problemText(problem)))));
  }

  await load();
}

// ---------------------------------------------------------------------------------------------
// The editor

/** A version 4 UUID (crypto.randomUUID needs a secure context; the console may be served over
 * plain HTTP inside the province's network). */
function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A small valid Sigma rule to start from; its texts in the chosen language (JSON strings are
 * YAML's double-quoted scalars, so any text is safe in them). */
function template(author) {
  const today = new Intl.DateTimeFormat("en-CA", { timeZone: TIME_ZONE }).format(new Date());
  return [
    `title: ${JSON.stringify(t("rules.template_title"))}`,
    `id: ${newId()}`,
    "status: experimental",
    `description: ${JSON.stringify(t("rules.template_description"))}`,
    `author: ${JSON.stringify(author || "socpipe")}`,
    `date: ${today}`,
    "tags:",
    "  - attack.credential-access",
    "  - attack.t1110",
    "logsource:",
    "  product: linux",
    "  service: sshd",
    "detection:",
    "  selection:",
    "    event.action: ssh_login",
    "    event.outcome: failure",
    "  condition: selection",
    "falsepositives:",
    `  - ${JSON.stringify(t("rules.template_falsepositive"))}`,
    "level: medium",
    "",
  ].join("\n");
}

async function renderEditor(page, ctx, ruleId) {
  const writer = ctx.can(...WRITERS);
  if (ruleId === null && !writer) {
    ctx.title(t("rules.new_title"));
    replace(page, h("h1", {}, t("rules.new_title")), h("p", {}, t("rules.no_new")),
      h("p", {}, h("a", { href: "#/rules" }, t("rules.back_to_list"))));
    return;
  }

  let rule = null; // the rule as saved (RulePublic), null while new
  if (ruleId !== null) {
    replace(page, h("p", { class: "muted", "aria-live": "polite" }, t("common.loading")));
    try {
      rule = await api.get(path(ruleId));
    } catch (error) {
      if (!ctx.alive()) return;
      if (error instanceof ApiError && error.status === 404) {
        ctx.title(t("rules.not_found_title"));
        replace(page, h("h1", {}, t("rules.not_found_title")), h("p", {}, t("rules.not_found", { id: ruleId })),
          h("p", {}, h("a", { href: "#/rules" }, t("rules.back_to_list"))));
        return;
      }
      throw error;
    }
    if (!ctx.alive()) return;
  }

  let saved = rule ? rule.yaml : ""; // the YAML as last saved, to tell unsaved changes
  let old = null; // an older version shown read-only (RuleVersionPublic), or null
  let draft = null; // the editor's text while an older version is shown
  let outline = null; // what the last check said of the YAML being edited (RuleOutline)
  let problems = [];
  let timer = null;
  let checks = 0;
  let gutterDrawn = ""; // what the gutter shows (lines and marked lines), not to redraw it for nothing
  let stateShown = ""; // likewise the state line (a live region: each redraw is announced)
  const caseKey = rule ? rule.id : "new";
  if (!CASES.has(caseKey)) CASES.set(caseKey, []);
  const cases = CASES.get(caseKey);

  // The YAML, with a gutter of line numbers kept scrolled with it (lines with errors marked).
  const editorId = uid("yaml");
  const gutter = h("pre", { class: "gutter", "aria-hidden": "true" });
  const editor = h("textarea", {
    id: editorId, class: "mono", rows: 26, spellcheck: "false", autocomplete: "off", autocapitalize: "off",
    wrap: "off", "aria-describedby": `${editorId}-state`,
    on: {
      input: () => { drawGutter(); drawState(); schedule(); },
      scroll: () => { gutter.scrollTop = editor.scrollTop; },
      keydown: (event) => {
        if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "s") {
          event.preventDefault();
          if (canSave()) save();
        }
      },
    },
  });
  editor.value = rule ? rule.yaml : template(ctx.me && ctx.me.name);
  const state = h("p", { id: `${editorId}-state`, class: "hint", "aria-live": "polite" });
  const check = h("div", { id: `${editorId}-check`, class: "check", "aria-live": "polite" });

  const validateButton = h("button", { type: "button", on: { click: () => validate() } }, t("rules.validate"));
  const comment = h("input", { name: "comment", maxlength: 2000, autocomplete: "off" });
  const saveButton = h("button", { type: "submit", class: "primary" }, t("action.save"));
  const saveForm = writer ? h("form", {
    class: "actions", "aria-label": t("rules.save_label"),
    on: { submit: (event) => { event.preventDefault(); save(); } },
  }, field(t("rules.comment"), comment, t("rules.comment_hint")), saveButton) : null;
  const actions = h("div", { class: "toolbar" });

  const heading = h("h1", {});
  const meta = h("section", { "aria-labelledby": "rule-meta" });
  const versions = h("section", { "aria-labelledby": "rule-versions" });

  // The YAML's label names the textarea itself (field() would name the editor's wrapper).
  replace(page,
    h("p", {}, h("a", { href: "#/rules" }, t("rules.back_to_list"))),
    heading,
    h("div", { class: "cols-2" },
      h("div", {},
        h("section", { class: "panel", "aria-labelledby": `${editorId}-label` },
          h("div", { class: "field" },
            h("label", { id: `${editorId}-label`, for: editorId }, t("rules.yaml")),
            h("div", { class: "editor" }, gutter, editor)),
          state,
          actions,
          check),
        testsPanel(),
        writer ? backtestPanel() : null),
      h("div", {}, h("div", { class: "panel" }, meta, rule ? versions : null))));

  drawAll();
  validate();
  ctx.onCleanup(() => clearTimeout(timer));

  function editable() {
    return writer && old === null;
  }

  function canSave() {
    return editable() && (rule === null || editor.value !== saved);
  }

  function drawAll() {
    const title = old ? old.title : rule ? rule.title : t("rules.new_title");
    ctx.title(title);
    replace(heading, title);
    editor.readOnly = !editable();
    drawGutter();
    drawState();
    drawMeta();
    if (rule) drawVersions();
  }

  /** The gutter: one number a line (and a spare line, for the textarea's scroll bar). */
  function drawGutter() {
    const count = editor.value.split("\n").length;
    const bad = new Map();
    for (const problem of problems) if (problem.line && !bad.has(problem.line)) bad.set(problem.line, problem.message);
    const drawn = JSON.stringify([count, [...bad]]);
    if (drawn === gutterDrawn) return;
    gutterDrawn = drawn;
    replace(gutter, Array.from({ length: count }, (_, index) => {
      const line = index + 1;
      return [bad.has(line) ? h("span", { class: "bad-line", title: bad.get(line) }, String(line)) : String(line), "\n"];
    }), "\n");
    gutter.scrollTop = editor.scrollTop;
  }

  function drawState() {
    let text;
    if (old) text = t("rules.showing_version", { version: old.version, latest: rule.version });
    else if (!writer) text = t("rules.read_only_role");
    else if (rule === null) text = t("rules.unsaved_new");
    else if (editor.value !== saved) text = t("rules.unsaved_changes", { version: rule.version });
    else text = t("rules.saved_state", { version: rule.version });
    saveButton.disabled = !canSave();
    if (text === stateShown) return;
    stateShown = text;
    // Saving is for the latest version (an older one is read-only).
    replace(actions, validateButton, editable() ? saveForm : null);
    replace(state, text,
      old ? [" ", h("button", { type: "button", class: "link", on: { click: showLatest } }, t("rules.back_to_latest")),
        writer ? [" ", h("button", { type: "button", class: "link", on: { click: restore } },
          t("rules.restore_version", { version: old.version }))] : null] : null);
  }

  /** Check the YAML soon (after typing stops). */
  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(() => validate(), CHECK_DELAY_MS);
  }

  /** Check the YAML with the server (POST /rules/validate) and show what it says. */
  async function validate() {
    clearTimeout(timer);
    const mine = ++checks;
    if (!editor.value.trim()) {
      showCheck({ valid: false, problems: [{ line: 1, message: t("rules.empty_yaml") }], warnings: [] });
      return;
    }
    check.setAttribute("aria-busy", "true");
    const body = { yaml: editor.value };
    if (rule) body.rule_id = rule.id;
    else body.new = true;
    try {
      const result = await api.post("rules/validate", body);
      if (mine !== checks || !ctx.alive()) return;
      outline = result.rule;
      showCheck(result);
      drawMeta();
    } catch (error) {
      if (mine !== checks || !ctx.alive()) return;
      replace(check);
      ctx.sayError(error);
    } finally {
      if (mine === checks) check.setAttribute("aria-busy", "false");
    }
  }

  /** Show a check's verdict, its errors (marked in the gutter) and warnings, each a link to
   * its line. */
  function showCheck({ valid, problems: errors, warnings }) {
    problems = errors || [];
    drawGutter();
    const verdict = valid
      ? h("p", { class: "ok" }, t(warnings.length ? "rules.valid_warnings" : "rules.valid", { count: warnings.length }))
      : h("p", { class: "bad" }, t("rules.invalid", { count: problems.length }));
    replace(check, verdict,
      problems.length ? h("ul", { class: "errors", "aria-label": t("rules.errors") }, problems.map(problemItem)) : null,
      warnings.length ? h("ul", { class: "warn", "aria-label": t("rules.warnings") }, warnings.map(problemItem)) : null);
  }

  function problemItem(problem) {
    if (!problem.line) return h("li", {}, problem.message);
    return h("li", {}, h("button", {
      type: "button", class: "link", on: { click: () => goToLine(problem.line) },
    }, problemText(problem)));
  }

  /** Put the caret at the start of ``line`` and scroll it into view. */
  function goToLine(line) {
    const lines = editor.value.split("\n");
    const index = Math.min(Math.max(line, 1), lines.length) - 1;
    const start = lines.slice(0, index).reduce((sum, text) => sum + text.length + 1, 0);
    editor.focus();
    editor.setSelectionRange(start, start);
    const height = Number.parseFloat(getComputedStyle(editor).lineHeight) || 20;
    editor.scrollTop = Math.max(0, index * height - editor.clientHeight / 3);
    gutter.scrollTop = editor.scrollTop;
  }

  /** Save the YAML: a new version (PUT /rules/{id}) or a new rule (POST /rules). */
  async function save() {
    if (!canSave()) return;
    clearTimeout(timer);
    checks += 1; // a check still running is about an older text
    const body = { yaml: editor.value, comment: comment.value.trim() };
    saveButton.disabled = true;
    try {
      const change = rule ? await api.put(path(rule.id), body) : await api.post("rules", body);
      if (!ctx.alive()) return;
      comment.value = "";
      ctx.say(t("rules.saved", { title: change.rule.title, version: change.rule.version }), "ok");
      if (rule === null) {
        CASES.set(change.rule.id, CASES.get("new") || []);
        CASES.delete("new");
        ctx.go(`/${path(change.rule.id)}`, true);
        return;
      }
      rule = change.rule;
      saved = rule.yaml;
      outline = null;
      showCheck({ valid: true, problems: [], warnings: change.warnings || [] });
      drawAll();
    } catch (error) {
      if (!ctx.alive()) return;
      if (ruleProblems(error)) {
        showCheck({ valid: false, problems: error.detail, warnings: [] });
        ctx.say(t("rules.not_saved", { count: error.detail.length }), "error");
      } else {
        ctx.sayError(error);
      }
    } finally {
      drawState();
    }
  }

  /** The side panel: what the YAML says of the rule (as last checked) and how it is stored. */
  function drawMeta() {
    const shown = old || (outline && outline.id ? outline : null) || rule;
    const pairs = [];
    const add = (key, value) => { if (value !== null && value !== undefined && value !== "") pairs.push([key, value]); };
    if (shown) {
      add("rules.meta_id", h("code", {}, shown.id));
      add("rules.kind_label", t(`rules.kind.${shown.kind}`));
      add("severity.label", levelBadge(shown.level));
      add("rules.meta_status", shown.status);
      add("rules.meta_name", shown.name);
      add("rules.meta_logsource", Object.entries(shown.logsource || {}).map(([key, value]) => `${key}: ${value}`).join(", ") ||
        t("common.none"));
      add("tactic.label", tactics(shown.tactics));
      add("rules.meta_techniques", (shown.techniques || []).join(", ") || t("common.none"));
      add("rules.meta_tags", (shown.tags || []).join(", ") || t("common.none"));
      if (shown.kind === "correlation") add("rules.meta_references", (shown.references || []).join(", "));
      if (shown.kind === "filter") {
        add("rules.meta_targets", (shown.targets || []).map((target) => target === "*" ? t("rules.every_rule") : target).join(", "));
        add("rules.meta_agencies", (shown.agencies || []).join(", ") || t("rules.every_agency"));
      }
      add("rules.meta_description", shown.description);
    }
    const stored = old || rule;
    if (stored) {
      add("rules.state", h("span", { class: stored.enabled ? "ok" : "bad" }, t(stored.enabled ? "rules.on" : "rules.off")));
      add("rules.col_version", number(stored.version));
      add("rules.col_author", stored.author);
      add("rules.col_created", dateTime(stored.created));
    }
    const toggleButton = writer && rule && !old ? h("button", {
      type: "button",
      on: {
        click: async (event) => {
          const changed = await toggle(page, ctx, rule, event.currentTarget);
          if (!changed || !ctx.alive()) return;
          rule = changed; // a flag changes no YAML: the text being edited stays as it is
          drawAll();
        },
      },
    }, t(rule.enabled ? "rules.disable" : "rules.enable")) : null;
    replace(meta,
      h("h2", { id: "rule-meta" }, t("rules.meta_title")),
      shown ? h("dl", { class: "pairs" }, pairs.map(([key, value]) => [h("dt", {}, t(key)), h("dd", {}, value)]))
        : h("p", { class: "muted" }, t("rules.meta_unknown")),
      toggleButton ? h("div", { class: "actions" }, toggleButton) : null,
      writer ? h("p", { class: "hint" }, t("rules.publish_hint")) : null);
  }

  /** The history, newest first: each version a button that shows it (a definition list, whose
   * values wrap however long a comment is). */
  function drawVersions() {
    const current = old ? old.version : rule.version;
    replace(versions,
      h("h2", { id: "rule-versions" }, t("rules.versions_title", { count: number(rule.versions_total) })),
      h("dl", { class: "pairs" }, rule.versions.map((version) => [
        h("dt", {}, h("button", {
          type: "button", class: "link", "aria-current": version.version === current ? "true" : null,
          on: { click: () => openVersion(version.version) },
        }, version.version === current ? h("strong", {}, t("rules.version_n", { version: version.version }))
          : t("rules.version_n", { version: version.version }))),
        h("dd", {},
          dateTime(version.created), " · ", version.author, " · ",
          h("span", { class: version.enabled ? "ok" : "muted" }, t(version.enabled ? "rules.on" : "rules.off")),
          version.comment ? h("div", { class: "muted" }, version.comment) : null),
      ])),
      rule.versions_total > rule.versions.length
        ? h("p", { class: "hint" }, t("rules.versions_more", { shown: rule.versions.length })) : null);
  }

  /** Show an older version read-only (the latest: back to editing). */
  async function openVersion(number) {
    if (number === rule.version) { showLatest(); return; }
    try {
      const version = await api.get(path(rule.id, "versions", number));
      if (!ctx.alive()) return;
      if (old === null) draft = editor.value;
      old = version;
      editor.value = version.yaml;
      editor.scrollTop = 0;
      problems = [];
      replace(check);
      drawAll();
    } catch (error) {
      ctx.sayError(error);
    }
  }

  function showLatest() {
    if (old === null) return;
    old = null;
    editor.value = draft ?? saved;
    draft = null;
    drawAll();
    validate();
  }

  /** Take an older version's YAML as the text to save (a new version with its content). */
  function restore() {
    const text = old.yaml;
    old = null;
    draft = null;
    editor.value = text;
    drawAll();
    validate();
    editor.focus();
  }

  /** The YAML to test or backtest: null when it is the saved rule's (the routes of the saved
   * rule then read it themselves). */
  function unsavedYaml() {
    return rule && old === null && editor.value === saved ? null : editor.value;
  }

  // --- Tests against example events ----------------------------------------------------------

  function testsPanel() {
    const titleId = uid("tests");
    const name = h("input", { name: "name", maxlength: 200, required: true, autocomplete: "off" });
    const expected = select([["true", t("rules.case_should_match")], ["false", t("rules.case_should_not_match")]], "true",
      { name: "match" });
    const format = select([[AS_EVENT, t("rules.case_as_event")],
      ...FORMATS.map((value) => [value, value === "auto" ? t("rules.format_auto") : value])], "syslog", { name: "format" });
    const input = h("textarea", { name: "input", class: "mono", rows: 4, required: true, spellcheck: "false" });
    const formError = h("p", { class: "errors", role: "alert" });
    const list = h("div", {});
    const runButton = h("button", { type: "button", class: "primary", on: { click: run } }, t("rules.run_tests"));
    const output = h("div", { "aria-live": "polite" });

    const form = h("form", {
      class: "filters", "aria-label": t("rules.case_add_label"),
      on: { submit: (event) => { event.preventDefault(); add(); } },
    },
    field(t("rules.case_name"), name),
    field(t("rules.case_expected"), expected),
    field(t("rules.case_format"), format),
    field(t("rules.case_input"), input, t("rules.case_input_hint")),
    h("div", { class: "actions" }, h("button", { type: "submit" }, t("rules.case_add"))),
    formError);

    /** The case the form describes, or a message saying what is wrong with it. */
    function caseOf() {
      const text = input.value.trim();
      if (!name.value.trim()) return t("rules.case_no_name");
      if (!text) return t("rules.case_no_input");
      if (cases.some((item) => item.name === name.value.trim())) return t("rules.case_same_name");
      const made = { name: name.value.trim(), match: expected.value === "true" };
      const correlation = (outline || rule || {}).kind === "correlation";
      if (format.value === AS_EVENT) {
        let event;
        try { event = JSON.parse(text); } catch { return t("rules.case_bad_json"); }
        if (Array.isArray(event) && correlation && event.every((item) => item && typeof item === "object")) {
          return { ...made, stream: event.map((item) => ({ event: item })) };
        }
        if (!event || typeof event !== "object" || Array.isArray(event)) return t("rules.case_bad_json");
        return { ...made, event };
      }
      const raw = (line) => {
        if (!JSON_FORMATS.has(format.value)) return line;
        try {
          const value = JSON.parse(line);
          return value && typeof value === "object" && !Array.isArray(value) ? value : line;
        } catch {
          return line;
        }
      };
      const lines = text.split("\n").map((line) => line.trim()).filter(Boolean);
      if (correlation) return { ...made, format: format.value, stream: lines.map((line) => ({ raw: raw(line) })) };
      return { ...made, format: format.value, raw: raw(text) };
    }

    function add() {
      const made = caseOf();
      if (typeof made === "string") {
        replace(formError, made);
        return;
      }
      replace(formError);
      cases.push(made);
      name.value = "";
      input.value = "";
      drawCases();
      name.focus();
    }

    function describe(item) {
      const events = item.stream || [item];
      return events.map((event) => (event.event ? JSON.stringify(event.event)
        : typeof event.raw === "string" ? event.raw : JSON.stringify(event.raw))).join("\n");
    }

    function drawCases() {
      runButton.disabled = cases.length === 0;
      if (!cases.length) {
        replace(list, h("p", { class: "muted" }, t("rules.cases_none")));
        return;
      }
      replace(list, h("div", { class: "table-wrap" }, h("table", { class: "data" },
        h("caption", { class: "visually-hidden" }, t("rules.cases_caption")),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col", class: "num" }, t("rules.case_number")),
          h("th", { scope: "col" }, t("rules.case_name")),
          h("th", { scope: "col" }, t("rules.case_expected")),
          h("th", { scope: "col" }, t("rules.case_format")),
          h("th", { scope: "col" }, t("rules.case_input")),
          h("th", { scope: "col" }, t("rules.col_actions")))),
        h("tbody", {}, cases.map((item, index) => h("tr", {},
          h("td", { class: "num" }, index + 1),
          h("td", {}, item.name),
          h("td", {}, t(item.match ? "rules.case_should_match" : "rules.case_should_not_match")),
          h("td", {}, item.format || t("rules.case_as_event")),
          h("td", {}, h("div", { class: "truncate mono", title: describe(item) }, describe(item))),
          h("td", {}, h("button", {
            type: "button", "aria-label": t("rules.case_remove_named", { name: item.name }),
            on: { click: () => { cases.splice(index, 1); drawCases(); } },
          }, t("rules.case_remove")))))))));
    }

    /** Run the cases: on the saved rule (POST /rules/{id}/test) or on the YAML as it is. */
    async function run() {
      if (!cases.length) return;
      runButton.disabled = true;
      output.setAttribute("aria-busy", "true");
      replace(output, h("p", { class: "muted" }, t("rules.tests_running")));
      const yaml = unsavedYaml();
      try {
        const result = yaml === null
          ? await api.post(path(rule.id, "test"), { cases })
          : await api.post("rules/test", { yaml, cases });
        if (!ctx.alive()) return;
        replace(output, testResults(result));
      } catch (error) {
        if (!ctx.alive()) return;
        if (ruleProblems(error)) {
          showCheck({ valid: false, problems: error.detail, warnings: [] });
          replace(output, h("p", { class: "bad" }, t("rules.tests_rule_invalid")));
        } else {
          replace(output);
          ctx.sayError(error);
        }
      } finally {
        runButton.disabled = cases.length === 0;
        output.setAttribute("aria-busy", "false");
      }
    }

    function testResults(result) {
      const caseName = (index) => (index !== null && index !== undefined && cases[index] ? cases[index].name : null);
      const caseProblem = (problem) => h("li", {},
        caseName(problem.case) !== null ? t("rules.case_problem", { name: caseName(problem.case), message: problem.message })
          : problem.message);
      const errors = result.problems.filter((problem) => problem.severity === "error");
      const notes = [...result.problems.filter((problem) => problem.severity !== "error"), ...result.warnings];
      return [
        h("p", { class: result.failed || errors.length ? "failed" : "passed" },
          t("rules.tests_summary", { passed: result.passed, failed: result.failed })),
        h("ol", { class: "timeline" }, result.results.map((item) => h("li", { class: item.passed ? "passed" : "failed" },
          h("strong", {}, t(item.passed ? "rules.passed" : "rules.failed")), " ", item.name, " — ", item.why,
          item.hits !== null && item.hits !== undefined ? ` (${t("rules.hits", { hits: item.hits })})` : null,
          item.details && item.details.length ? h("details", {},
            h("summary", {}, t("rules.details")),
            h("pre", { class: "original" }, item.details.join("\n"))) : null))),
        errors.length ? h("ul", { class: "errors", "aria-label": t("rules.errors") }, errors.map(caseProblem)) : null,
        notes.length ? h("ul", { class: "warn", "aria-label": t("rules.warnings") }, notes.map(caseProblem)) : null,
        result.filters.length ? h("p", { class: "hint" }, t("rules.filters_applied", { filters: result.filters.join(", ") }))
          : null,
      ];
    }

    drawCases();
    return h("section", { "aria-labelledby": titleId },
      h("h2", { id: titleId }, t("rules.tests_title")),
      h("div", { class: "panel" },
        h("p", { class: "hint" }, t("rules.tests_intro")),
        form, list, h("div", { class: "toolbar" }, runButton), output));
  }

  // --- Backtest ------------------------------------------------------------------------------

  function backtestPanel() {
    const titleId = uid("backtest");
    const days = h("input", { name: "days", type: "number", min: 1, max: 30, step: 1, value: DEFAULT_DAYS, required: true });
    const runButton = h("button", { type: "submit", class: "primary" }, t("rules.backtest_run"));
    const output = h("div", { "aria-live": "polite" });
    const form = h("form", {
      class: "toolbar", "aria-label": t("rules.backtest_title"),
      on: { submit: (event) => { event.preventDefault(); run(); } },
    }, field(t("rules.backtest_days"), days, t("rules.backtest_days_hint")), runButton);

    /** Backtest the saved rule (POST /rules/{id}/preview, with the YAML when it is edited) or a
     * new one (POST /rules/preview). */
    async function run() {
      const count = Number(days.value);
      if (!Number.isInteger(count) || count < 1 || count > 30) {
        replace(output, h("p", { class: "errors", role: "alert" }, t("rules.backtest_bad_days")));
        days.focus();
        return;
      }
      runButton.disabled = true;
      output.setAttribute("aria-busy", "true");
      replace(output, h("p", { class: "muted" }, t("rules.backtest_running")));
      const yaml = unsavedYaml();
      try {
        const result = rule
          ? await api.post(path(rule.id, "preview"), yaml === null ? undefined : { yaml }, { days: count })
          : await api.post("rules/preview", { yaml }, { days: count });
        if (!ctx.alive()) return;
        replace(output, backtestResults(result));
      } catch (error) {
        if (!ctx.alive()) return;
        if (ruleProblems(error)) {
          const withLines = error.detail.filter((problem) => problem.line);
          if (withLines.length) showCheck({ valid: false, problems: error.detail, warnings: [] });
          replace(output, h("p", { class: "bad" }, t("rules.backtest_refused")),
            h("ul", { class: "errors" }, error.detail.map((problem) => h("li", {}, problemText(problem)))));
        } else {
          replace(output);
          ctx.sayError(error);
        }
      } finally {
        runButton.disabled = false;
        output.setAttribute("aria-busy", "false");
      }
    }

    function backtestResults(result) {
      const scan = result.scan;
      const kpi = (value, label) => h("div", { class: "kpi" }, h("div", { class: "value" }, number(value)),
        h("div", { class: "label" }, label));
      const notes = [];
      if (scan.capped) {
        notes.push(h("p", { class: "warn" }, t("rules.backtest_capped",
          { scanned: number(scan.events_scanned), total: number(scan.events_in_period), cap: number(scan.event_cap) })));
      }
      if (result.unreadable_events) {
        notes.push(h("p", { class: "warn" }, t("rules.backtest_unreadable", { count: number(result.unreadable_events) })));
      }
      if (result.correlation) {
        notes.push(h("p", {}, t("rules.backtest_correlation",
          { base: number(result.correlation.base_matches), hits: number(result.correlation.hits) })));
      }
      const suppression = result.suppression;
      if (suppression) {
        notes.push(h("p", {}, t("rules.backtest_suppression", {
          matches: number(suppression.suppressed_matches), without: number(suppression.matches_without),
          alerts: number(suppression.suppressed_alerts), alerts_without: number(suppression.alerts_without),
        })));
      }
      if (result.filters_applied.length) {
        notes.push(h("p", { class: "hint" }, t("rules.filters_applied", { filters: result.filters_applied.join(", ") })));
      }
      const samples = suppression ? suppression.suppressed_sample_event_ids : result.sample_event_ids;
      return [
        h("p", {}, t("rules.backtest_period", { since: dateTime(scan.since), until: dateTime(scan.until), days: scan.days })),
        h("div", { class: "kpis" },
          kpi(scan.events_scanned, t("rules.backtest_read", { total: number(scan.events_in_period) })),
          kpi(result.matches, t("rules.backtest_matches")),
          kpi(result.alerts, t("rules.backtest_alerts", { minutes: number(Math.round(result.alert_window_s / 60)) }))),
        notes,
        h("h3", {}, t("rules.backtest_by_agency")),
        result.by_agency.length ? h("div", { class: "table-wrap" }, h("table", { class: "data" },
          h("thead", {}, h("tr", {},
            h("th", { scope: "col" }, t("field.agency")),
            h("th", { scope: "col", class: "num" }, t("rules.backtest_matches")),
            h("th", { scope: "col", class: "num" }, t("rules.backtest_alerts_short")))),
          h("tbody", {}, result.by_agency.map((row) => h("tr", {},
            h("td", {}, row.agency),
            h("td", { class: "num" }, number(row.matches)),
            h("td", { class: "num" }, number(row.alerts)))))))
          : h("p", { class: "muted" }, t("rules.backtest_no_matches")),
        samples.length ? [
          h("h3", {}, t(suppression ? "rules.backtest_suppressed_samples" : "rules.backtest_samples")),
          h("ul", {}, samples.map((id) => h("li", {}, h("code", {}, id))))] : null,
      ];
    }

    return h("section", { "aria-labelledby": titleId },
      h("h2", { id: titleId }, t("rules.backtest_title")),
      h("div", { class: "panel" },
        h("p", { class: "hint" }, t("rules.backtest_intro")),
        form, output));
  }
}
