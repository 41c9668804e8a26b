// The console's shell: hash routes, the credentials form, the problem banner, and each view's
// lifetime (its timers and streams end when another view opens).

import { api, credentials, ApiError } from "./api.js";
import { h, who, time } from "./dom.js";
import * as executions from "./views/executions.js";
import * as execution from "./views/execution.js";
import * as workflows from "./views/workflows.js";
import * as workflow from "./views/workflow.js";
import * as deadLetters from "./views/dead-letters.js";
import * as waiting from "./views/waiting.js";
import * as triggers from "./views/triggers.js";
import * as triggerHistory from "./views/trigger-history.js";
import * as workers from "./views/workers.js";

const main = document.getElementById("main");
const banner = document.getElementById("problem");

const ROUTES = [
  [/^executions\/([^/]+)$/, execution, "executions"],
  [/^executions$/, executions, "executions"],
  [/^workflows\/([^/]+)$/, workflow, "workflows"],
  [/^workflows$/, workflows, "workflows"],
  [/^dead-letters$/, deadLetters, "dead-letters"],
  [/^waiting$/, waiting, "waiting"],
  [/^triggers\/([^/]+)\/(deliveries|ticks)$/, triggerHistory, "triggers"],
  [/^triggers$/, triggers, "triggers"],
  [/^workers$/, workers, "workers"],
];

// A sticky problem (what the sign-in form refused) stays until the form takes new values: a page's
// next successful refresh cleared it before it could be read (a review: on Executions, within 2 s).
export function showProblem(error, { sticky = false } = {}) {
  banner.replaceChildren();
  banner.dataset.sticky = sticky ? "1" : "";
  if (error instanceof ApiError) {
    banner.append(
      h("strong", {}, error.status + " " + error.title),
      " ",
      h("span", { class: "detail" }, error.message),
      error.problem && error.problem.code ? h("code", {}, error.problem.code) : "",
      error.hint ? h("div", { class: "hint" }, error.hint) : "",
    );
    banner.dataset.status = String(error.status);
  } else {
    banner.append(h("strong", {}, "Error"), " ", String((error && error.message) || error));
    banner.dataset.status = "";
  }
  banner.hidden = false;
}

export function clearProblem({ sticky = false } = {}) {
  if (banner.dataset.sticky === "1" && !sticky) return;
  banner.hidden = true;
  banner.replaceChildren();
  banner.dataset.sticky = "";
}

let current = null;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, search] = raw.split("?");
  return { path: path || "executions", params: new URLSearchParams(search || "") };
}

function makeContext() {
  const controller = new AbortController();
  const cleanups = [];
  return {
    signal: controller.signal,
    get alive() {
      return !controller.signal.aborted;
    },
    fail(error) {
      if (error && error.name === "AbortError") return;
      if (!controller.signal.aborted) showProblem(error);
    },
    ok: clearProblem,
    // fn again `ms` after its last call has settled: one at a time (a slow API got overlapping
    // loads, answered out of order), and not while the tab is hidden.
    every(ms, fn) {
      let timer = null;
      const tick = async () => {
        if (controller.signal.aborted) return;
        if (document.visibilityState !== "hidden") {
          try {
            await fn();
          } catch (error) {
            console.warn("a refresh failed", error);
          }
        }
        if (!controller.signal.aborted) timer = setTimeout(tick, ms);
      };
      timer = setTimeout(tick, ms);
      cleanups.push(() => clearTimeout(timer));
    },
    onCleanup(fn) {
      cleanups.push(fn);
    },
    dispose() {
      controller.abort();
      cleanups.forEach((fn) => fn());
    },
  };
}

async function route() {
  if (current) current.dispose();
  clearProblem();
  const { path, params } = parseHash();
  let found = null;
  for (const [pattern, view, section] of ROUTES) {
    const match = path.match(pattern);
    if (match) {
      try {
        found = { view, section, args: match.slice(1).map(decodeURIComponent) };
        // "." and ".." would go into API paths as they are (encodeURIComponent leaves them), and
        // the browser resolves them: #/workflows/.. read GET /api/v1/. No id is either.
        if (found.args.some((arg) => arg === "." || arg === "..")) found = null;
      } catch {
        found = null; // a malformed escape (#/executions/%E0): no such page
      }
      break;
    }
  }
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", Boolean(found) && a.dataset.section === found.section);
  }
  const ctx = makeContext();
  current = ctx;
  main.replaceChildren();
  if (!found) {
    main.append(h("h1", {}, "Not found"), h("p", {}, "No page here. "), h("a", { href: "#/executions" }, "Executions"));
    return;
  }
  try {
    await found.view.render(main, { args: found.args, params }, ctx);
  } catch (error) {
    ctx.fail(error);
  }
}

// Who the console calls as, as the server resolved the credentials (GET /api/v1/whoami): in strict
// mode the token's subject, tenant and roles were shown nowhere.
async function showWhoami() {
  const box = document.getElementById("whoami");
  try {
    const me = await api("/whoami");
    const until = me.validUntil ? ", token valid until " + time(me.validUntil) : "";
    box.replaceChildren("as ", h("strong", {}, who(me.principalId)), " · ", me.tenant, " · ", h("span", { class: "roles" }, me.roles.length ? me.roles.join(", ") : "no roles"));
    box.title = me.authMode + " auth mode" + until;
    box.dataset.principal = me.principalId || "";
  } catch (error) {
    const status = error instanceof ApiError ? error.status : 0;
    box.replaceChildren(status === 401 ? "not signed in" : status === 403 ? "signed in, without a role" : "");
    box.title = error instanceof ApiError ? error.status + " " + error.message : String((error && error.message) || error);
    box.dataset.principal = "";
  }
}

function setupAuth() {
  const form = document.getElementById("auth");
  const fields = {
    token: document.getElementById("auth-token"),
    principal: document.getElementById("auth-principal"),
    tenant: document.getElementById("auth-tenant"),
  };
  for (const [name, input] of Object.entries(fields)) input.value = credentials.get(name);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    // A browser sends a header's value as ISO-8859-1 (fetch refuses other characters outright), and
    // the API reads header values as UTF-8: a name with any non-ASCII letter ("José") was refused on
    // every request, or made fetch throw. Said here instead, and nothing kept.
    for (const [name, input] of Object.entries(fields)) {
      const bad = [...input.value.trim()].find((c) => c < " " || c > "~");
      if (bad !== undefined) {
        showProblem(new Error("The " + name + " field can hold only ASCII characters (a browser cannot send " + JSON.stringify(bad) + " in a header): use a token, or the CLI, for such a name."), { sticky: true });
        return;
      }
    }
    // A token pasted with its scheme ("Bearer eyJ…", as an Authorization header shows it) was sent as
    // "Bearer Bearer eyJ…" and refused as malformed.
    fields.token.value = fields.token.value.trim().replace(/^bearer\s+/i, "");
    for (const [name, input] of Object.entries(fields)) credentials.set(name, input.value.trim());
    clearProblem({ sticky: true });
    showWhoami();
    route();
  });
  showWhoami();
}

export function navigate(path, params) {
  const search = params ? params.toString() : "";
  const next = "#/" + path + (search ? "?" + search : "");
  if (location.hash === next) route();
  else location.hash = next;
}

// Every module loaded: the next failed load is tried again from the start (boot.js).
sessionStorage.removeItem("dw.console.reloads");
setupAuth();
window.addEventListener("hashchange", route);
route();
