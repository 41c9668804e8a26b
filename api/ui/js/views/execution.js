// One execution: its graph coloured by node state and updated live over the event stream, a
// waterfall of attempts, each node's parameters, outputs and error, the event log, its parent and
// children, and the control actions the API has (cancel, suspend, resume, signal, redrive).

import { api, query, streamEvents } from "../api.js";
import { h, badge, who, execLink, timeEl, time, duration, table, empty, jsonBlock, errorMessage, FINAL, confirmed, redriveQuestion, sendOnce } from "../dom.js";
import { drawGraph } from "../graph.js";

const enc = encodeURIComponent;
const REFRESH_MS = 1000;
const MAX_BARS = 300;
// What a node's event says about its state, shown before the page is read again.
const EVENT_STATUS = {
  node_started: "Running",
  node_succeeded: "Succeeded",
  node_failed: "Failed",
  node_skipped: "Skipped",
  node_cancelled: "Cancelled",
  wait_started: "Waiting",
};

function field(label, ...value) {
  return [h("dt", {}, label), h("dd", {}, ...value)];
}

function summary(e) {
  return h(
    "dl",
    { class: "facts" },
    field("Status", badge(e.status), e.cancelRequestedAt && !FINAL.has(e.status) ? " (cancel requested)" : "", e.suspendRequestedAt && !e.suspendedAt && !FINAL.has(e.status) ? " (suspend requested)" : ""),
    field("Workflow", h("a", { href: "#/workflows/" + enc(e.workflowId) }, e.workflowId), " v" + e.workflowVersion, h("span", { class: "muted mono" }, " " + (e.workflowChecksum || "").slice(0, 19))),
    field("Created", timeEl(e.createdAt)),
    field("Ran", e.startTime ? [timeEl(e.startTime), " → ", e.endTime ? timeEl(e.endTime) : "…", " (" + duration(e.startTime, e.endTime) + ")"] : "not started"),
    field("Principal", who(e.principalId), e.principalType ? " (" + e.principalType + ")" : ""),
    field("Request id", h("span", { class: "mono" }, e.requestId)),
    e.correlationId ? field("Correlation", e.correlationId) : [],
    e.triggerId ? field("Trigger", h("a", { href: "#/triggers" }, e.triggerId)) : [],
    e.parentExecutionId ? field("Parent", execLink(e.parentExecutionId), e.parentNodeId ? " node " + e.parentNodeId : "") : [],
    e.rootExecutionId && e.rootExecutionId !== e.id ? field("Root", execLink(e.rootExecutionId), " depth " + e.depth) : [],
    e.recoveryCount ? field("Recoveries", String(e.recoveryCount)) : [],
    // Shown when it is not the default: higher runs first (README "Run priority").
    e.priority ? field("Priority", String(e.priority), e.priority > 0 ? " (ahead of the default)" : " (behind the default)") : [],
    workerField(e),
  );
}

// Who runs it now: the worker holding its lease, or, for a Running run no worker holds (its worker
// stopped and handed it back, or was lost), that it waits for the next one.
function workerField(e) {
  if (e.worker) {
    const expired = e.leaseExpiresAt && new Date(e.leaseExpiresAt) < new Date();
    return field("Worker", h("span", { class: "mono" }, e.worker), expired ? " (its lease expired: recovery queues the run again)" : "");
  }
  if (e.status === "Running") return field("Worker", h("span", { class: "muted" }, "none: queued for the next worker"));
  return [];
}

function children(e) {
  if (!e.children || !e.children.length) return null;
  return h(
    "section",
    { id: "children" },
    h("h2", {}, "Children"),
    table(
      ["Execution", "Workflow", "Node", "Status", "Created"],
      e.children.map((c) => h("tr", {}, h("td", {}, execLink(c.id)), h("td", {}, c.workflowId + " v" + c.workflowVersion), h("td", {}, c.parentNodeId || ""), h("td", {}, badge(c.status)), h("td", {}, timeEl(c.createdAt)))),
      { class: "list" },
    ),
    e.childCount > e.children.length
      ? h("p", { class: "muted more" }, "The oldest " + e.children.length + " of " + e.childCount + " children: GET /api/v1/executions/" + e.id + "/children lists them all, a page at a time (its Link header names the next); `dataworkflows executions tree " + e.id + "` prints the whole tree.")
      : "",
  );
}

