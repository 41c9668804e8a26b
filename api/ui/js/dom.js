// DOM helpers. Everything the console shows from the API goes through text nodes or textContent:
// never parsed as HTML, so data can never become markup or script.

const SVG_NS = "http://www.w3.org/2000/svg";

// Characters that reorder the text around them (U+202A-202E, U+2066-2069, the marks): drawn as
// such, "\u202eevil" read "live" in an approval's title and its confirm dialog, and an unclosed one
// scrambled the rest of a JSON cell. Shown as <U+202E> instead: the text as it is stored.
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

export function visible(text) {
  return String(text).replace(BIDI, (c) => "<U+" + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0") + ">");
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = visible(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value" || key.startsWith("data-")) el.setAttribute(key, value === true ? "" : String(value));
    else el.setAttribute(key, value === true ? "" : visible(value));
  }
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(visible(child)));
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

// Who did something: a principal's id, or "anonymous" for a caller that named none (loose mode
// without X-Principal-Id). One word everywhere: it read "anonymous", "unknown", "?" or nothing.
export const ANONYMOUS = "anonymous";

export function who(id) {
  return id ? String(id) : h("span", { class: "muted anonymous" }, ANONYMOUS);
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

// A signal sent from a button, once per press: the button is disabled until the answer comes (a
// double-click sent two signals, and a second "payment" stayed buffered for the next wait of that
// name), and each press carries its own signalId, so that a request the browser repeats is the
// same signal (README "Signals": the id makes it exactly-once).
function newId() {
  // crypto.randomUUID exists in secure contexts only (a console served over plain HTTP on a LAN name).
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sendOnce(button, send) {
  if (button.disabled) return;
  button.disabled = true;
  try {
    await send(newId());
  } finally {
    button.disabled = false;
  }
}

// Asks before an action that cannot be taken back (cancel, archive, publish, redrive, acknowledge,
// an approval's decision): the browser's own dialog, so that a stray click does nothing.
export function confirmed(question) {
  return window.confirm(visible(question));
}

export function redriveQuestion(letter) {
  if (letter.kind === "timed_out") {
    return "Redrive dead letter " + letter.id + "? What the run's timeout cut short runs again, once, under a fresh deadline; what it did before may be done twice.";
  }
  const what = letter.nodeId ? "node " + letter.nodeId : "its run";
  return "Redrive dead letter " + letter.id + "? The failed part (" + what + ") runs again, once; what it did before may be done twice.";
}
