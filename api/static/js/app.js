// The console's shell: sign-in, the navigation a role may use, the language, a hash router
// (#/alerts?status=new, #/alerts/<id>...), messages, and keyboard shortcuts for the page shown.
"use strict";
import { api, ApiError, onSignedOut, signedIn, signOut } from "./api.js";
import { h, replace } from "./dom.js";
import { language, LANGUAGES, onLanguage, setLanguage, t } from "./i18n.js";
import * as alertPage from "./pages/alert.js";
import * as auditPage from "./pages/audit.js";
import * as casesPage from "./pages/cases.js";
import * as collectorsPage from "./pages/collectors.js";
import * as dashboardPage from "./pages/dashboard.js";
import * as queuePage from "./pages/queue.js";
import * as rulesPage from "./pages/rules.js";
import * as signinPage from "./pages/signin.js";

// What each role may open; the server enforces the same (api/security.py's GRANTS).
const EVERY_READER = ["soc_admin", "rule_author", "analyst", "agency_viewer"];
const ROUTES = [
  { pattern: /^\/alerts\/([^/]+)$/, page: alertPage, nav: "alerts", roles: EVERY_READER },
  { pattern: /^\/alerts$/, page: queuePage, nav: "alerts", roles: EVERY_READER },
  { pattern: /^\/dashboard$/, page: dashboardPage, nav: "dashboard", roles: EVERY_READER },
  { pattern: /^\/cases(?:\/([^/]+))?$/, page: casesPage, nav: "cases", roles: ["soc_admin", "analyst", "rule_author"] },
  { pattern: /^\/rules(?:\/([^/]+))?$/, page: rulesPage, nav: "rules", roles: ["soc_admin", "rule_author", "analyst"] },
  { pattern: /^\/collectors$/, page: collectorsPage, nav: "collectors", roles: ["soc_admin", "analyst", "agency_viewer"] },
  { pattern: /^\/audit$/, page: auditPage, nav: "audit", roles: ["soc_admin"] },
];
const NAV = ["alerts", "dashboard", "cases", "rules", "collectors", "audit"];

const header = document.getElementById("top");
const view = document.getElementById("view");
const status = document.getElementById("status");
const help = document.getElementById("help");

let me = null;
// The SOC's agencies by id ({id, name, tier}; GET /agencies), to show names where records
// carry ids. Empty when the API has no registry: ids are shown then.
let agencies = new Map();
let generation = 0;
let cleanups = [];
let shortcuts = {};

/** Show a message in the status line ("error" ones are announced at once). */
export function say(message, kind = "info") {
  status.className = `status ${kind}`;
  status.setAttribute("role", kind === "error" ? "alert" : "status");
  replace(status, message || "");
  if (kind !== "error" && message) {
    const shown = message;
    setTimeout(() => { if (status.textContent === shown) replace(status, ""); }, 6000);
  }
}

/** An error from the API (or anything else) as a message. */
export function sayError(error) {
  if (error instanceof ApiError) {
    if (error.status === 403) return say(t("error.forbidden"), "error");
    if (error.status === 503) return say(t("error.unavailable"), "error");
    return say(`${t("error.server", { status: error.status })} ${error.lines().join("; ")}`, "error");
  }
  console.error(error);
  return say(t("error.network"), "error");
}

