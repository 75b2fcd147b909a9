// Parse each file given with Mermaid's own parser; print "ok FILE TYPE" or "error FILE: ...".
// Exits 1 if any file does not parse. Mermaid needs a DOM, which jsdom provides.
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

let failed = 0;
for (const file of process.argv.slice(2)) {
  try {
    const result = await mermaid.parse(readFileSync(file, "utf8"));
    console.log(`ok ${file} ${result.diagramType}`);
  } catch (error) {
    failed += 1;
    console.log(`error ${file}: ${error.message ?? error}`);
  }
}
process.exit(failed ? 1 : 0);