// What undid its Succeeded nodes after it ended otherwise (README "Compensation"), step by step in
// the order they run.
function compensation(e) {
  const c = e.compensation;
  if (!c) return null;
  return h(
    "section",
    { id: "compensation" },
    h("h2", {}, "Compensation ", badge(c.status)),
    table(
      ["#", "Undoes", "Action", "Status", "Attempts", "Ended", "Error"],
      c.steps.map((s) =>
        h(
          "tr",
          {},
          h("td", {}, String(s.position)),
          h("td", { class: "mono" }, s.nodeId),
          // A child run's step: the child, whose own compensation this step is.
          h(
            "td",
            { class: "mono" },
            s.childExecutionId ? ["child ", execLink(s.childExecutionId)] : s.actionType,
          ),
          h("td", {}, badge(s.status)),
          // Its attempts in all: after a redrive or an interruption they may pass maxAttempts, which
          // counts the tries of its retry policy.
          h("td", {}, String(s.attempts)),
          h("td", {}, s.endTime ? timeEl(s.endTime) : s.nextAttemptAt ? ["retry ", timeEl(s.nextAttemptAt)] : ""),
          h("td", {}, s.error ? errorMessage(s.error) : ""),
        ),
      ),
      { class: "list" },
    ),
  );
}

// The waterfall: one bar per attempt (and one per node running now), on a shared time axis.
// `more`: the run has more attempts than `attempts` (the first MAX_BARS it started).
function waterfall(e, attempts, nodes, more) {
  const bars = attempts.map((a) => ({
    label: a.nodeId + (a.itemIndex != null ? "[" + a.itemIndex + "]" : "") + " #" + a.attempt,
    start: new Date(a.startTime),
    end: new Date(a.endTime),
    status: a.interrupted ? "interrupted" : a.status,
    title: `${a.nodeId} attempt ${a.attempt}: ${a.status} ${duration(a.startTime, a.endTime)}${a.worker ? " on " + a.worker : ""}`,
  }));
  for (const n of nodes) {
    if ((n.status === "Running" || n.status === "Waiting") && n.startTime) {
      bars.push({
        label: n.nodeId + " #" + (n.attempts || 1),
        start: new Date(n.startTime),
        end: new Date(),
        status: n.status,
        title: `${n.nodeId}: ${n.status} since ${time(n.startTime)}`,
        open: true,
      });
    }
  }
  if (!bars.length) return empty("No attempts yet.");
  bars.sort((a, b) => a.start - b.start);
  const t0 = Math.min(...bars.map((b) => b.start), e.startTime ? new Date(e.startTime) : Infinity);
  const t1 = Math.max(...bars.map((b) => b.end), e.endTime ? new Date(e.endTime) : 0);
  const span = Math.max(1, t1 - t0);
  // A forEach of thousands of items would make thousands of rows: the first ones, and a count.
  const hidden = Math.max(0, bars.length - MAX_BARS);
  const untold = more ? h("p", { class: "muted" }, "… and more attempts (GET …/actions pages through them all)") : "";
  const rows = bars.slice(0, MAX_BARS).map((b) => {
    const bar = h("div", { class: "bar s-" + String(b.status).toLowerCase() + (b.open ? " open" : ""), title: b.title });
    // CSSOM, not a style attribute: allowed by the page's Content-Security-Policy.
    bar.style.left = ((b.start - t0) / span) * 100 + "%";
    bar.style.width = Math.max(0.4, ((b.end - b.start) / span) * 100) + "%";
    return h("div", { class: "wf-row" }, h("div", { class: "wf-label", title: b.title }, b.label), h("div", { class: "wf-track" }, bar));
  });
  return h("div", { class: "waterfall" }, h("div", { class: "wf-axis muted" }, h("span", {}, "0"), h("span", {}, duration(new Date(t0).toISOString(), new Date(t1).toISOString()))), rows, more ? untold : hidden ? h("p", { class: "muted" }, "… and " + hidden + " more attempts") : "");
}

// A node's panel shows its latest attempts, at most this many (a forEach of thousands of items has an
// attempt each: every one of them, with its parameters and outputs, made the page crawl).
const PANEL_ATTEMPTS = 50;