function parseHash() {
  const hash = location.hash.replace(/^#/, "") || "/alerts";
  const [path, search = ""] = hash.split("?");
  return { path, query: new URLSearchParams(search) };
}

/** Go to a console address ("/alerts?status=new"); ``replaceEntry`` keeps the history short. */
export function go(path, replaceEntry = false) {
  const target = `#${path}`;
  if (replaceEntry) history.replaceState(null, "", target);
  else history.pushState(null, "", target);
  show();
}

function renderHeader() {
  const nav = h("nav", { "aria-label": t("nav.label") }, h("ul", {},
    NAV.filter((name) => me && ROUTES.find((r) => r.nav === name).roles.includes(me.role)).map((name) =>
      h("li", {}, h("a", { href: `#/${name}`, dataset: { nav: name } }, t(`nav.${name}`))))));
  const languages = h("div", { class: "languages", role: "group", "aria-label": t("language.label") },
    LANGUAGES.map((lang) => h("button", {
      type: "button", class: "link", lang, "aria-pressed": String(lang === language()),
      on: { click: () => chooseLanguage(lang) },
    }, t(`language.${lang}`))));
  const user = h("div", { class: "user" },
    me ? h("span", { class: "who" }, h("strong", {}, me.name), h("small", {}, t(`role.${me.role}`), me.agency ? ` · ${agencyName(me.agency)}` : "")) : null,
    h("button", { type: "button", class: "link", "aria-keyshortcuts": "?", on: { click: showHelp } }, t("help.button")),
    me ? h("button", { type: "button", class: "link", on: { click: () => signOut() } }, t("signout")) : null);
  replace(header,
    h("a", { class: "brand", href: "#/alerts" }, h("strong", {}, "socpipe"),
      h("span", { class: "sub" }, t("brand.sub"))),
    me ? nav : null, languages, user);
}

async function chooseLanguage(lang) {
  setLanguage(lang);
  if (!me) return;
  try {
    me = await api.patch("auth/me", { language: lang });
  } catch (error) {
    // API keys and single sign-on users have no record here: the browser remembers it.
    if (!(error instanceof ApiError && error.status === 409)) sayError(error);
  }
}

function showHelp() {
  const keys = [["j", "help.next"], ["k", "help.previous"], ["Enter", "help.open"], ["x", "help.select"],
    ["a", "help.acknowledge"], ["m", "help.assign_me"], ["/", "help.search"], ["Esc", "help.back"], ["?", "help.this"]];
  replace(help,
    h("h2", { id: "help-title" }, t("help.title")),
    h("dl", { class: "keys" }, keys.map(([key, text]) => [h("dt", {}, h("kbd", {}, key)), h("dd", {}, t(text))])),
    h("form", { method: "dialog" }, h("button", { class: "primary" }, t("action.close"))));
  help.showModal();
}

function typing(target) {
  return target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || help.open) return;
  if (typing(event.target)) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  if (event.key === "?") { event.preventDefault(); showHelp(); return; }
  const handler = shortcuts[event.key];
  if (handler) {
    event.preventDefault();
    handler(event);
  }
});

async function show() {
  generation += 1;
  for (const fn of cleanups) fn();
  cleanups = [];
  shortcuts = {};
  // Each page draws into its own element: a page still loading when another is chosen draws
  // into an element no longer shown.
  const page = h("div", { class: "page" });
  if (!signedIn()) {
    me = null;
    renderHeader();
    document.title = `${t("signin.title")} · socpipe`;
    replace(view, page);
    await signinPage.render(page, context({}, new URLSearchParams()));
    return;
  }
  if (!me) {
    try {
      me = await api.get("auth/me");
    } catch (error) {
      sayError(error);
      return;
    }
    if (me.language && me.language !== language()) setLanguage(me.language);
    try {
      agencies = new Map((await api.get("agencies")).data.map((agency) => [agency.id, agency]));
    } catch (error) {
      agencies = new Map(); // names are a courtesy: ids do
    }
  }
  const { path, query } = parseHash();
  const route = ROUTES.find((r) => r.pattern.test(path));
  renderHeader();
  for (const link of header.querySelectorAll("nav a")) {
    if (route && link.dataset.nav === route.nav) link.setAttribute("aria-current", "page");
  }
  if (!route || !route.roles.includes(me.role)) {
    replace(view, h("h1", {}, t("error.no_page")), h("p", {}, h("a", { href: "#/alerts" }, t("nav.alerts"))));
    return;
  }
  const match = path.match(route.pattern);
  replace(view, page);
  try {
    await route.page.render(page, context(match.slice(1), query));
  } catch (error) {
    sayError(error);
  }
  view.focus({ preventScroll: true });
}

/** An agency's name from the registry, else its id. */
function agencyName(id) {
  const agency = agencies.get(id);
  return agency ? agency.name : id;
}

function context(params, query) {
  const mine = generation;
  const alive = () => mine === generation;
  return {
    alive,
    params,
    query,
    me,
    go,
    say,
    sayError,
    refresh: show,
    title: (text) => { document.title = `${text} · socpipe`; },
    keys: (map) => { if (alive()) shortcuts = { ...shortcuts, ...map }; },
    onCleanup: (fn) => { if (alive()) cleanups.push(fn); else fn(); },
    // Run ``fn`` every ``ms`` while this page is shown and the tab visible (live refresh).
    every: (ms, fn) => {
      const timer = setInterval(() => { if (alive() && !document.hidden) fn(); }, ms);
      if (alive()) cleanups.push(() => clearInterval(timer));
      else clearInterval(timer);
    },
    can: (...roles) => Boolean(me) && roles.includes(me.role),
    agencyName,
    agencies: () => [...agencies.values()],
  };
}

document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  view.focus();
});

onSignedOut(() => {
  me = null;
  agencies = new Map();
  say("");
  history.replaceState(null, "", "#/alerts");
  show();
});
onLanguage(() => show());
window.addEventListener("hashchange", show);
show();
