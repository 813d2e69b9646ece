// Parse every ```mermaid block of the given markdown files with mermaid itself (in jsdom).
// Prints {"diagrams": N, "invalid": M} and exits 1 if any diagram does not parse.
import fs from "node:fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><html><body></body></html>");
for (const name of ["window", "document", "DOMParser", "navigator", "Element"]) {
  globalThis[name] = name === "window" ? dom.window : dom.window[name];
}
const mermaid = (await import("mermaid")).default;
mermaid.initialize({ startOnLoad: false });

let diagrams = 0;
let invalid = 0;
for (const file of process.argv.slice(2)) {
  const text = fs.readFileSync(file, "utf8");
  for (const match of text.matchAll(/```mermaid\n([\s\S]*?)```/g)) {
    diagrams += 1;
    try {
      await mermaid.parse(match[1]);
    } catch (error) {
      invalid += 1;
      console.error(`${file}: diagram ${diagrams}: ${String(error).slice(0, 400)}`);
    }
  }
}
console.log(JSON.stringify({ diagrams, invalid }));
process.exit(invalid ? 1 : 0);