// `latest`: the node's latest attempts, oldest first (GET …/actions?nodeId=…&order=desc, reversed);
// `more`: whether it has more than those.
function nodePanel(nodeId, nodes, latest, more, definition) {
  if (!nodeId) return h("p", { class: "muted" }, "Select a node in the graph to see its parameters, outputs and error.");
  const state = nodes.find((n) => n.nodeId === nodeId);
  const spec = ((definition && definition.nodes) || []).find((n) => n.id === nodeId);
  const parts = [h("h3", {}, nodeId, " ", state ? badge(state.status) : "")];
  if (state) {
    parts.push(
      h(
        "dl",
        { class: "facts" },
        field("Kind", state.actionType || (spec && spec.nodeType) || ""),
        field("Attempts", String(state.attempts), state.interruptions ? " (" + state.interruptions + " interrupted)" : ""),
        state.startTime ? field("Ran", timeEl(state.startTime), " → ", state.endTime ? timeEl(state.endTime) : "…") : [],
        state.nextAttemptAt ? field("Next attempt", timeEl(state.nextAttemptAt)) : [],
      ),
    );
    if (state.error) parts.push(h("div", { class: "error-text" }, errorMessage(state.error)), jsonBlock(state.error, "Error"));
    if (state.outputs !== null && state.outputs !== undefined) parts.push(jsonBlock(state.outputs, "Outputs"));
  }
  if (spec && spec.parameters) parts.push(jsonBlock(spec.parameters, "Parameters (as defined)"));
  const shown = latest;
  if (more) {
    parts.push(h("p", { class: "muted more" }, "The latest " + shown.length + " attempts (GET …/actions?nodeId=" + nodeId + " pages through them all; a forEach's items: …/nodes/" + nodeId + "/items)."));
  }
  for (const a of shown) {
    parts.push(
      h(
        "details",
        { class: "attempt", open: a === shown[shown.length - 1] },
        h("summary", {}, "Attempt " + a.attempt + (a.itemIndex != null ? " item " + a.itemIndex : "") + " · ", badge(a.status), " · " + duration(a.startTime, a.endTime) + (a.worker ? " · " + a.worker : "")),
        jsonBlock(a.parameters, "Rendered parameters"),
        a.outputs != null ? jsonBlock(a.outputs, "Outputs") : "",
        a.error != null ? jsonBlock(a.error, "Error") : "",
      ),
    );
  }
  return h("div", {}, parts);
}

function eventRow(ev) {
  return h(
    "tr",
    { "data-event": ev.type },
    h("td", { class: "num muted" }, String(ev.id)),
    h("td", {}, timeEl(ev.at)),
    h("td", {}, h("code", {}, ev.type)),
    h("td", {}, ev.nodeId || ""),
    h("td", {}, ev.principal || ""),
    h("td", { class: "details" }, ev.details && Object.keys(ev.details).length ? JSON.stringify(ev.details) : ""),
  );
}

