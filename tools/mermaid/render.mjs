// Render Mermaid files in headless Chromium with the mermaid package, and measure the result.
//
//   node render.mjs [--screenshots DIR] FILE.mmd...
//
// Prints one JSON object per file, as a JSON array on stdout:
//   file, ok, error, type (the diagram type), nodes [{text, box}], labels [{text, edge, box}]
//   (edge labels), edges [{id, label, from, to}], texts (every other text: titles, axes,
//   tasks), and problems: render errors, console errors, refused requests, label boxes that
//   intersect, edges that run through a label or a state that is not their own, and edges
//   that cross. Boxes are {x, y, w, h} in CSS pixels. Exit code 0 when every file rendered;
//   layout problems are data for the caller to judge.
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, join } from "node:path";
import { guardedPage, withBrowser } from "./browser.mjs";

const require = createRequire(import.meta.url);
const MERMAID = require.resolve("mermaid/dist/mermaid.min.js");

const argv = process.argv.slice(2);
let shots = null;
if (argv[0] === "--screenshots") { shots = argv[1]; argv.splice(0, 2); mkdirSync(shots, { recursive: true }); }

// Runs in the page: render one diagram and measure it.
async function renderAndMeasure(text, n) {
  const host = document.getElementById("host");
  host.innerHTML = "";
  let type;
  try {
    const out = await window.mermaid.render(`d${n}`, text);
    host.innerHTML = out.svg;
    type = out.diagramType;
  } catch (err) {
    document.querySelectorAll(`#d${n}, #dd${n}`).forEach((e) => e.remove());
    return { ok: false, error: String(err.message || err).split("\n").join(" | ") };
  }
  const svg = host.querySelector("svg");
  // Natural size (Mermaid draws width=100% up to max-width): measure what a wide page shows.
  const vb = svg.viewBox && svg.viewBox.baseVal;
  if (vb && vb.width) { svg.style.width = `${vb.width}px`; svg.style.maxWidth = "none"; }
  const box = (el) => { const r = el.getBoundingClientRect(); return { x: r.x, y: r.y, w: r.width, h: r.height }; };
  const clean = (s) => (s || "").replace(/\s+/g, " ").trim();

  const nodes = [...svg.querySelectorAll("g.node")].map((g) => ({ el: g, text: clean(g.textContent), box: box(g) }));
  const labels = [];
  for (const g of svg.querySelectorAll("g.edgeLabel")) {
    const inner = g.querySelector("[data-id]");
    const t = clean(g.textContent);
    if (!t) continue;
    const fo = g.querySelector("foreignObject") || g.querySelector("text") || g;
    labels.push({ text: t, edge: inner ? inner.getAttribute("data-id") : null, box: box(fo) });
  }
  const inflate = (b, d) => ({ x: b.x - d, y: b.y - d, w: b.w + 2 * d, h: b.h + 2 * d });
  const inside = (p, b) => p.x > b.x && p.x < b.x + b.w && p.y > b.y && p.y < b.y + b.h;
  const nodeAt = (p) => {
    let best = null;
    for (const nd of nodes) if (inside(p, inflate(nd.box, 8))) {
      const c = { x: nd.box.x + nd.box.w / 2, y: nd.box.y + nd.box.h / 2 };
      const d = Math.hypot(p.x - c.x, p.y - c.y);
      if (!best || d < best.d) best = { nd, d };
    }
    return best ? best.nd : null;
  };
  const edges = [];
  for (const path of svg.querySelectorAll("path[data-edge='true'], path.transition, path.flowchart-link")) {
    if (edges.some((e) => e.el === path)) continue;
    const total = path.getTotalLength();
    const ctm = path.getScreenCTM();
    const pts = [];
    const steps = Math.max(2, Math.ceil(total / 2));
    for (let i = 0; i <= steps; i++) {
      const q = path.getPointAtLength((total * i) / steps);
      const s = new DOMPoint(q.x, q.y).matrixTransform(ctm);
      pts.push({ x: s.x, y: s.y });
    }
    const id = path.getAttribute("data-id") || path.id;
    const label = labels.find((l) => l.edge === id) || null;
    edges.push({ el: path, id, label, pts, from: nodeAt(pts[0]), to: nodeAt(pts[pts.length - 1]) });
  }
  const texts = [];
  for (const t of svg.querySelectorAll("text")) {
    if (t.closest("g.node, g.edgeLabel")) continue;
    const s = clean(t.textContent);
    if (s && t.getBBox().width > 0) texts.push({ text: s, box: box(t) });
  }

  const problems = [];
  const overlap = (a, b) => Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x) > 1 &&
    Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y) > 1;
  const title = [...svg.querySelectorAll("[class$='TitleText'], .titleText")].map((t) => ({ text: clean(t.textContent), box: box(t) }));
  const boxes = [
    ...nodes.filter((nd) => nd.text).map((nd) => ({ what: `state '${nd.text}'`, box: nd.box })),
    ...labels.map((l) => ({ what: `label '${l.text}'`, box: l.box })),
    ...title.map((t) => ({ what: `title '${t.text}'`, box: t.box })),
  ];
  for (let i = 0; i < boxes.length; i++)
    for (let j = i + 1; j < boxes.length; j++)
      if (overlap(boxes[i].box, boxes[j].box)) problems.push(`overlap: ${boxes[i].what} and ${boxes[j].what}`);
  if (!nodes.length) {  // not a graph (gantt, xychart): no text may sit on other text
    for (let i = 0; i < texts.length; i++)
      for (let j = i + 1; j < texts.length; j++)
        if (overlap(texts[i].box, texts[j].box)) problems.push(`overlap: text '${texts[i].text}' and '${texts[j].text}'`);
  }
  const name = (e) => (e.label ? `'${e.label.text}'` : e.id);
  for (const e of edges) {
    for (const l of labels) {
      if (l === e.label) continue;
      const b = inflate(l.box, -1);
      if (e.pts.some((p) => inside(p, b))) problems.push(`edge ${name(e)} runs through label '${l.text}'`);
    }
    for (const nd of nodes) {
      if (nd === e.from || nd === e.to) continue;
      const b = inflate(nd.box, -1);
      if (e.pts.some((p) => inside(p, b))) problems.push(`edge ${name(e)} runs through state '${nd.text}'`);
    }
  }
  const cross = (p1, p2, p3, p4) => {
    const d = (a, b, c) => (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x);
    return d(p1, p2, p3) * d(p1, p2, p4) < 0 && d(p3, p4, p1) * d(p3, p4, p2) < 0;
  };
  const near = (p, nd) => nd && inside(p, inflate(nd.box, 12));
  for (let i = 0; i < edges.length; i++)
    for (let j = i + 1; j < edges.length; j++) {
      const a = edges[i], b = edges[j];
      const shared = [a.from, a.to].filter((x) => x && (x === b.from || x === b.to));
      let hit = false;
      for (let s = 1; s < a.pts.length && !hit; s++) {
        if (shared.some((nd) => near(a.pts[s], nd))) continue;
        for (let t = 1; t < b.pts.length && !hit; t++)
          if (cross(a.pts[s - 1], a.pts[s], b.pts[t - 1], b.pts[t])) hit = true;
      }
      if (hit) problems.push(`crossing: edges ${name(a)} and ${name(b)}`);
    }
  const strip = (b) => ({ x: +b.x.toFixed(1), y: +b.y.toFixed(1), w: +b.w.toFixed(1), h: +b.h.toFixed(1) });
  return {
    ok: true, type,
    size: strip(box(svg)),
    nodes: nodes.map((nd) => ({ text: nd.text, box: strip(nd.box) })),
    labels: labels.map((l) => ({ text: l.text, edge: l.edge, box: strip(l.box) })),
    edges: edges.map((e) => ({ id: e.id, label: e.label ? e.label.text : null,
                               from: e.from ? e.from.text : null, to: e.to ? e.to.text : null })),
    texts: [...title, ...texts].map((t) => ({ text: t.text, box: strip(t.box) })),
    problems,
  };
}

