// Dead letters: open ones first, with redrive (re-run the failed part, once) and acknowledge.

import { api, query } from "../api.js";
import { h, badge, who, execLink, timeEl, table, empty, errorMessage, confirmed, redriveQuestion } from "../dom.js";

// How often the list is read again.
const REFRESH_MS = 10000;

// A compensation_failed letter has no node (it is the run's): its failed steps, named once (a
// forEach's failed children are steps of one node), and each failed child run with its id whole, a
// link to its page (the message named it deep in a long text, or not at all once cut).
function letterNodes(d) {
  if (d.kind !== "compensation_failed") return "";
  const payload = d.payload || {};
  const steps = [...new Set(Array.isArray(payload.failedSteps) ? payload.failedSteps : [])];
  const children = Array.isArray(payload.failedChildren) ? payload.failedChildren : [];
  return [
    steps.join(", "),
    ...children.map((c) =>
      h(
        "div",
        { class: "failed-child", "data-child": c.childExecutionId },
        "child run ",
        execLink(c.childExecutionId, c.childExecutionId),
        " (" + c.nodeId + "; failed in it: " + ((c.failedSteps || []).join(", ") || "-") + ")",
      ),
    ),
  ];
}

export async function render(main, { params }, ctx) {
  const state = params.get("state") || "open";
  const kind = params.get("kind") || "";
  const cursor = params.get("cursor") || "";
  const stateSelect = h("select", { id: "letter-state" }, ["open", "closed", "all"].map((s) => h("option", { value: s, selected: s === state }, s)));
  const kindSelect = h(
    "select",
    { id: "letter-kind" },
    ["", "node_failed", "worker_lost", "job_failed", "timed_out", "compensation_failed"].map((k) => h("option", { value: k, selected: k === kind }, k || "any")),
  );
  const go = () => {
    const next = new URLSearchParams({ state: stateSelect.value });
    if (kindSelect.value) next.set("kind", kindSelect.value);
    location.hash = "#/dead-letters?" + next;
  };
  stateSelect.addEventListener("change", go);
  kindSelect.addEventListener("change", go);
  const result = h("div", { class: "muted", id: "letter-result" });
  const body = h("div", {});
  main.append(h("div", { class: "titlebar" }, h("h1", {}, "Dead letters"), h("label", {}, "Show ", stateSelect), h("label", {}, "Kind ", kindSelect)), result, body);

  async function load() {
    const open = state === "open" ? true : state === "closed" ? false : undefined;
    const page = await api("/dead-letters" + query({ open, kind, cursor, limit: 50 }), { signal: ctx.signal });
    const rows = page.items.map((d) => {
      const isOpen = !d.redrivenAt && !d.closedAt;
      const note = h("input", { type: "text", placeholder: "note", size: 12 });
      const actions = isOpen
        ? [
            h(
              "button",
              {
                class: "redrive small",
                onclick: async () => {
                  if (!confirmed(redriveQuestion(d))) return;
                  try {
                    const r = await api("/dead-letters/" + d.id + "/redrive", { method: "POST" });
                    ctx.ok();
                    result.replaceChildren("Dead letter " + d.id + " redriven (" + r.action + "): ", execLink(r.executionId));
                    await load();
                  } catch (error) {
                    ctx.fail(error);
                  }
                },
              },
              "Redrive",
            ),
            note,
            h(
              "button",
              {
                class: "secondary small",
                onclick: async () => {
                  if (!confirmed("Acknowledge dead letter " + d.id + "? It is closed, and its work does not run again.")) return;
                  try {
                    await api("/dead-letters/" + d.id + "/acknowledge", { method: "POST", body: { note: note.value || null } });
                    ctx.ok();
                    result.textContent = "Dead letter " + d.id + " acknowledged";
                    await load();
                  } catch (error) {
                    ctx.fail(error);
                  }
                },
              },
              "Acknowledge",
            ),
          ]
        : d.redrivenAt
          ? ["redriven ", timeEl(d.redrivenAt), " by ", who(d.redrivenBy)]
          : ["closed (" + (d.closeReason || "") + ")", d.closeReason === "run_ended" ? "" : [" by ", who(d.closedBy)], d.closeNote ? ": " + d.closeNote : ""];
      return h(
        "tr",
        { "data-letter": String(d.id), "data-open": String(isOpen) },
        h("td", { class: "num" }, String(d.id)),
        h("td", {}, d.kind),
        h("td", {}, d.workflowId ? h("a", { href: "#/workflows/" + encodeURIComponent(d.workflowId) }, d.workflowId) : ""),
        h("td", {}, d.executionId ? execLink(d.executionId) : ""),
        h("td", {}, d.nodeId || letterNodes(d)),
        h("td", { class: "num" }, String(d.attempts)),
        h("td", { class: "error-text" }, errorMessage(d.error)),
        h("td", {}, timeEl(d.createdAt)),
        h("td", {}, isOpen ? badge("open") : badge("closed")),
        h("td", { class: "row-actions" }, actions),
      );
    });
    body.replaceChildren(
      rows.length ? table(["#", "Kind", "Workflow", "Execution", "Node", "Attempts", "Error", "Created", "State", ""], rows, { class: "list", id: "dead-letters" }) : empty("No dead letters."),
      page.nextCursor ? h("div", { class: "pager" }, h("a", { class: "button", href: "#/dead-letters?" + new URLSearchParams({ state, kind, cursor: page.nextCursor }) }, "Older →")) : "",
    );
  }
  await load();
  // New letters come, redrives and retention close others: read again every REFRESH_MS, unless a
  // note is being written (a new list would drop it).
  ctx.every(REFRESH_MS, () => {
    const notes = [...body.querySelectorAll("input")];
    if (notes.some((input) => input.value || input === document.activeElement)) return;
    return load().catch(ctx.fail);
  });
}
