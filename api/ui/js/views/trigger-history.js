// A trigger's history: a webhook's deliveries (by outcome, the filter in the URL) or a schedule's
// fired ticks, newest first, a page at a time ("More" follows the API's Link header).

import { api, apiPage, apiNextPage, query } from "../api.js";
import { h, badge, execLink, timeEl, duration, table, empty } from "../dom.js";

const OUTCOMES = ["accepted", "duplicate", "not_activated", "refused"];
// Rows a page: "More" reads the next.
// How often the newest page is read again.
const REFRESH_MS = 5000;
const HISTORY_PAGE = 50;

// What each history is, for the trigger's kind that has it.
const HISTORIES = {
  deliveries: { kind: "webhook", title: "Deliveries", other: "ticks" },
  ticks: { kind: "schedule", title: "Ticks", other: "deliveries" },
};

export function historyHref(trigger) {
  return "#/triggers/" + encodeURIComponent(trigger.id) + "/" + (trigger.kind === "schedule" ? "ticks" : "deliveries");
}

function deliveryRow(d) {
  return h(
    "tr",
    { "data-delivery": String(d.id), "data-outcome": d.outcome },
    h("td", {}, timeEl(d.receivedAt)),
    h("td", {}, badge(d.outcome)),
    h("td", { class: "num" }, String(d.statusCode)),
    // A duplicate's run is the first delivery's.
    h("td", {}, d.executionId ? [execLink(d.executionId), d.outcome === "duplicate" ? h("span", { class: "muted" }, " (first delivery's)") : ""] : ""),
    h("td", { class: "mono" }, d.deliveryId || ""),
    h("td", { class: "error-text" }, d.reason || ""),
    h("td", { class: "num" }, d.bodyBytes == null ? "" : d.bodyBytes + " B"),
    h("td", {}, timeEl(d.lapsedAt)),
  );
}

// The run a tick met (the schedule's overlap policy): a buffered tick (bufferOne, bufferAll, cancelOther) waits,
// or waited, for it to end before starting its own; with a run of its own, the newest run still going
// that it cancelled (cancelOther); without, the run it started none beside (skip: the newest still
// going; cancelOther's catch-up: the newer tick's run that replaced it).
function overlapNote(t) {
  if (t.buffered) {
    const waited = t.overlappedBy ? execLink(t.overlappedBy) : "the schedule's runs";
    return t.executionId
      ? h("span", { class: "overlap" }, "started after ", waited, " ended")
      : h("span", { class: "overlap" }, "waits for ", waited, " to end");
  }
  if (!t.overlappedBy) return "";
  return t.executionId
    ? h("span", { class: "overlap" }, "cancels ", execLink(t.overlappedBy))
    : h("span", { class: "overlap" }, "no run beside ", execLink(t.overlappedBy));
}

function tickOverlap(t) {
  if (t.buffered) return t.executionId ? "waited" : "waiting";
  return t.overlappedBy ? (t.executionId ? "cancels" : "no-run") : undefined;
}

function tickRow(t) {
  const late = duration(t.tickAt, t.firedAt);
  return h(
    "tr",
    { "data-tick": t.tickAt, "data-overlap": tickOverlap(t) },
    h("td", {}, timeEl(t.tickAt)),
    h("td", {}, timeEl(t.firedAt)),
    h("td", { class: "num" }, late),
    // No run and no overlap: its workflow could not run (the schedule's error said why).
    h("td", {}, t.executionId ? execLink(t.executionId) : t.overlappedBy || t.buffered ? "" : h("span", { class: "muted" }, "none (the workflow could not run)")),
    h("td", { class: "num" }, String(t.missedTicks)),
    h("td", {}, overlapNote(t)),
  );
}

