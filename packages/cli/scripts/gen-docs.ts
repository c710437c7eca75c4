// Writes the CLI reference (every command's usage and options table, read from the commander definitions) into
// packages/cli/README.md between the cli-reference markers. `--check` only compares and exits 1 when the README
// is out of date. Run: `npm run docs -w @int21/cli` (or `-- --check`).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { writeFileAtomic } from "@int21/io";
import { COMMANDS } from "../src/cli";
import { commandDoc, renderCliReference, replaceGenerated } from "../src/cli-docs";

const readmePath = fileURLToPath(new URL("../README.md", import.meta.url));
const readme = readFileSync(readmePath, "utf8");
const docs = Object.entries(COMMANDS).map(([name, c]) => commandDoc(name, c.program()));
const updated = replaceGenerated(readme, renderCliReference(docs));
if (process.argv.includes("--check")) {
  if (updated !== readme) {
    process.stderr.write(`${readmePath} is out of date: run npm run docs -w @int21/cli\n`);
    process.exit(1);
  }
  process.stdout.write(`${readmePath} is up to date\n`);
} else if (updated === readme) {
  process.stdout.write(`${readmePath} is up to date\n`);
} else {
  await writeFileAtomic(readmePath, updated);
  process.stdout.write(`wrote the CLI reference into ${readmePath}\n`);
}
