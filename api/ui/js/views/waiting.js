// What waits for a person: open approvals (approve or reject, as the principal or token's subject),
// and runs parked on a wait (timer, signal, approval), with a signal form for signal waits.

import { api, query } from "../api.js";
import { h, badge, execLink, timeEl, table, empty, confirmed, visible, sendOnce } from "../dom.js";

const enc = encodeURIComponent;
// The most open waits one request lists (the API's largest limit); more are said, not cut silently.
const WAITS_LIMIT = 1000;
// The approvals shown, newest first.
const APPROVALS_SHOWN = 100;

function approvalRow(a, ctx, reload, result) {
  const comment = h("input", { type: "text", placeholder: "comment", size: 14 });
  const decide = (decision) => async () => {
    const what = a.title || a.nodeId;
    if (!confirmed(decision[0].toUpperCase() + decision.slice(1) + " \u201c" + what + "\u201d? A decision cannot be changed.")) return;
    try {
      const r = await api("/approvals/" + enc(a.id) + "/decision", { method: "POST", body: { decision, comment: comment.value || null } });
      ctx.ok();
      result.textContent = "Approval " + a.id.slice(0, 8) + ": " + decision + " recorded (" + (r.state || r.outcome || "ok") + ")";
      await reload();
    } catch (error) {
      ctx.fail(error);
    }
  };
  return h(
    "tr",
    { "data-approval": a.id },
    h("td", {}, a.title || a.nodeId, a.description ? h("div", { class: "muted" }, a.description) : ""),
    h("td", {}, a.workflowId),
    h("td", {}, execLink(a.executionId), " ", a.nodeId),
    // Its escalation's approvers may decide too from its time (README "Waiting node kinds").
    h("td", {}, a.approvers.join(", "), a.escalation ? h("div", { class: "muted" }, "then " + a.escalation.approvers.join(", ") + " from ", timeEl(a.escalation.at)) : ""),
    h("td", { class: "num" }, (a.decisions || []).filter((d) => d.decision === "approve").length + " / " + (a.required ?? "?")),
    h("td", {}, (a.decisions || []).map((d) => h("div", {}, d.principal + ": " + d.decision + (d.comment ? " — " + d.comment : "")))),
    h("td", {}, timeEl(a.expiresAt)),
    // A decided (or expired) approval takes no decision: its state instead of the buttons. One still
    // open past its timeout (its run Suspended: no worker has timed it out) has a closedAt, and a
    // decision on it is a 409: "expired", not the buttons.
    a.state === "open" && !a.closedAt
      ? h("td", { class: "row-actions" }, comment, h("button", { class: "small", onclick: decide("approve") }, "Approve"), h("button", { class: "small danger", onclick: decide("reject") }, "Reject"))
      : h("td", {}, badge(a.state === "open" ? "expired" : a.state)),
  );
}

// A run's open waits (from one GET /waits for every run listed), with a form for each signal wait.
function waitingRow(e, open, ctx, result) {
  if (open === null) {
    return h("tr", { "data-execution": e.id }, h("td", {}, execLink(e.id)), h("td", {}, e.workflowId), h("td", {}, badge(e.status)), h("td", {}, timeEl(e.createdAt)), h("td", { class: "muted" }, "not shown (past the waits listed)"));
  }
  const waitsCell = h(
    "td",
    {},
    ...open.map((w) => {
      const line = h("div", {}, w.nodeId + ": " + w.kind + (w.name ? " " + w.name : "") + (w.correlationKey ? " [" + w.correlationKey + "]" : ""), w.dueAt ? [" due ", timeEl(w.dueAt)] : "", w.expiresAt ? [" expires ", timeEl(w.expiresAt)] : "");
      if (w.kind === "signal" && w.name) {
        const payload = h("input", { type: "text", placeholder: "{}", size: 14 });
        line.append(
          " ",
          payload,
          h(
            "button",
            {
              class: "small",
              onclick: (event) =>
                sendOnce(event.currentTarget, async (signalId) => {
                  try {
                    const body = { payload: payload.value ? JSON.parse(payload.value) : {}, signalId };
                    if (w.correlationKey) body.correlationKey = w.correlationKey;
                    const r = await api("/executions/" + enc(e.id) + "/signals/" + enc(w.name), { method: "POST", body });
                    ctx.ok();
                    result.textContent = visible("Signal " + w.name + ": " + r.outcome);
                  } catch (error) {
                    ctx.fail(error);
                  }
                }),
            },
            "Send " + w.name,
          ),
        );
      }
      return line;
    }),
  );
  if (!open.length) waitsCell.replaceChildren(h("span", { class: "muted" }, "nothing open"));
  return h("tr", { "data-execution": e.id }, h("td", {}, execLink(e.id)), h("td", {}, e.workflowId), h("td", {}, badge(e.status)), h("td", {}, timeEl(e.createdAt)), waitsCell);
}

