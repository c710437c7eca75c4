// Sums the vitest JSON reports every package wrote during `npm test` and prints one closing line
// ("Tests: N passed, N failed, N skipped"); exits non-zero when any test failed or none ran.
import { existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";

const repo = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..");
const clean = process.argv.includes("--clean");
let passed = 0,
  failed = 0,
  skipped = 0,
  suites = 0;
for (const group of ["packages", "tools", "examples", "apps"]) {
  const dir = join(repo, group);
  if (!existsSync(dir)) continue;
  for (const name of readdirSync(dir)) {
    const f = join(dir, name, ".vitest-results.json");
    if (!existsSync(f)) continue;
    if (clean) {
      rmSync(f);
      continue;
    }
    const r = JSON.parse(readFileSync(f, "utf8"));
    suites++;
    passed += r.numPassedTests ?? 0;
    failed += r.numFailedTests ?? 0;
    skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    console.log(
      `${group}/${name}: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests ?? 0} skipped`,
    );
  }
}
if (clean) process.exit(0);
console.log(`Tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
if (failed > 0 || passed === 0 || suites === 0) process.exit(1);
