// Measurement (not in CI: minutes per step at full depth): a 7B-shape INT2 EMEF step in the studio's tab. Builds
// and serves the app, opens it in headless Chromium and runs the Measure panel (src/measure7b.ts in the worker:
// synthetic LLaMA-2-7B-shape weights generated in the tab straight into packed words — INT2 g64 projections and
// classifier, INT8 g64 embedding — a rank-r LoRA on q_proj / v_proj, EMEF steps with per-layer checkpointing on
// one row of `seq` tokens). Memory, from the page: the wasm memory's size (its high-water mark) and what is in use,
// autograd's ledger peak, the worker's JS heap (performance.memory) and the whole tab
// (performance.measureUserAgentSpecificMemory); from /proc: the peak RSS (VmHWM) of Chromium's renderer process,
// which runs the page and its worker, and the RSS of all Chromium processes summed, sampled every 250 ms.
// Writes results/7b-step.json (INT21_MEASURE_OUT to write elsewhere).
//
//   npm run measure:7b -w @int21/studio -- [layers=32] [steps=2] [seq=64] [rank=8] [resident=0|all]
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { build, preview } from "vite";

const [layers = "32", steps = "2", seq = "64", rank = "8", resident = "0"] = process.argv.slice(2);
if (resident !== "0" && resident !== "all")
  throw new Error(`measure-7b: resident must be 0 or all, got ${resident}`);
const root = fileURLToPath(new URL("..", import.meta.url));
const configFile = join(root, "vite.config.ts");
const outFile = process.env.INT21_MEASURE_OUT ?? join(root, "results", "7b-step.json");
const MiB = 2 ** 20;

/** Descendant pids of `pid`, from /proc. */
function descendants(pid: number): number[] {
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
  const out: number[] = [];
  const todo = [...(children.get(pid) ?? [])];
  while (todo.length) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** `VmRSS` / `VmHWM` (bytes) of a process, 0 when it is gone. */
function status(pid: number, field: "VmRSS" | "VmHWM"): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat (clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

const cmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return "";
  }
};

// INT21_STUDIO_PREBUILT=1: serve the dist/ already built (`npm run build -w @int21/studio`)
if (process.env.INT21_STUDIO_PREBUILT !== "1") await build({ configFile, logLevel: "warn" });
const server = await preview({ configFile, logLevel: "warn", preview: { host: "127.0.0.1", port: 0 } });
const address = server.httpServer.address();
const port = typeof address === "object" && address ? address.port : 0;
const browser = await chromium.launch({
  executablePath: process.env.INT21_CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(0);
  page.on("console", (m) => {
    if (m.type() === "error") console.log(`page: ${m.text()}`);
  });
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForFunction(() => document.body.dataset.state === "ready");
  // the renderer running this page (and its worker): the one Chromium renderer process with this port's page
  const renderers = descendants(process.pid).filter((p) => cmdline(p).includes("--type=renderer"));
  const all = () => descendants(process.pid).reduce((a, p) => a + status(p, "VmRSS"), 0);
  const idle = { renderer: renderers.map((p) => status(p, "VmRSS")), all: all() };
  await page.click("#measure-panel summary");
  for (const [id, v] of [
    ["m-layers", layers],
    ["m-steps", steps],
    ["m-seq", seq],
    ["m-rank", rank],
  ])
    await page.fill(`#${id}`, v);
  await page.selectOption("#m-resident", resident);
  let peakAll = 0;
  const timer = setInterval(() => {
    peakAll = Math.max(peakAll, all());
  }, 250);
  const progress = setInterval(async () => {
    console.log(
      `${new Date().toISOString().slice(11, 19)} ${await page.textContent("#status").catch(() => "")}`,
    );
  }, 30_000);
  const t0 = Date.now();
  const cpu0 = renderers.reduce((a, p) => a + cpuSeconds(p), 0);
  await page.click("#measure");
  await page.waitForFunction(() => document.body.dataset.state !== "busy");
  clearInterval(timer);
  clearInterval(progress);
  const rendererCpuSeconds = renderers.reduce((a, p) => a + cpuSeconds(p), 0) - cpu0;
  const state = await page.getAttribute("body", "data-state");
  const statusLine = await page.textContent("#status");
  if (state !== "ready") throw new Error(`measure-7b: ${statusLine}`);
  await page.waitForFunction(() => document.querySelector<HTMLElement>("#measure-out")?.dataset.tab === "1");
  const page7b = JSON.parse((await page.textContent("#measure-out")) ?? "{}");
  const rendererPeak = Math.max(...renderers.map((p) => status(p, "VmHWM")));
  const result = {
    date: new Date().toISOString(),
    chromium: browser.version(),
    machine: `${cpus().length} × ${cpus()[0]?.model ?? "?"}`,
    wallMs: Date.now() - t0,
    /** CPU time of the renderer (page, worker and the wasm threads' workers) over the whole run: generation + steps. */
    rendererCpuSeconds,
    status: statusLine,
    ...page7b,
    memoryNotes:
      "wasmMemoryBytes: the wasm memory's size after the step (it only grows: its high-water mark); workerHeapBytes: performance.memory, which Chromium does not offer in workers (null); tabBytes*: performance.measureUserAgentSpecificMemory from the page, which did not count the worker's typed arrays (the packed model) here — the renderer's VmHWM is the tab's real peak",
    rss: {
      rendererIdleBytes: Math.max(...idle.renderer),
      rendererPeakBytes: rendererPeak,
      allProcessesIdleBytes: idle.all,
      allProcessesPeakBytes: peakAll,
      note: "renderer: VmHWM of Chromium's renderer process (the page and its worker); all: VmRSS of every Chromium process summed (shared pages counted more than once), sampled every 250 ms",
    },
  };
  writeFileSync(outFile, `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result, null, 2));
  console.log(
    `${layers} layers: generate ${(page7b.generateMs / 1000).toFixed(1)} s, steps ${page7b.steps
      .map((s: { ms: number }) => `${(s.ms / 1000).toFixed(1)} s`)
      .join(
        ", ",
      )}; wasm memory ${(page7b.steps.at(-1).wasmMemoryBytes / MiB).toFixed(0)} MiB; renderer RSS ` +
      `${(result.rss.rendererIdleBytes / MiB).toFixed(0)} → peak ${(rendererPeak / MiB).toFixed(0)} MiB; wrote ${outFile}`,
  );
} finally {
  await browser.close();
  server.httpServer.close();
}