export async function render(main, { params }, ctx) {
  const all = params.get("approvals") === "all";
  const result = h("div", { class: "muted", id: "waiting-result" });
  const approvalsBox = h("div", { id: "approvals" });
  const runsBox = h("div", { id: "waiting-runs" });
  const toggle = h("a", { href: all ? "#/waiting" : "#/waiting?approvals=all" }, all ? "open only" : "show decided too");
  main.append(
    h("div", { class: "titlebar" }, h("h1", {}, "Waiting")),
    result,
    h("section", {}, h("h2", {}, "Approvals ", h("small", {}, toggle)), approvalsBox),
    h("section", {}, h("h2", {}, "Waiting and suspended runs"), runsBox),
  );

  async function load() {
    const [approvals, waiting, suspended] = await Promise.all([
      // One more than shown: whether there are more than APPROVALS_SHOWN (the list was cut there without a word).
      api("/approvals" + query({ status: all ? "all" : "open", limit: APPROVALS_SHOWN + 1 }), { signal: ctx.signal }),
      api("/executions" + query({ status: "Waiting", limit: 50 }), { signal: ctx.signal }),
      api("/executions" + query({ status: "Suspended", limit: 50 }), { signal: ctx.signal }),
    ]);
    const listed = Array.isArray(approvals) ? approvals : approvals.items || [];
    const items = listed.slice(0, APPROVALS_SHOWN);
    approvalsBox.replaceChildren(
      items.length
        ? table(["Approval", "Workflow", "Execution", "Approvers", "Approved", "Decisions", "Expires", ""], items.map((a) => approvalRow(a, ctx, load, result)), { class: "list" })
        : empty("No approvals waiting."),
      listed.length > APPROVALS_SHOWN ? h("p", { class: "muted more" }, "More approvals than the " + APPROVALS_SHOWN + " shown (the newest): `dataworkflows approvals list` pages through them all.") : "",
    );
    const runs = [...waiting.items, ...suspended.items];
    // Their open waits in one request (it was one a run: up to 100 against the rate limit).
    const waits = runs.length
      ? await api("/waits" + query({ executionId: runs.map((e) => e.id), state: "open", limit: WAITS_LIMIT }), { signal: ctx.signal })
      : [];
    const byRun = new Map(runs.map((e) => [e.id, []]));
    for (const w of waits) byRun.get(w.executionId)?.push(w);
    // Cut at the limit: the API lists the runs in the order named, so the runs after the last one
    // it reached are unknown, not waiting for nothing.
    const cut = waits.length >= WAITS_LIMIT ? runs.findIndex((e) => e.id === waits[waits.length - 1].executionId) : -1;
    if (cut >= 0) runs.slice(cut + 1).forEach((e) => byRun.set(e.id, null));
    // The first 50 of each: say so when there are more, rather than cutting the list silently.
    const more = [waiting, suspended].filter((page) => page.nextCursor).map((page) => (page === waiting ? "Waiting" : "Suspended"));
    runsBox.replaceChildren(
      runs.length ? table(["Execution", "Workflow", "Status", "Created", "Waits for"], runs.map((e) => waitingRow(e, byRun.get(e.id), ctx, result)), { class: "list" }) : empty("No run is waiting."),
      ...more.map((status) => h("p", { class: "muted more" }, "More " + status + " runs than shown: ", h("a", { href: "#/executions?status=" + status }, "list them all"), ".")),
      waits.length >= WAITS_LIMIT ? h("p", { class: "muted more" }, "Only the first " + WAITS_LIMIT + " open waits are shown: a run's own page shows all of its waits.") : "",
    );
  }
  await load();
}
