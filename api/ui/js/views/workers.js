// Live workers: who holds this tenant's runs (leases), and Procrastinate's fetch loops with their
// heartbeats. Refreshed every few seconds.

import { api } from "../api.js";
import { h, badge, timeEl, table, empty } from "../dom.js";

export async function render(main, _route, ctx) {
  const body = h("div", { id: "workers" });
  main.append(h("div", { class: "titlebar" }, h("h1", {}, "Workers")), body);
  async function load() {
    const data = await api("/workers", { signal: ctx.signal });
    ctx.ok();
    body.replaceChildren(
      h("h2", {}, "Holding runs now"),
      data.leases.length
        ? table(
            ["Worker", "Runs held", "Nodes running", "Oldest run started", "Lease until"],
            data.leases.map((l) => h("tr", {}, h("td", { class: "mono" }, l.workerId), h("td", { class: "num" }, String(l.runsHeld)), h("td", { class: "num" }, String(l.nodesRunning)), h("td", {}, timeEl(l.oldestRunStartedAt)), h("td", {}, timeEl(l.leaseExpiresAt)))),
            { class: "list", id: "leases" },
          )
        : empty("No worker holds a run of this tenant now."),
      h("h2", {}, "Fetch loops"),
      data.fetchLoops.length
        ? table(
            ["Loop", "Last heartbeat", "State", "Jobs of this tenant"],
            data.fetchLoops.map((f) => h("tr", {}, h("td", { class: "num" }, String(f.id)), h("td", {}, timeEl(f.lastHeartbeat)), h("td", {}, badge(f.alive ? "alive" : "stalled")), h("td", { class: "num" }, String(f.jobsDoing)))),
            { class: "list", id: "fetch-loops" },
          )
        : empty("No worker is registered: start one with `dataworkflows worker` (or `up`)."),
    );
  }
  // A first load that failed (a 503 while the database restarts) is retried like the others.
  await load().catch(ctx.fail);
  ctx.every(3000, () => load().catch(ctx.fail));
}
