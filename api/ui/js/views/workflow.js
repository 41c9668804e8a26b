// One workflow: its versions with checksums, publish (any version: an older one rolls back),
// disable and enable, archive, its current graph, and a diff between two versions computed here from both definitions.

import { api, apiPages, query } from "../api.js";
import { h, badge, who, timeEl, table, confirmed } from "../dom.js";
import { drawGraph } from "../graph.js";
import { canonicalLines, diffLines } from "../diff.js";

const enc = encodeURIComponent;
// The versions shown, newest first (the API's largest page: every PUT adds a version); more are said, not cut silently.
const VERSIONS_SHOWN = 1000;

export async function render(main, { args }, ctx) {
  const id = args[0];
  const base = "/workflows/" + enc(id);
  const result = h("div", { class: "muted", id: "workflow-result" });
  const cache = new Map();

  async function definitionOf(version) {
    if (!cache.has(version)) cache.set(version, api(base + "/versions/" + version, { signal: ctx.signal }).then((v) => v.definition));
    return cache.get(version);
  }

  // `question`: asked first (what cannot be undone); none for what can be taken back (Disable, Enable).
  async function act(path, label, question) {
    if (question && !confirmed(question)) return;
    try {
      const w = await api(base + path, { method: "POST" });
      ctx.ok();
      result.textContent = label + ": " + w.status + (w.currentVersion ? " (current v" + w.currentVersion + ")" : "") + (w.isEnabled ? "" : ", disabled");
      await draw();
    } catch (error) {
      ctx.fail(error);
    }
  }

  // POST …/publish takes any version and makes it the current one (and the workflow Active). A
  // rollback is that for a version older than the current one that ran before; a newer one (a draft,
  // or the version a rollback left) is published. The current version has nothing to roll back to:
  // it runs already, or (archived) is published again to run again. "Roll back to" was offered on
  // newer versions, and on the archived current one.
  function publishButton(workflow, v) {
    const current = workflow.currentVersion;
    if (v.version === current && workflow.status === "Active") return "";
    const back = current != null && v.version < current && Boolean(v.publishedAt);
    const question =
      v.version === current
        ? "Publish v" + v.version + " of " + id + " again? The archived workflow becomes Active: new executions run v" + v.version + "."
        : (back ? "Roll " + id + " back to v" + v.version : "Publish v" + v.version + " of " + id) + "? New executions run v" + v.version + (current ? " instead of v" + current : "") + ".";
    const label = back ? "Roll back to" : "Publish";
    return h("button", { class: "small", "data-action": back ? "rollback" : "publish", onclick: () => act("/publish?version=" + v.version, label.toLowerCase() + " v" + v.version, question) }, label);
  }

  async function draw() {
    const [workflow, listed] = await Promise.all([
      api(base, { signal: ctx.signal }),
      // The API answers 100 at a time unless asked for more.
      apiPages(base + "/versions" + query({ limit: VERSIONS_SHOWN }), { signal: ctx.signal, most: VERSIONS_SHOWN }),
    ]);
    const shown = [...listed.items];
    // The current version is listed even when it is older than the newest VERSIONS_SHOWN: it is the
    // one to compare a draft with, and to roll back to.
    if (workflow.currentVersion && !shown.some((v) => v.version === workflow.currentVersion)) {
      const current = await api(base + "/versions/" + workflow.currentVersion, { signal: ctx.signal });
      cache.set(current.version, Promise.resolve(current.definition));
      shown.push(current);
    }
    const ordered = shown.sort((a, b) => b.version - a.version);
    const rows = ordered.map((v) =>
      h(
        "tr",
        { "data-version": String(v.version) },
        h("td", { class: "num" }, "v" + v.version, v.version === workflow.currentVersion ? h("span", { class: "badge s-current" }, "current") : ""),
        h("td", { class: "mono small" }, v.checksum),
        h("td", {}, timeEl(v.createdAt), " ", who(v.createdBy)),
        h("td", {}, v.publishedAt ? [timeEl(v.publishedAt), " ", who(v.publishedBy)] : h("span", { class: "muted" }, "never")),
        h("td", {}, publishButton(workflow, v)),
      ),
    );
    const pick = (name, value) =>
      h("select", { id: name }, ordered.map((v) => h("option", { value: String(v.version), selected: v.version === value }, "v" + v.version)));
    const latest = ordered[0] ? ordered[0].version : 1;
    const from = pick("diff-from", ordered[1] ? ordered[1].version : latest);
    const to = pick("diff-to", latest);
    const diffBox = h("div", { id: "diff" });
    async function showDiff() {
      const [a, b] = await Promise.all([definitionOf(Number(from.value)), definitionOf(Number(to.value))]);
      const lines = diffLines(canonicalLines(a), canonicalLines(b));
      const changed = lines.filter((l) => l.op !== " ").length;
      diffBox.replaceChildren(
        h("p", { class: "muted" }, changed ? changed + " changed lines (keys sorted)" : "No difference."),
        h("pre", { class: "diff" }, lines.map((l) => h("span", { class: "d" + (l.op === "+" ? "add" : l.op === "-" ? "del" : "same") }, l.op + " " + l.text + "\n"))),
      );
    }
    from.addEventListener("change", () => showDiff().catch(ctx.fail));
    to.addEventListener("change", () => showDiff().catch(ctx.fail));
    // A definition has no run state: its nodes show their kind, not "Pending".
    const graph = drawGraph(workflow.definition || { nodes: [] }, null);
    main.replaceChildren(
      h("div", { class: "titlebar" }, h("h1", {}, workflow.displayName || workflow.id), badge(workflow.status)),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Id"),
        h("dd", { class: "mono" }, workflow.id),
        h("dt", {}, "Current"),
        // A Draft has no current version: the checksum (and graph) the API gives is its latest's.
        h("dd", {}, workflow.currentVersion ? ["v" + workflow.currentVersion + " ", h("span", { class: "mono small" }, workflow.checksum || "")] : "none (never published)"),
        h("dt", {}, "Created by"),
        h("dd", {}, who(workflow.createdBy)),
        workflow.description ? [h("dt", {}, "Description"), h("dd", {}, workflow.description)] : [],
        h("dt", {}, "Enabled"),
        h("dd", { id: "enabled" }, workflow.isEnabled ? "yes" : ["no: new executions are refused (disabled ", workflow.disabledAt ? timeEl(workflow.disabledAt) : "", " by ", who(workflow.disabledBy), ")"]),
        h("dt", {}, "Limits"),
        h("dd", {}, "max concurrent " + (workflow.maxConcurrentExecutions ?? "none") + ", per minute " + (workflow.rateLimitPerMinute ?? "none")),
      ),
      h(
        "div",
        { class: "actions" },
        workflow.isEnabled
          ? h("button", { class: "secondary", id: "disable", title: "Refuse new executions (schedules and webhooks included) until it is enabled; running ones go on", onclick: () => act("/disable", "disable", null) }, "Disable")
          : h("button", { id: "enable", onclick: () => act("/enable", "enable", null) }, "Enable"),
        workflow.status === "Archived" ? "" : h("button", { class: "danger", id: "archive", onclick: () => act("/archive", "archive", "Archive workflow " + id + "? It takes no new executions.") }, "Archive"),
        h("a", { class: "button secondary", href: "#/executions?workflowId=" + enc(workflow.id) }, "Executions"),
      ),
      result,
      h("section", {}, h("h2", {}, workflow.currentVersion ? "Graph (current version)" : "Graph (v" + latest + ", the latest: not published)"), h("div", { class: "graph-scroll" }, graph.svg)),
      h(
        "section",
        {},
        h("h2", {}, "Versions"),
        table(["Version", "Checksum", "Created", "Published", ""], rows, { class: "list", id: "versions" }),
        listed.more ? h("p", { class: "muted more" }, "More versions than the " + VERSIONS_SHOWN + " newest shown (and the current one): GET /api/v1/workflows/" + id + "/versions lists them all, a page at a time (its Link header names the next).") : "",
      ),
      h("section", {}, h("h2", {}, "Diff"), h("div", { class: "filters" }, h("label", {}, "From ", from), h("label", {}, "to ", to)), diffBox),
    );
    await showDiff();
  }

  await draw();
}
