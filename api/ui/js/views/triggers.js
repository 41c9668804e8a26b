// Schedules and webhooks: their config, next and last tick, error, their last runs, and a link to
// each one's history (a webhook's deliveries, a schedule's ticks).

import { api, apiPages, query } from "../api.js";
import { h, badge, execLink, timeEl, table, empty, visible } from "../dom.js";
import { historyHref } from "./trigger-history.js";

// The API's largest page, and the most triggers the page reads (ten pages); more are said, not cut silently.
const TRIGGERS_PAGE = 1000;
const TRIGGERS_SHOWN = 10000;

// The most of a config value a cell shows; the whole of it is the element's title.
const VALUE_SHOWN = 60;

function shown(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  const long = text.length > VALUE_SHOWN;
  return h("code", { class: "config-value", title: long ? text : undefined }, long ? text.slice(0, VALUE_SHOWN - 1) + "…" : text);
}

// What the trigger is configured with, a line a setting (the defaults said as such). The payload,
// catch-up, activation condition and template were left out.
function describe(t) {
  const c = t.config || {};
  const line = (...parts) => h("div", {}, ...parts);
  if (t.kind === "schedule") {
    const catchUp = c.catchUp || "latest";
    return [
      line(h("code", {}, c.cron || ""), " ", c.timezone || "UTC"),
      line("catch-up " + catchUp + (catchUp === "all" ? " (at most " + (c.maxCatchUp ?? 100) + ")" : "") + " · overlap " + (c.overlap || "allow")),
      c.payload !== undefined && c.payload !== null ? line("payload ", shown(c.payload)) : "",
    ];
  }
  if (t.kind === "event") {
    // README "Events": the CloudEvent type (or prefix) it starts a run for, and the only source it takes.
    return [line("on ", h("code", {}, c.eventType || "")), c.source ? line("from ", shown(c.source)) : ""];
  }
  return [
    line(h("code", {}, t.hookUrl || "/api/v1/hooks/" + t.id), " · ", c.signature || (t.hasSecret ? "signed" : "unsigned")),
    c.activationCondition ? line("if ", shown(c.activationCondition)) : "",
    c.payloadTemplate !== undefined && c.payloadTemplate !== null ? line("template ", shown(c.payloadTemplate)) : "",
    c.headers && c.headers.length ? line("headers ", shown(c.headers.join(", "))) : "",
    c.deliveryIdHeader ? line("delivery id ", shown(c.deliveryIdHeader)) : "",
  ];
}

// How often the list is read again.
const REFRESH_MS = 10000;

export async function render(main, { params }, ctx) {
  const kind = params.get("kind") || "";
  const kindSelect = h("select", { id: "trigger-kind" }, ["", "schedule", "webhook", "event"].map((k) => h("option", { value: k, selected: k === kind }, k || "any")));
  kindSelect.addEventListener("change", () => (location.hash = "#/triggers" + (kindSelect.value ? "?kind=" + kindSelect.value : "")));
  const result = h("div", { class: "muted" });
  const body = h("div", {});
  main.append(h("div", { class: "titlebar" }, h("h1", {}, "Triggers"), h("label", {}, "Kind ", kindSelect)), result, body);

  async function load() {
    // Every page: the API answers 100 at a time unless asked for more, the next page in a Link header.
    const { items: triggers, more } = await apiPages("/triggers" + query({ kind, limit: TRIGGERS_PAGE }), { signal: ctx.signal, most: TRIGGERS_SHOWN });
    const rows = triggers.map((t) => {
      // The list carries each trigger's latest runs: a request per trigger passed the API's rate
      // limit with a hundred triggers, and those rows showed "?".
      const recent = t.recentRuns || [];
      const runs = h(
        "td",
        { class: "runs" },
        ...(recent.length ? recent.map((e) => h("div", {}, execLink(e.id), " ", badge(e.status), " ", timeEl(e.createdAt))) : [h("span", { class: "muted" }, "none yet")]),
        t.moreRuns ? h("a", { href: "#/executions?triggerId=" + encodeURIComponent(t.id) }, "all runs →") : "",
      );
      const toggle = h(
        "button",
        {
          class: "small secondary",
          onclick: async () => {
            try {
              await api("/triggers/" + encodeURIComponent(t.id), { method: "PATCH", body: { enabled: !t.enabled } });
              ctx.ok();
              result.textContent = visible(t.name) + (t.enabled ? " disabled" : " enabled");
              await load();
            } catch (error) {
              ctx.fail(error);
            }
          },
        },
        t.enabled ? "Disable" : "Enable",
      );
      return h(
        "tr",
        { "data-trigger": t.id },
        // An event trigger's history is its runs (Last runs) and dw.v_events: it has no page of its own.
        h("td", {}, t.name, t.kind === "event" ? "" : h("div", {}, h("a", { class: "history", href: historyHref(t) }, t.kind === "schedule" ? "ticks →" : "deliveries →"))),
        h("td", {}, t.kind),
        h("td", {}, h("a", { href: "#/workflows/" + encodeURIComponent(t.workflowId) }, t.workflowId)),
        // Its runs' priority when it has one of its own (README "Run priority").
        h("td", { class: "config" }, describe(t), t.priority != null ? h("div", { class: "priority" }, "priority " + t.priority) : ""),
        h("td", {}, t.enabled ? badge("enabled") : badge("disabled")),
        h("td", {}, t.kind === "schedule" ? [h("div", {}, "next ", t.enabled ? timeEl(t.nextTickAt) || "not computed yet" : "none (disabled)"), h("div", {}, "last ", timeEl(t.lastTickAt) || "never")] : ""),
        h("td", { class: "error-text" }, t.error || ""),
        runs,
        h("td", {}, toggle),
      );
    });
    body.replaceChildren(
      rows.length ? table(["Name", "Kind", "Workflow", "Config", "State", "Ticks", "Error", "Last runs", ""], rows, { class: "list", id: "triggers" }) : empty("No schedules, webhooks or event triggers."),
      more ? h("p", { class: "muted more" }, "More triggers than the " + TRIGGERS_SHOWN + " shown (by workflow, kind and name): GET /api/v1/triggers lists them all, a page at a time (its Link header names the next; `dataworkflows triggers list --cursor C` reads the page after C).") : "",
    );
  }
  await load();
  // Next and last ticks, errors and runs change by themselves: read again every REFRESH_MS.
  ctx.every(REFRESH_MS, () => load().catch(ctx.fail));
}
