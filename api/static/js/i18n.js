// Vietnamese and English. Each part of the console keeps its strings in js/i18n/<part>.js as
// {vi: {...}, en: {...}}; t(key, vars) looks a key up in the chosen language and fills {name}
// placeholders. tests/unit/api/test_console.py checks that both languages have the same keys and
// that every t("...") in the code has one.
"use strict";
import alert from "./i18n/alert.js";
import audit from "./i18n/audit.js";
import cases from "./i18n/cases.js";
import collectors from "./i18n/collectors.js";
import core from "./i18n/core.js";
import dashboard from "./i18n/dashboard.js";
import queue from "./i18n/queue.js";
import rules from "./i18n/rules.js";

export const LANGUAGES = ["vi", "en"];
export const TIME_ZONE = "Asia/Ho_Chi_Minh";
const PARTS = [core, queue, alert, cases, rules, collectors, dashboard, audit];
const DICTIONARIES = Object.fromEntries(
  LANGUAGES.map((lang) => [lang, Object.assign({}, ...PARTS.map((part) => part[lang]))]));
const STORED = "socpipe-language";

let current = LANGUAGES.includes(localStorage.getItem(STORED)) ? localStorage.getItem(STORED) : "vi";
const listeners = new Set();

export function language() {
  return current;
}

/** Choose the language (remembered in this browser too); listeners re-render. */
export function setLanguage(lang) {
  if (!LANGUAGES.includes(lang) || lang === current) return;
  current = lang;
  localStorage.setItem(STORED, lang);
  document.documentElement.lang = lang;
  for (const fn of listeners) fn(lang);
}

export function onLanguage(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** The text of ``key`` in the chosen language, {placeholders} filled from ``vars``. */
export function t(key, vars = {}) {
  let text = DICTIONARIES[current][key];
  if (text === undefined) {
    console.warn("socpipe console: no text for", key);
    text = DICTIONARIES.en[key] ?? key;
  }
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

/** ``key`` when it has a text, else ``fallback``: for values from the server (a tactic, a
 * status) that may be newer than the console. */
export function tOr(key, fallback) {
  return key in DICTIONARIES[current] ? t(key) : fallback;
}

function locale() {
  return current === "vi" ? "vi-VN" : "en-GB";
}

const formats = new Map();
function formatter(kind, options) {
  const key = `${current}:${kind}`;
  if (!formats.has(key)) formats.set(key, new Intl.DateTimeFormat(locale(), { timeZone: TIME_ZONE, ...options }));
  return formats.get(key);
}

/** A moment as people in Vietnam read it (Asia/Ho_Chi_Minh), e.g. 27/11/2026, 09:00:01. */
export function dateTime(value) {
  if (!value) return "";
  return formatter("dt", { dateStyle: "short", timeStyle: "medium", hourCycle: "h23" }).format(new Date(value));
}

export function dateOnly(value) {
  if (!value) return "";
  return formatter("d", { dateStyle: "medium" }).format(new Date(value));
}

export function hourLabel(value) {
  return formatter("h", { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" })
    .format(new Date(value));
}

export function number(value) {
  return new Intl.NumberFormat(locale()).format(value ?? 0);
}

/** "5 minutes ago" in the chosen language. */
export function ago(value) {
  const seconds = Math.round((new Date(value).getTime() - Date.now()) / 1000);
  const format = new Intl.RelativeTimeFormat(locale(), { numeric: "auto" });
  const steps = [[60, "second"], [60, "minute"], [24, "hour"], [Infinity, "day"]];
  let amount = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(amount) < size) return format.format(Math.round(amount), unit);
    amount /= size;
  }
  return "";
}

document.documentElement.lang = current;
