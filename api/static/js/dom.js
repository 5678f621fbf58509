// Building the page from elements, never from markup strings: every piece of data becomes a text node, never markup.
"use strict";

/**
 * An element: h("button", {class: "primary", on: {click: f}, "aria-label": "..."}, "text", child)
 * Props: class, text, on (listeners), dataset, and any attribute (false or null leaves it out,
 * true sets it empty). Children: strings, numbers, nodes, arrays of them; null/false skipped.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    else if (name === "text") element.textContent = String(value);
    else if (name === "on") for (const [event, fn] of Object.entries(value)) element.addEventListener(event, fn);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name === "value" && "value" in element) element.value = value;
    else if (name === "checked" || name === "selected" || name === "disabled") element[name] = Boolean(value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

/** An SVG element (charts). */
export function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") element.textContent = String(value);
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace what ``node`` holds. */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** A labelled form control: <label for=id>text</label><control id=id>. */
export function field(label, control, hint) {
  if (!control.id) control.id = uid("f");
  return h("div", { class: "field" },
    h("label", { for: control.id }, label),
    control,
    hint ? h("small", { class: "hint" }, hint) : null);
}

/** A <select> of [value, text] pairs, ``selected`` chosen. */
export function select(options, selected, props = {}) {
  return h("select", props, options.map(([value, text]) =>
    h("option", { value, selected: String(value) === String(selected ?? "") }, text)));
}

let counter = 0;
/** A fresh element id. */
export function uid(prefix = "id") {
  counter += 1;
  return `${prefix}-${counter}`;
}
