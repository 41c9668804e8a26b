// The console's client for /api/v1: the caller's credentials from sessionStorage (a strict-mode
// bearer token, or the loose-mode principal and tenant headers), and problem details as errors.

const store = window.sessionStorage;
const KEYS = { token: "dw.console.token", principal: "dw.console.principal", tenant: "dw.console.tenant" };

export const credentials = {
  get(name) {
    return store.getItem(KEYS[name]) || "";
  },
  set(name, value) {
    if (value) store.setItem(KEYS[name], value);
    else store.removeItem(KEYS[name]);
  },
};

export function authHeaders(headers) {
  const token = credentials.get("token");
  if (token) headers["Authorization"] = "Bearer " + token;
  const principal = credentials.get("principal");
  if (principal) headers["X-Principal-Id"] = principal;
  const tenant = credentials.get("tenant");
  if (tenant) headers["X-Tenant-Id"] = tenant;
  return headers;
}

export class ApiError extends Error {
  constructor(status, problem, authenticate) {
    const detail = problem && typeof problem === "object" ? problem.detail || problem.title : problem;
    super(detail ? String(detail) : "HTTP " + status);
    this.status = status;
    this.problem = problem && typeof problem === "object" ? problem : null;
    this.authenticate = authenticate;
  }

  get title() {
    return (this.problem && this.problem.title) || "HTTP " + this.status;
  }

  // What to do about it, for the errors a person can fix from the page.
  get hint() {
    if (this.status === 401) return "Paste a bearer token in the Token field (strict mode), or a principal (loose mode).";
    if (this.status === 403) {
      const role = this.problem && this.problem.requiredRole;
      return role ? "Your token lacks the role “" + role + "”." : "You may not do this.";
    }
    if (this.status === 429) return "Too many requests: wait a moment.";
    if (this.status === 503) return "The database is unreachable; the console retries.";
    return "";
  }
}

// A fetch that got no answer. The browser's words ("Failed to fetch", "NetworkError…") said nothing
// of what happened.
function unanswered(error) {
  if (error.name === "AbortError") return error;
  return new Error("the API did not answer (" + error.message + "): it may be restarting or unreachable; the page tries again");
}

async function send(url, options) {
  const headers = authHeaders({ Accept: "application/json" });
  let body;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(url, {
      method: options.method || "GET",
      headers,
      body,
      signal: options.signal,
      cache: "no-store",
    });
  } catch (error) {
    throw unanswered(error);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) throw new ApiError(response.status, data, response.headers.get("WWW-Authenticate"));
  return { data, response };
}

export async function api(path, options = {}) {
  return (await send("/api/v1" + path, options)).data;
}

// The target of a Link header's rel="next" (RFC 8288), or null: the next page of a bare list.
export function nextLink(header) {
  for (const part of (header || "").split(",")) {
    const match = /^\s*<([^>]*)>(.*)$/.exec(part);
    if (match && /;\s*rel="?next"?\s*(;|$)/.test(match[2])) return match[1];
  }
  return null;
}

// A bare list that pages through Link headers (a workflow's versions, the triggers, ...), read page
// after page until `most` rows: { items, more } (more: there were more than `most`). One request
// read only the first page: the rest were left out without a word.
export async function apiPages(path, options = {}) {
  const most = options.most ?? Infinity;
  const items = [];
  let url = "/api/v1" + path;
  while (url && items.length < most) {
    const page = await readPage(url, options);
    items.push(...page.items);
    url = page.next;
  }
  return { items: items.slice(0, most), more: Boolean(url) || items.length > most };
}

// One page of a bare list, for a list shown a page at a time with "More" (a trigger's deliveries
// and ticks): { items, next }, next the URL of the next page (the Link header's rel="next", as
// the server wrote it), or null on the last page. `path` is under /api/v1; pass `next` back to
// apiNextPage as it came.
export async function apiPage(path, options = {}) {
  return readPage("/api/v1" + path, options);
}

export async function apiNextPage(next, options = {}) {
  return readPage(next, options);
}

async function readPage(url, options) {
  const { data, response } = await send(url, options);
  return { items: Array.isArray(data) ? data : (data && data.items) || [], next: nextLink(response.headers.get("Link")) };
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    // A list is the parameter once per value (?executionId=a&executionId=b).
    if (Array.isArray(value)) value.forEach((item) => search.append(key, String(item)));
    else if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? "?" + text : "";
}

// The execution's log as a live stream. EventSource cannot send an Authorization header, so this
// reads the server-sent events from fetch()'s body. Resolves with the last event id when the
// server ends the stream (the run ended, or the server is stopping). onOpen, if given, is called
// once the server has taken the stream (a 200), before any event.
export async function streamEvents(executionId, after, onEvent, signal, onOpen) {
  const headers = authHeaders({ Accept: "text/event-stream" });
  let response;
  try {
    response = await fetch("/api/v1/executions/" + encodeURIComponent(executionId) + "/events" + query({ after }), { headers, signal, cache: "no-store" });
  } catch (error) {
    // Reconnecting while the API is away: said as send() says it (the banner read "Failed to fetch").
    throw unanswered(error);
  }
  if (!response.ok) {
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      /* not JSON */
    }
    throw new ApiError(response.status, problem, response.headers.get("WWW-Authenticate"));
  }
  if (onOpen) onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let last = after;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return last;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        else if (line.startsWith("id:")) last = Number(line.slice(3).trim()) || last;
      }
      if (data.length) {
        try {
          onEvent(JSON.parse(data.join("\n")));
        } catch (error) {
          console.warn("unreadable event", error);
        }
      }
    }
  }
}