const results = await withBrowser(async (browser) => {
  const { page, log } = await guardedPage(browser);
  await page.setViewport({ width: 1600, height: 1200 });
  await page.setContent("<!doctype html><html><head><meta charset='utf-8'></head>" +
    "<body style='margin:0'><div id='host' style='display:inline-block'></div></body></html>");
  await page.addScriptTag({ content: readFileSync(MERMAID, "utf8") });
  await page.evaluate(() => window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict" }));
  const out = [];
  for (const [n, file] of argv.entries()) {
    log.errors.length = 0;
    log.blocked.length = 0;
    const text = readFileSync(file, "utf8");
    const r = await page.evaluate(renderAndMeasure, text, n);
    r.file = file;
    r.problems = [...(r.problems || []), ...log.errors.map((e) => `console error: ${e}`),
                  ...log.blocked.map((u) => `network request refused: ${u}`)];
    if (r.ok && shots) {
      const el = await page.$("#host");
      await el.screenshot({ path: join(shots, basename(file).replace(/\.[^.]*$/, "") + ".png") });
    }
    out.push(r);
  }
  return out;
});
// Set the exit code and let Node drain stdout (process.exit() would cut a piped 64 KiB).
process.exitCode = results.every((r) => r.ok) ? 0 : 1;
process.stdout.write(JSON.stringify(results, null, 1) + "\n");