export async function render(main, { args, params }, ctx) {
  const [triggerId, which] = args;
  const history = HISTORIES[which];
  const outcome = which === "deliveries" ? params.get("outcome") || "" : "";
  const base = "#/triggers/" + encodeURIComponent(triggerId) + "/" + which;

  const trigger = await api("/triggers/" + encodeURIComponent(triggerId), { signal: ctx.signal });
  const outcomeSelect = h("select", { id: "delivery-outcome" }, ["", ...OUTCOMES].map((o) => h("option", { value: o, selected: o === outcome }, o || "any")));
  outcomeSelect.addEventListener("change", () => (location.hash = base + (outcomeSelect.value ? "?outcome=" + outcomeSelect.value : "")));
  const filter = which === "deliveries" ? h("label", {}, "Outcome ", outcomeSelect) : "";
  const body = h("div", { id: "history-body" });
  const pager = h("div", { class: "pager" });
  main.append(
    h(
      "div",
      { class: "titlebar", id: "trigger-header" },
      h("h1", {}, history.title + " of ", trigger.name),
      h("span", {}, trigger.kind, " of ", h("a", { href: "#/workflows/" + encodeURIComponent(trigger.workflowId) }, trigger.workflowId), " ", trigger.enabled ? badge("enabled") : badge("disabled")),
      filter,
      h("a", { href: "#/triggers" }, "all triggers"),
    ),
    // Asked for the other kind's history (the API answers 409): where this trigger's is.
    trigger.kind !== history.kind ? h("p", { class: "muted", id: "other-history" }, "A " + trigger.kind + " has no " + which + ": ", h("a", { href: historyHref(trigger) }, "its " + history.other), ".") : "",
    body,
    pager,
  );

  const row = which === "deliveries" ? deliveryRow : tickRow;
  const headers =
    which === "deliveries"
      ? ["Received", "Outcome", "Status", "Run", "Delivery id", "Reason", "Body", "Lapsed"]
      : ["Tick", "Fired", "Late by", "Run", "Missed ticks", "Overlap"];
  const firstPath = "/triggers/" + encodeURIComponent(triggerId) + "/" + which + query({ outcome, limit: HISTORY_PAGE });
  const status = h("span", { class: "muted", id: "history-updated" });
  let next = null;
  let paged = false; // "More" was used: the rows shown are kept as they are (no refresh)
  let rows = null;

  // The newest page: shown again every REFRESH_MS while only it is shown (a tick that was waiting
  // gets its run, a new delivery comes in); once "More" has appended older rows they stay put.
  async function load() {
    const first = await apiPage(firstPath, { signal: ctx.signal });
    if (paged) return;
    ctx.ok();
    status.textContent = "updated " + new Date().toLocaleTimeString(undefined, { hour12: false });
    next = first.next;
    if (!first.items.length) {
      const none = which === "ticks" ? "No ticks fired (or none kept)." : outcome ? "No " + outcome + " deliveries (or none kept)." : "No deliveries (or none kept).";
      body.replaceChildren(empty(none));
      rows = null;
    } else {
      const list = table(headers, first.items.map(row), { class: "list", id: "trigger-history", "data-history": which });
      rows = list.querySelector("tbody");
      body.replaceChildren(list);
    }
    pager.replaceChildren(status);
    if (next) pager.append(more);
  }

  // The next page, appended: the rows already shown stay (a page of the newest may have grown since,
  // but the cursor goes on from the last row shown).
  const more = h("button", { class: "secondary", id: "history-more" }, "More");
  more.addEventListener("click", async () => {
    if (more.disabled || !next || !rows) return;
    more.disabled = true;
    paged = true;
    status.textContent = "older rows shown: not refreshed";
    try {
      const page = await apiNextPage(next, { signal: ctx.signal });
      ctx.ok();
      rows.append(...page.items.map(row));
      next = page.next;
    } catch (error) {
      ctx.fail(error);
    } finally {
      more.disabled = false;
      if (!next) more.remove();
    }
  });

  await load();
  // Once More has appended older rows nothing is read again (load() also checks, for a More that
  // came while a read was under way).
  ctx.every(REFRESH_MS, () => (paged ? undefined : load().catch(ctx.fail)));
}
