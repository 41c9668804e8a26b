// Executions: filters (status, workflow, time range, trigger kind) kept in the URL, cursor paging
// with the API's nextCursor, and live refresh of the first page.

import { api, query } from "../api.js";
import { h, badge, who, execLink, timeEl, duration, table, empty, FINAL } from "../dom.js";

const STATUSES = ["Pending", "Running", "Waiting", "Suspended", "Succeeded", "Failed", "Cancelled", "TimedOut"];
const KINDS = ["manual", "schedule", "webhook", "event", "subworkflow"];
const REFRESH_MS = 2000;

function select(name, label, options, value) {
  return h(
    "label",
    {},
    label + " ",
    h(
      "select",
      { name, "data-filter": name },
      h("option", { value: "" }, "any"),
      options.map((o) => h("option", { value: o, selected: o === value }, o)),
    ),
  );
}

// datetime-local values are local time; the API gets UTC instants.
function toIso(local) {
  if (!local) return "";
  const d = new Date(local);
  return isNaN(d) ? "" : d.toISOString();
}

function toLocal(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function row(e) {
  return h(
    "tr",
    { "data-execution": e.id, "data-status": e.status },
    h("td", {}, execLink(e.id)),
    h("td", {}, h("a", { href: "#/workflows/" + encodeURIComponent(e.workflowId) }, e.workflowId), h("span", { class: "muted" }, " v" + e.workflowVersion)),
    h("td", {}, badge(e.status), e.cancelRequestedAt && !FINAL.has(e.status) ? h("span", { class: "muted" }, " cancel asked") : ""),
    h("td", {}, e.triggerKind || "manual", e.parentExecutionId ? [" of ", execLink(e.parentExecutionId)] : ""),
    h("td", {}, timeEl(e.createdAt)),
    h("td", { class: "num" }, duration(e.startTime, e.endTime)),
    h("td", {}, who(e.principalId)),
  );
}

export async function render(main, { params }, ctx) {
  const filters = {
    status: params.get("status") || "",
    workflowId: params.get("workflowId") || "",
    triggerKind: params.get("triggerKind") || "",
    createdFrom: params.get("createdFrom") || "",
    createdTo: params.get("createdTo") || "",
    // From a trigger's "all runs" link; kept until Clear.
    triggerId: params.get("triggerId") || "",
  };
  const cursor = params.get("cursor") || "";
  // The cursors of the pages before this one, so that "Previous" goes back.
  const back = params.getAll("back");

  const workflowList = h("datalist", { id: "workflow-ids" });
  const form = h(
    "form",
    { class: "filters", id: "execution-filters" },
    select("status", "Status", STATUSES, filters.status),
    h("label", {}, "Workflow ", h("input", { name: "workflowId", list: "workflow-ids", value: filters.workflowId, size: 16, "data-filter": "workflowId" })),
    workflowList,
    select("triggerKind", "Trigger", KINDS, filters.triggerKind),
    h("label", {}, "From ", h("input", { type: "datetime-local", name: "createdFrom", value: toLocal(filters.createdFrom) })),
    h("label", {}, "To ", h("input", { type: "datetime-local", name: "createdTo", value: toLocal(filters.createdTo) })),
    filters.triggerId ? h("span", { class: "muted", id: "trigger-filter" }, "trigger " + filters.triggerId.slice(0, 8)) : "",
    h("button", { type: "submit" }, "Filter"),
    h("button", { type: "button", class: "secondary", onclick: () => (location.hash = "#/executions") }, "Clear"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = new URLSearchParams();
    for (const key of ["status", "workflowId", "triggerKind"]) if (data.get(key)) next.set(key, String(data.get(key)).trim());
    for (const key of ["createdFrom", "createdTo"]) if (toIso(data.get(key))) next.set(key, toIso(data.get(key)));
    if (filters.triggerId) next.set("triggerId", filters.triggerId);
    location.hash = "#/executions" + (next.toString() ? "?" + next : "");
  });
  // A changed select applies at once.
  for (const sel of form.querySelectorAll("select")) sel.addEventListener("change", () => form.requestSubmit());

  const live = h("input", { type: "checkbox", id: "live", checked: !cursor });
  const status = h("span", { class: "muted", id: "list-state" });
  const body = h("div", { id: "executions-table" });
  const pager = h("div", { class: "pager" });
  main.append(
    h("div", { class: "titlebar" }, h("h1", {}, "Executions"), h("label", { class: "live" }, live, " live"), status),
    form,
    body,
    pager,
  );

  api("/workflows" + query({ limit: 200 }), { signal: ctx.signal })
    .then((page) => workflowList.replaceChildren(...page.items.map((w) => h("option", { value: w.id }))))
    .catch(() => {});

  const pageParams = (extra) => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(filters)) if (v) p.set(k, v);
    for (const [k, v] of extra) p.append(k, v);
    return "#/executions?" + p.toString();
  };

  async function load() {
    const page = await api("/executions" + query({ ...filters, cursor, limit: 25 }), { signal: ctx.signal });
    ctx.ok();
    body.replaceChildren(
      page.items.length
        ? table(["Execution", "Workflow", "Status", "Started by", "Created", "Duration", "Principal"], page.items.map(row), { class: "list", id: "executions" })
        : empty("No executions match."),
    );
    pager.replaceChildren();
    if (back.length || cursor) {
      const previous = back.slice(0, -1).map((c) => ["back", c]);
      const last = back[back.length - 1];
      pager.append(h("a", { href: pageParams(last ? [...previous, ["cursor", last]] : previous), class: "button secondary" }, "← Newer"));
    }
    if (page.nextCursor) {
      const trail = [...back.map((c) => ["back", c]), ...(cursor ? [["back", cursor]] : [])];
      pager.append(h("a", { href: pageParams([...trail, ["cursor", page.nextCursor]]), class: "button", id: "next-page" }, "Older →"));
    }
    status.textContent = "updated " + new Date().toLocaleTimeString(undefined, { hour12: false });
  }

  await load().catch(ctx.fail);
  // The read returned, so that the next starts only once it has answered (ctx.every): on a slow API
  // they piled up, one every 2 s, each holding one of the browser's six connections to the host.
  ctx.every(REFRESH_MS, () => (live.checked ? load().catch(ctx.fail) : undefined));
}