export async function render(main, { args }, ctx) {
  const id = args[0];
  const base = "/executions/" + enc(id);
  let execution = await api(base, { signal: ctx.signal });
  const version = await api("/workflows/" + enc(execution.workflowId) + "/versions/" + execution.workflowVersion, { signal: ctx.signal }).catch(() => null);
  const definition = version && version.definition;
  let attempts = [];
  // The run has more attempts than `attempts` holds (its first MAX_BARS).
  let moreAttempts = false;
  let selected = null;
  // The selected node's latest attempts (oldest first), and whether it has more.
  let nodeAttempts = [];
  let moreNodeAttempts = false;
  // The node's state when its attempts were read last: read again only when it changed, or while the
  // node runs or waits (a forEach's items go on under one state).
  let nodeRead = null;
  // The read in flight, and the state it is for: a click and a refresh at once share it.
  let nodeReading = null;
  async function loadNode() {
    const node = selected;
    if (!node) return;
    const state = execution.nodes.find((n) => n.nodeId === node) || null;
    const key = JSON.stringify([node, state]);
    if (key === nodeRead && state && state.status !== "Running" && state.status !== "Waiting") return;
    if (nodeReading && nodeReading.key === key) return nodeReading.done;
    const done = (async () => {
      const rows = await api(base + "/actions" + query({ nodeId: node, order: "desc", limit: PANEL_ATTEMPTS + 1 }), { signal: ctx.signal });
      if (node !== selected) return; // another node was selected meanwhile: its own read fills the panel
      nodeRead = key;
      moreNodeAttempts = rows.length > PANEL_ATTEMPTS;
      nodeAttempts = rows.slice(0, PANEL_ATTEMPTS).reverse();
    })();
    nodeReading = { key, done };
    try {
      await done;
    } finally {
      if (nodeReading && nodeReading.done === done) nodeReading = null;
    }
  }

  const header = h("div", { class: "titlebar" });
  const facts = h("div", { id: "facts" });
  const actions = h("div", { class: "actions", id: "actions" });
  const controlResult = h("div", { class: "muted", id: "control-result" });
  const graph = drawGraph(definition || { nodes: execution.nodes.map((n) => ({ id: n.nodeId, actionType: n.actionType })) }, (nodeId) => {
    selected = nodeId;
    nodeAttempts = [];
    moreNodeAttempts = false;
    paint();
    loadNode().then(paint, ctx.fail);
  });
  const panel = h("div", { class: "node-panel", id: "node-panel" });
  const timeline = h("div", { id: "timeline" });
  const extra = h("div", { id: "extra" });
  const waitsBox = h("div", { id: "waits" });
  const eventsBody = h("tbody", {});
  const liveState = h("span", { class: "muted", id: "stream-state" }, "");
  main.append(
    header,
    facts,
    actions,
    controlResult,
    h("section", { class: "graph-area" }, h("div", { class: "graph-scroll", id: "graph" }, graph.svg), panel),
    h("section", {}, h("h2", {}, "Timeline"), timeline),
    waitsBox,
    extra,
    h(
      "section",
      {},
      h("h2", {}, "Events ", liveState),
      h("table", { class: "list events", id: "events" }, h("thead", {}, h("tr", {}, ["#", "At", "Type", "Node", "Principal", "Details"].map((t) => h("th", {}, t)))), eventsBody),
    ),
  );

  function paint() {
    header.replaceChildren(h("h1", {}, "Execution ", h("span", { class: "mono" }, execution.id)), badge(execution.status));
    facts.replaceChildren(summary(execution));
    const states = new Map(execution.nodes.map((n) => [n.nodeId, n]));
    graph.update(states, selected);
    // Rebuilt only when what it shows changed: a live refresh (once a second) used to close the
    // attempts the operator had opened.
    const mine = nodeAttempts.filter((a) => a.nodeId === selected);
    const panelKey = JSON.stringify([selected, execution.nodes.find((n) => n.nodeId === selected) || null, moreNodeAttempts, mine]);
    if (panelKey !== shownPanel) {
      shownPanel = panelKey;
      panel.replaceChildren(nodePanel(selected, execution.nodes, mine, moreNodeAttempts, definition));
    }
    timeline.replaceChildren(waterfall(execution, attempts, execution.nodes, moreAttempts));
    const kids = children(execution);
    const undone = compensation(execution);
    extra.replaceChildren(
      ...(undone ? [undone] : []),
      ...(kids ? [kids] : []),
      h("section", { class: "two" }, jsonBlock(execution.trigger, "Trigger"), execution.outputs != null ? jsonBlock(execution.outputs, "Outputs") : execution.error != null ? jsonBlock(execution.error, "Error") : ""),
    );
    renderActions();
  }

  async function control(path, body, label) {
    try {
      const result = await api(base + path, { method: "POST", body });
      ctx.ok();
      controlResult.textContent = label + ": " + (result.outcome || result.status || "done");
      await refresh();
    } catch (error) {
      ctx.fail(error);
    }
  }

  let letters = [];
  let shownPanel = null;
  // The fields live as long as the page: a live refresh (once a second) used to rebuild them,
  // wiping what the operator was typing and taking the focus away.
  const reason = h("input", { type: "text", placeholder: "reason (optional)", size: 18, id: "control-reason" });
  const name = h("input", { type: "text", placeholder: "signal name", size: 12, id: "signal-name" });
  const payload = h("input", { type: "text", placeholder: '{"payload": "json"}', size: 18, id: "signal-payload" });
  // A wait with a correlation key takes only a signal that names it (the form had no field: such a
  // signal was buffered, and the wait stayed open).
  const correlation = h("input", { type: "text", placeholder: "correlation key (optional)", size: 16, id: "signal-correlation" });
  let shownActions = null;
  function renderActions() {
    const final = FINAL.has(execution.status);
    const suspended = execution.status === "Suspended" || (execution.suspendRequestedAt && !execution.suspendedAt);
    // The same buttons as shown already: nothing to rebuild.
    const key = JSON.stringify([final, Boolean(suspended), letters.map((l) => l.id)]);
    if (key === shownActions) return;
    shownActions = key;
    const buttons = [];
    if (!final) {
      const cancel = () => {
        if (confirmed("Cancel execution " + execution.id + "? Its running nodes are stopped and it ends Cancelled; this cannot be undone.")) {
          control("/cancel", { reason: reason.value || null }, "cancel");
        }
      };
      buttons.push(h("button", { class: "danger", id: "cancel", onclick: cancel }, "Cancel"));
      if (suspended) {
        buttons.push(h("button", { id: "resume", onclick: () => control("/resume", undefined, "resume") }, "Resume"));
      } else {
        buttons.push(h("button", { id: "suspend", onclick: () => control("/suspend", { reason: reason.value || null }, "suspend") }, "Suspend"));
      }
      buttons.push(reason);
      buttons.push(
        h(
          "span",
          { class: "group" },
          name,
          payload,
          correlation,
          h(
            "button",
            {
              id: "signal",
              onclick: async (event) => {
                let parsed = {};
                try {
                  parsed = payload.value ? JSON.parse(payload.value) : {};
                } catch (error) {
                  ctx.fail(new Error("the signal payload is not JSON: " + error.message));
                  return;
                }
                if (!name.value) return ctx.fail(new Error("name the signal"));
                // The browser would resolve these in the path (a signal name starts with a letter or digit).
                if (name.value === "." || name.value === "..") return ctx.fail(new Error("a signal name starts with a letter or a digit"));
                await sendOnce(event.currentTarget, (signalId) => {
                  const body = { payload: parsed, signalId };
                  if (correlation.value) body.correlationKey = correlation.value;
                  return control("/signals/" + enc(name.value), body, "signal");
                });
              },
            },
            "Send signal",
          ),
        ),
      );
    }
    for (const letter of letters) {
      buttons.push(
        h(
          "button",
          {
            class: "redrive",
            "data-letter": String(letter.id),
            onclick: async () => {
              if (!confirmed(redriveQuestion(letter))) return;
              try {
                const result = await api("/dead-letters/" + letter.id + "/redrive", { method: "POST" });
                controlResult.textContent = "redrive: " + result.action;
                letters = [];
                ctx.ok();
                await refresh();
                follow();
              } catch (error) {
                ctx.fail(error);
              }
            },
          },
          "Redrive dead letter " + letter.id + (letter.nodeId ? " (" + letter.nodeId + ")" : ""),
        ),
      );
    }
    actions.replaceChildren(...buttons);
  }

  async function refresh() {
    // The first MAX_BARS attempts the run started (one more: whether there are more), not all of them,
    // and without their parameters and outputs (the waterfall shows neither; a forEach's own attempt
    // holds every item's outputs): a forEach of thousands of items has an attempt each, and this is
    // read once a second. The selected node's panel reads its own latest ones (loadNode).
    const [e, a] = await Promise.all([api(base, { signal: ctx.signal }), api(base + "/actions" + query({ view: "summary", limit: MAX_BARS + 1 }), { signal: ctx.signal })]);
    execution = e;
    moreAttempts = a.length > MAX_BARS;
    attempts = a.slice(0, MAX_BARS);
    await loadNode();
    if (FINAL.has(execution.status)) {
      const page = await api("/dead-letters" + query({ open: true, executionId: execution.id }), { signal: ctx.signal }).catch(() => ({ items: [] }));
      letters = page.items;
    }
    const waits = await api(base + "/waits", { signal: ctx.signal }).catch(() => []);
    waitsBox.replaceChildren(
      waits.length
        ? h(
            "section",
            {},
            h("h2", {}, "Waits"),
            table(
              ["Node", "Kind", "State", "Name", "Due", "Expires", "Result"],
              waits.map((w) => h("tr", {}, h("td", {}, w.nodeId), h("td", {}, w.kind), h("td", {}, badge(w.state)), h("td", {}, w.name || ""), h("td", {}, timeEl(w.dueAt)), h("td", {}, timeEl(w.expiresAt)), h("td", { class: "details" }, w.result != null ? JSON.stringify(w.result) : ""))),
              { class: "list" },
            ),
          )
        : "",
    );
    paint();
  }

  // An event moves its node at once; the whole page is read again at most once a second however
  // many events arrive: three requests (the run, its first attempts, its waits), a fourth for the
  // selected node's attempts while it runs or after it changed, and the dead letters of an ended
  // run. Two tabs following live runs stay under the API's default per-caller limit (600 a minute).
  let pending = null;
  let lastRefresh = 0;
  // Set while the stream or a refresh fails (the API went away): the banner it raised is cleared
  // once they work again (it stayed, though the page was live again).
  let troubled = false;
  function recovered() {
    if (!troubled) return;
    troubled = false;
    ctx.ok();
    if (!FINAL.has(execution.status)) liveState.textContent = "(live)";
  }
  function troubles(error) {
    troubled = true;
    ctx.fail(error);
  }
  function soon() {
    if (pending || !ctx.alive) return;
    const wait = Math.max(0, lastRefresh + REFRESH_MS - Date.now());
    pending = setTimeout(() => {
      pending = null;
      lastRefresh = Date.now();
      if (ctx.alive) refresh().then(recovered, troubles);
    }, wait);
  }
  function apply(ev) {
    const status = EVENT_STATUS[ev.type];
    const node = ev.nodeId && status && execution.nodes.find((n) => n.nodeId === ev.nodeId);
    if (!node) return;
    node.status = status;
    if (status === "Running" && !node.endTime) node.startTime = node.startTime || ev.at;
    graph.update(new Map(execution.nodes.map((n) => [n.nodeId, n])), selected);
  }
  ctx.onCleanup(() => pending && clearTimeout(pending));

  let lastEvent = 0;
  let following = false;
  // A browser keeps at most six connections per host over HTTP/1.1: each open execution page held
  // one for its stream, and the seventh tab (and every request of the others) waited. A hidden
  // tab's stream is closed, and opened again after the last event it had once the tab is shown.
  let stream = null;
  function visibility() {
    if (document.hidden) {
      if (stream) stream.abort();
    } else if (!FINAL.has(execution.status)) {
      refresh().catch(() => {});
      follow();
    }
  }
  document.addEventListener("visibilitychange", visibility);
  ctx.onCleanup(() => document.removeEventListener("visibilitychange", visibility));
  function shown(ev) {
    recovered();
    lastEvent = Math.max(lastEvent, ev.id);
    eventsBody.append(eventRow(ev));
    apply(ev);
    soon();
  }
  // Until when the log is read a page at a time: the API refused a stream as one too many of this
  // caller's (429 too_many_streams, DW_MAX_STREAMS_PER_CALLER). The log came only over the stream, so
  // the page showed no events, and gave up following after 30 refusals (a review); the CLI reads pages.
  let pagesUntil = 0;
  async function readPages() {
    for (;;) {
      const page = await api(base + "/events" + query({ after: lastEvent, limit: 1000 }), { signal: ctx.signal });
      for (const ev of page) if (ev.id > lastEvent) shown(ev);
      if (page.length < 1000) return;
    }
  }
  async function follow() {
    if (following || !ctx.alive) return;
    following = true;
    try {
      for (let tries = 0; ctx.alive && tries < 30; tries++) {
        liveState.textContent = "(live)";
        try {
          if (document.hidden) return; // visibilitychange follows again when the tab is shown
          if (Date.now() < pagesUntil) {
            await readPages();
            tries = 0;
            await refresh().then(recovered, () => {});
            if (FINAL.has(execution.status)) {
              await readPages();
              break;
            }
            await new Promise((resolve) => setTimeout(resolve, 1000));
            continue;
          }
          stream = new AbortController();
          const stop = () => stream.abort();
          ctx.signal.addEventListener("abort", stop, { once: true });
          try {
            // Open is working again: a waiting run's stream may bring no event for hours, and the
            // banner of the outage it came back from stayed until one came.
            lastEvent = await streamEvents(execution.id, lastEvent, shown, stream.signal, recovered);
          } finally {
            ctx.signal.removeEventListener("abort", stop);
          }
          tries = 0;
        } catch (error) {
          if (error.name === "AbortError") {
            if (!ctx.alive || document.hidden) return;
            continue;
          }
          if (error.status === 429 && error.problem && error.problem.code === "too_many_streams") {
            // A stream is tried again after the Retry-After the API gives (15 s), pages meanwhile.
            pagesUntil = Date.now() + 15000;
            tries = -1;
            continue;
          }
          troubles(error);
          liveState.textContent = "(reconnecting)";
          if (error.status && error.status < 500 && error.status !== 429) return;
        }
        await refresh().then(recovered, () => {});
        if (FINAL.has(execution.status)) break;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    } finally {
      following = false;
      liveState.textContent = FINAL.has(execution.status) ? "(ended)" : "";
    }
  }

  // The run as first read, at once: its header and facts sit above the graph, and filled only after
  // the first refresh they pushed the graph down under a click already aimed at a node.
  paint();
  await refresh();
  follow();
}
