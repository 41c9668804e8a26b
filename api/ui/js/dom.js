// DOM helpers. Everything the console shows from the API goes through text nodes or textContent:
// never parsed as HTML, so data can never become markup or script.

const SVG_NS = "http://www.w3.org/2000/svg";

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

// A link inside the console: always "#/…", built from encoded parts, so no data picks the scheme.
export function link(text, ...parts) {
  return h("a", { href: "#/" + parts.map((p) => encodeURIComponent(String(p))).join("/") }, text);
}

export function execLink(id, text) {
  return h("a", { href: "#/executions/" + encodeURIComponent(id), class: "mono", title: id }, text || short(id));
}

export function short(id) {
  return id ? String(id).slice(0, 8) : "";
}

export function badge(status) {
  const name = String(status || "unknown");
  return h("span", { class: "badge s-" + name.toLowerCase().replace(/[^a-z_]/g, "") }, name);
}

export function jsonBlock(value, label) {
  const text = value === undefined ? "" : JSON.stringify(value, null, 2);
  const pre = h("pre", { class: "json" }, text === undefined ? "null" : text);
  return label ? h("div", { class: "jsonbox" }, h("div", { class: "label" }, label), pre) : pre;
}

export function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString(undefined, { hour12: false });
}

export function timeEl(iso) {
  return iso ? h("time", { datetime: iso, title: iso }, time(iso)) : "";
}

export function duration(startIso, endIso) {
  if (!startIso) return "";
  const end = endIso ? new Date(endIso) : new Date();
  const ms = end - new Date(startIso);
  if (!isFinite(ms) || ms < 0) return "";
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  if (ms < 3600000) return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
  return (ms / 3600000).toFixed(1) + " h";
}

export function table(headers, rows, attrs) {
  return h(
    "table",
    attrs || {},
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows),
  );
}

export function empty(text) {
  return h("p", { class: "muted empty" }, text);
}

export function errorMessage(error) {
  if (error && typeof error === "object") {
    const parts = [error.code, error.message || error.detail].filter(Boolean);
    return parts.length ? parts.join(": ") : JSON.stringify(error);
  }
  return error == null ? "" : String(error);
}

export const FINAL = new Set(["Succeeded", "Failed", "Cancelled", "TimedOut"]);

// Asks before an action that cannot be taken back (cancel, archive, publish, redrive, acknowledge,
// an approval's decision): the browser's own dialog, so that a stray click does nothing.
export function confirmed(question) {
  return window.confirm(question);
}

export function redriveQuestion(letter) {
  const what = letter.nodeId ? "node " + letter.nodeId : "its run";
  return "Redrive dead letter " + letter.id + "? The failed part (" + what + ") runs again, once; what it did before may be done twice.";
}
