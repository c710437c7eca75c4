// Runs every benchmark of the monorepo (packages/*/bench/*.bench.ts), each in its own process,
// then writes benchmarks/results/SUMMARY.md listing every suite's JSON and chart.
//   npm run bench                       all suites
//   npm run bench -- quant-kernels      only suites whose path contains the word
//   INT21_BENCH_QUICK=1 npm run bench   smoke mode (tiny sizes; what CI runs)
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { resultsDir } from "@int21/bench-utils";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const filters = process.argv.slice(2);
const files: string[] = [];
for (const pkg of readdirSync(join(repo, "packages")).sort()) {
  const dir = join(repo, "packages", pkg, "bench");
  if (!existsSync(dir)) continue;
  for (const f of readdirSync(dir).sort()) if (f.endsWith(".bench.ts")) files.push(join(dir, f));
}
const selected = files.filter((f) => filters.every((w) => f.includes(w)));
const out = resultsDir();
mkdirSync(out, { recursive: true });
const tsx = join(repo, "node_modules", ".bin", "tsx");
const failed: string[] = [];
for (const f of selected) {
  const rel = relative(repo, f);
  console.log(`\n=== ${rel}`);
  const t0 = performance.now();
  const r = spawnSync(tsx, [f], {
    stdio: "inherit",
    env: { ...process.env, INT21_BENCH_OUT: out },
    cwd: dirname(f),
  });
  console.log(`=== ${rel}: exit ${r.status} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  if (r.status !== 0) failed.push(rel);
}
const jsons = readdirSync(out)
  .filter((f) => f.endsWith(".json"))
  .sort();
let md = `# int21 benchmark results\n\nWritten by \`npm run bench\` on ${new Date().toISOString()}${process.env.INT21_BENCH_QUICK === "1" ? " (quick mode: tiny sizes, not representative)" : ""}.\n\n`;
for (const j of jsons) {
  const data = JSON.parse(readFileSync(join(out, j), "utf8")) as {
    suite: string;
    rows: Record<string, unknown>[];
    notes: string[];
  };
  md += `## ${data.suite}\n\n`;
  const keys = [...new Set(data.rows.flatMap((r) => Object.keys(r)))];
  md += `| ${keys.join(" | ")} |\n| ${keys.map(() => "---").join(" | ")} |\n`;
  for (const r of data.rows) md += `| ${keys.map((k) => fmt(r[k])).join(" | ")} |\n`;
  for (const n of data.notes) md += `\n${n}\n`;
  if (existsSync(join(out, j.replace(/\.json$/, ".svg"))))
    md += `\n![${data.suite}](${j.replace(/\.json$/, ".svg")})\n`;
  md += "\n";
}
writeFileSync(join(out, "SUMMARY.md"), md);
console.log(
  `\n${selected.length - failed.length}/${selected.length} benchmark suites ran; results in ${out}`,
);
if (failed.length) {
  console.error(`failed: ${failed.join(", ")}`);
  process.exit(1);
}

function fmt(v: unknown): string {
  if (typeof v !== "number") return String(v ?? "");
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a >= 1e6 ? v.toExponential(3) : a >= 100 ? v.toFixed(1) : a >= 1 ? v.toFixed(3) : v.toPrecision(3);
}
