// Measurement (not in CI): a 7B-shape INT2 EMEF step in the studio's tab. Builds and serves the app, opens it in
// headless Chromium, and presses "Measure" (worker.ts's measure7b: synthetic LLaMA-2-7B-shape weights generated in
// the worker — INT2 g64 projections and classifier, INT8 embedding — then rank-r LoRA on every projection and
// AdamW steps on one row of `seq` tokens). While it runs, the resident memory (RSS) of every Chromium process
// is sampled from /proc; the page reports its own time, wasm memory and autograd's ledger.
//
//   npm run measure:7b -w @int21/studio -- [layers=2] [steps=2] [seq=32] [rank=8]
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { build, preview } from "vite";

const [layers = "2", steps = "2", seq = "32", rank = "8"] = process.argv.slice(2);
const root = fileURLToPath(new URL("..", import.meta.url));
const configFile = join(root, "vite.config.ts");

/** RSS (bytes) of `pid` and all its descendants, from /proc. */
function treeRss(pid: number): number {
  const children = new Map<number, number[]>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(d));
      children.set(ppid, list);
    } catch {
      /* gone */
    }
  }
  let total = 0;
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop()!;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, "utf8"));
      if (m) total += Number(m[1]) * 1024;
    } catch {
      /* gone */
    }
    todo.push(...(children.get(p) ?? []));
  }
  return total;
}

// INT21_STUDIO_PREBUILT=1: serve the dist/ already built (`npm run build -w @int21/studio`)
if (process.env.INT21_STUDIO_PREBUILT !== "1") await build({ configFile, logLevel: "warn" });
const server = await preview({ configFile, logLevel: "warn", preview: { host: "127.0.0.1", port: 0 } });
const address = server.httpServer.address();
const port = typeof address === "object" && address ? address.port : 0;
const browser = await chromium.launch({
  executablePath: process.env.INT21_CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
// playwright-core launches Chromium as a child of this process: sample our descendants (Node's own share is
// measured before the page opens and subtracted)
const nodeRss = process.memoryUsage().rss;
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(0);
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForFunction(() => document.body.dataset.state === "ready");
  const idle = treeRss(process.pid) - nodeRss;
  await page.click("#measure-panel summary");
  for (const [id, v] of [
    ["m-layers", layers],
    ["m-steps", steps],
    ["m-seq", seq],
    ["m-rank", rank],
  ])
    await page.fill(`#${id}`, v);
  let peak = 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, treeRss(process.pid) - nodeRss);
  }, 250);
  const t0 = Date.now();
  await page.click("#measure");
  await page.waitForFunction(
    () => document.body.dataset.state !== "busy" && document.body.dataset.done !== undefined,
  );
  clearInterval(timer);
  const status = await page.textContent("#status");
  const out = await page.textContent("#measure-out");
  console.log(`status: ${status}`);
  console.log(out);
  console.log(
    `wall ${((Date.now() - t0) / 1000).toFixed(1)} s · Chromium RSS: idle ${(idle / 2 ** 20).toFixed(0)} MiB, ` +
      `peak ${(peak / 2 ** 20).toFixed(0)} MiB (all its processes, sampled every 250 ms)`,
  );
} finally {
  await browser.close();
  server.httpServer.close();
}
