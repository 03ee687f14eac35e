// Parse Mermaid text (stdin, or files given as arguments) with Mermaid's own parser.
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><html><body></body></html>", { pretendToBeVisual: true });
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

const inputs = process.argv.length > 2
  ? process.argv.slice(2).map((f) => [f, readFileSync(f, "utf8")])
  : [["<stdin>", readFileSync(0, "utf8")]];
let failed = 0;
for (const [name, text] of inputs) {
  try {
    const result = await mermaid.parse(text);
    console.log(`${name}: ok (${result.diagramType})`);
  } catch (err) {
    failed += 1;
    console.log(`${name}: ${String(err.message || err).split("\n").join(" | ")}`);
  }
}
process.exit(failed ? 1 : 0);
