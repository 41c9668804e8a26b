// Workflows: every workflow with its status and versions; links to each one and to its runs.

import { api, query } from "../api.js";
import { h, badge, who, timeEl, table, empty } from "../dom.js";

export async function render(main, { params }, ctx) {
  const status = params.get("status") || "";
  const cursor = params.get("cursor") || "";
  const filter = h(
    "select",
    { id: "workflow-status" },
    ["", "Draft", "Active", "Archived"].map((s) => h("option", { value: s, selected: s === status }, s || "any")),
  );
  filter.addEventListener("change", () => (location.hash = "#/workflows" + (filter.value ? "?status=" + encodeURIComponent(filter.value) : "")));
  main.append(h("div", { class: "titlebar" }, h("h1", {}, "Workflows"), h("label", {}, "Status ", filter)));
  const page = await api("/workflows" + query({ status, cursor, limit: 100 }), { signal: ctx.signal });
  main.append(
    page.items.length
      ? table(
          ["Workflow", "Name", "Status", "Current", "Latest", "Created", "By", "Runs"],
          page.items.map((w) =>
            h(
              "tr",
              { "data-workflow": w.id },
              h("td", {}, h("a", { href: "#/workflows/" + encodeURIComponent(w.id) }, w.id)),
              h("td", {}, w.displayName),
              h("td", {}, badge(w.status), w.isEnabled ? "" : h("span", { class: "muted" }, " disabled")),
              h("td", { class: "num" }, w.currentVersion == null ? "" : "v" + w.currentVersion),
              h("td", { class: "num" }, w.latestVersion == null ? "" : "v" + w.latestVersion),
              h("td", {}, timeEl(w.createdAt)),
              h("td", {}, who(w.createdBy)),
              h("td", {}, h("a", { href: "#/executions?workflowId=" + encodeURIComponent(w.id) }, "executions")),
            ),
          ),
          { class: "list", id: "workflows" },
        )
      : empty("No workflows."),
  );
  if (page.nextCursor) {
    const next = new URLSearchParams({ cursor: page.nextCursor });
    if (status) next.set("status", status);
    main.append(h("div", { class: "pager" }, h("a", { class: "button", href: "#/workflows?" + next }, "More →")));
  }
}
