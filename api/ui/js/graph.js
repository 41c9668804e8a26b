// The workflow drawn as an SVG graph: nodes placed in topological layers (longest path from the
// start, left to right), edges as curves. Each node's class carries its state, so CSS colours it.

import { s, visible } from "./dom.js";

const NODE_W = 168;
const NODE_H = 46;
const GAP_X = 64;
const GAP_Y = 22;
const PAD = 16;

// [{from, to, when, condition, implicit}] from a definition: its edges, or list order when it has none.
export function edgesOf(definition) {
  const nodes = (definition && definition.nodes) || [];
  const edges = [];
  for (const node of nodes) {
    for (const edge of node.edges || []) {
      edges.push({ from: node.id, to: edge.targetNode, when: edge.when || "success", condition: edge.condition });
    }
  }
  if (!edges.length) {
    for (let i = 1; i < nodes.length; i++) edges.push({ from: nodes[i - 1].id, to: nodes[i].id, implicit: true });
  }
  return edges;
}

// Layer of each node: the longest path to it (Kahn's order); nodes on a cycle or unreachable go last.
export function layers(definition) {
  const ids = ((definition && definition.nodes) || []).map((n) => n.id);
  const known = new Set(ids);
  const edges = edgesOf(definition).filter((e) => known.has(e.from) && known.has(e.to));
  const incoming = new Map(ids.map((id) => [id, 0]));
  const out = new Map(ids.map((id) => [id, []]));
  for (const e of edges) {
    incoming.set(e.to, incoming.get(e.to) + 1);
    out.get(e.from).push(e.to);
  }
  const layer = new Map();
  const queue = ids.filter((id) => incoming.get(id) === 0);
  for (const id of queue) layer.set(id, 0);
  while (queue.length) {
    const id = queue.shift();
    for (const next of out.get(id)) {
      layer.set(next, Math.max(layer.get(next) || 0, layer.get(id) + 1));
      incoming.set(next, incoming.get(next) - 1);
      if (incoming.get(next) === 0) queue.push(next);
    }
  }
  const deepest = Math.max(0, ...layer.values());
  for (const id of ids) if (!layer.has(id)) layer.set(id, deepest + 1);
  return { ids, edges, layer };
}

function kindOf(node) {
  return node.nodeType && node.nodeType !== "action" ? node.nodeType : node.actionType || "action";
}

function clip(text, max) {
  const value = String(text);
  return value.length > max ? value.slice(0, max - 1) + "…" : value;
}

// Draws the graph; returns {svg, update(states)} where states maps node id → node state. Until
// update is called the nodes have no state (a definition's graph has none: each node shows its kind).
export function drawGraph(definition, onSelect) {
  const { ids, edges, layer } = layers(definition);
  const byLayer = new Map();
  for (const id of ids) {
    const l = layer.get(id);
    if (!byLayer.has(l)) byLayer.set(l, []);
    byLayer.get(l).push(id);
  }
  const tallest = Math.max(1, ...[...byLayer.values()].map((c) => c.length));
  const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y;
  const pos = new Map();
  for (const [l, column] of byLayer) {
    const top = (height - (column.length * NODE_H + (column.length - 1) * GAP_Y)) / 2;
    column.forEach((id, i) => pos.set(id, { x: PAD + l * (NODE_W + GAP_X), y: top + i * (NODE_H + GAP_Y) }));
  }
  const width = PAD * 2 + (Math.max(0, ...layer.values()) + 1) * (NODE_W + GAP_X) - GAP_X;
  const svg = s("svg", {
    class: "graph",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": "workflow graph",
  });
  svg.append(
    s(
      "defs",
      {},
      s(
        "marker",
        { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto" },
        s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }),
      ),
    ),
  );
  for (const e of edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + NODE_W;
    const y1 = a.y + NODE_H / 2;
    const x2 = b.x;
    const y2 = b.y + NODE_H / 2;
    const mid = (x1 + x2) / 2;
    const cls = "edge when-" + (e.implicit ? "order" : String(e.when).replace(/[^a-z]/g, ""));
    const path = s("path", { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, class: cls, "marker-end": "url(#arrow)" });
    const tip = [e.implicit ? "list order" : e.when, e.condition ? "if " + e.condition : ""].filter(Boolean).join(" ");
    path.append(s("title", {}, `${e.from} → ${e.to}: ${tip}`));
    svg.append(path);
  }
  const nodes = new Map();
  const definitionNodes = new Map(((definition && definition.nodes) || []).map((n) => [n.id, n]));
  for (const id of ids) {
    const p = pos.get(id);
    const label = s("text", { x: 10, y: 19, class: "node-id" }, clip(id, 22));
    const kind = kindOf(definitionNodes.get(id) || {});
    const sub = s("text", { x: 10, y: 36, class: "node-sub" }, clip(kind, 26));
    const title = s("title", {}, `${id}: ${kind}`);
    const group = s(
      "g",
      { class: "node", transform: `translate(${p.x},${p.y})`, tabindex: "0", "data-node": id, role: "button" },
      title,
      s("rect", { width: NODE_W, height: NODE_H, rx: 6, ry: 6 }),
      label,
      sub,
    );
    group.addEventListener("click", () => onSelect && onSelect(id));
    group.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") onSelect && onSelect(id);
    });
    nodes.set(id, { group, sub, title, kind });
    svg.append(group);
  }
  function update(states, selected) {
    for (const [id, n] of nodes) {
      const st = states && states.get(id);
      const status = st ? st.status : "Pending";
      n.group.setAttribute("class", "node s-" + status.toLowerCase() + (id === selected ? " selected" : ""));
      n.group.dataset.status = status;
      const attempts = st && st.attempts ? " · #" + st.attempts : "";
      n.sub.textContent = visible(clip(status + attempts + " · " + n.kind, 26));
      n.title.textContent = visible(`${id}: ${status}${attempts}`);
    }
  }
  return { svg, update };
}
