// The page: forms, charts and readouts. Every heavy step is a request to the worker (worker.ts); the page
// keeps drawing while it runs (progress, ETA, live charts, memory).
import type { LrecStep } from "@int21/lrec";
import { barChart, lineChart } from "./charts";
import { formatBytes, formatDuration, type StageProgress } from "./progress";
import type { Event, InitResult, MemoryReadout, Reply, Request } from "./protocol";
import type { EvalPoint, FtStep, SavedRun, Summary } from "./studio";
import { type DeviceChoice, parseDeviceChoice, parsePromptIds } from "./ui-logic";

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`index.html has no #${id}`);
  return el as T;
};
const num = (id: string) => Number($<HTMLInputElement>(id).value);
const val = (id: string) => $<HTMLInputElement>(id).value;

const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
let nextId = 1;
const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
const stop = globalThis.crossOriginIsolated ? new SharedArrayBuffer(4) : null;

function call<T>(req: Request): Promise<T> {
  const id = nextId++;
  return new Promise<T>((resolve, reject) => {
    pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
    worker.postMessage({ id, ...req });
  });
}

let lastMem: MemoryReadout | null = null;
let tabBytes: number | null = null;
let lrecSteps: LrecStep[] = [];
let ftSteps: FtStep[] = [];
let summary: Summary | null = null;
let defaultText: { train: string; eval: string } | null = null;
let liveText = "";
/** Requests finished (body[data-done]): tests wait for it to change after a click. */
let doneCount = 0;

worker.onmessage = (e: MessageEvent<Event | Reply>) => {
  const m = e.data;
  if ("id" in m) {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (!p) return;
    if (m.ok) p.resolve(m.result);
    else p.reject(new Error(m.error));
    return;
  }
  if (m.type === "progress") showProgress(m.p, m.mem);
  else if (m.type === "lrec-step") {
    lrecSteps.push(m.s);
    drawLrec();
  } else if (m.type === "ft-step") {
    ftSteps.push(m.s);
    drawFt();
  } else if (m.type === "token") {
    liveText += m.piece;
    $("output").textContent = liveText;
  } else if (m.type === "saved") {
    $("ft-info").dataset.saved = String(m.step);
    $("ft-info").textContent =
      `step ${m.step}/${m.total} · state saved in this browser (OPFS, ${formatBytes(m.bytes)})`;
  }
};
worker.onerror = (e) => setState("error", `worker failed: ${e.message}`);

function showProgress(p: StageProgress, mem: MemoryReadout): void {
  const bar = $<HTMLProgressElement>("progress");
  bar.max = p.total;
  bar.value = p.done;
  $("status").textContent = `${p.stage}: ${p.detail}`;
  $("eta").textContent =
    `${Math.round((100 * p.done) / Math.max(p.total, 1e-9))}% · ${formatDuration(p.elapsedMs)} elapsed · ETA ${formatDuration(p.etaMs)}`;
  $("eta").dataset.eta = String(p.etaMs);
  lastMem = mem;
  showMemory();
}

function showMemory(): void {
  const page = (performance as { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize;
  const parts: string[] = [];
  if (lastMem) {
    parts.push(`wasm ${formatBytes(lastMem.wasmBytes)}`);
    parts.push(`tensors ${formatBytes(lastMem.ledgerLive)} (peak ${formatBytes(lastMem.ledgerPeak)})`);
    if (lastMem.workerHeap !== null) parts.push(`worker JS heap ${formatBytes(lastMem.workerHeap)}`);
  }
  if (page !== undefined) parts.push(`page JS heap ${formatBytes(page)}`);
  if (tabBytes !== null) parts.push(`whole tab ${formatBytes(tabBytes)}`);
  $("memory").textContent = parts.join(" · ") || "—";
}

/** The whole tab (page + worker + wasm), where the browser can measure it (cross-origin isolated Chromium). */
async function measureTab(): Promise<void> {
  const f = (performance as { measureUserAgentSpecificMemory?: () => Promise<{ bytes: number }> })
    .measureUserAgentSpecificMemory;
  if (!f || !globalThis.crossOriginIsolated) return;
  try {
    tabBytes = (await f.call(performance)).bytes;
    showMemory();
  } catch {
    /* not allowed here */
  }
}

function setState(state: "ready" | "busy" | "error", message?: string): void {
  document.body.dataset.state = state;
  if (message !== undefined) $("status").textContent = message;
  const busy = state === "busy";
  const loaded = summary?.model != null;
  const quantized = summary?.student != null;
  for (const id of ["load-default", "pick-dir", "files", "folder"])
    ($(id) as HTMLButtonElement).disabled = busy;
  $<HTMLButtonElement>("quantize").disabled = busy || !loaded;
  $<HTMLInputElement>("ckpt").disabled = busy || !loaded;
  $<HTMLButtonElement>("lrec").disabled = busy || !quantized || (summary?.adapters.length ?? 0) > 0;
  $<HTMLButtonElement>("finetune").disabled =
    busy || !quantized || (summary?.adapters.includes("default") ?? false);
  $<HTMLButtonElement>("ft-continue").disabled =
    busy || !summary || summary.ftTotal === 0 || summary.ftSteps >= summary.ftTotal;
  $<HTMLButtonElement>("ft-stop").disabled = !busy || stop === null;
  $<HTMLButtonElement>("evaluate").disabled = busy || !loaded;
  $<HTMLButtonElement>("generate").disabled = busy || !loaded;
  $<HTMLButtonElement>("measure").disabled = busy;
  for (const b of document.querySelectorAll<HTMLButtonElement>("button.dl")) {
    const needsAdapter = b.dataset.what !== "checkpoint" && b.dataset.what !== "gguf";
    b.disabled = busy || !loaded || (needsAdapter && (summary?.adapters.length ?? 0) === 0);
  }
}

/** Runs one request with the page marked busy; shows its result or its error. */
async function run<T>(
  label: string,
  req: Request,
  done: (r: T) => string | undefined,
): Promise<T | undefined> {
  setState("busy", `${label}…`);
  $<HTMLProgressElement>("progress").value = 0;
  const t0 = performance.now();
  try {
    const r = await call<T>(req);
    const msg = done(r) ?? `${label} done`;
    setState("ready", `${msg} (${formatDuration(performance.now() - t0)})`);
    void measureTab();
    return r;
  } catch (e) {
    console.warn(e);
    setState("error", `${label} failed: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  } finally {
    document.body.dataset.done = String(++doneCount);
  }
}

function showSummary(s: Summary): void {
  summary = s;
  const c = s.config!;
  const info = $("model-info");
  info.textContent =
    `${s.model} (${s.kind}): ${c.family}, dim ${c.dim}, hidden ${c.hiddenDim}, ${c.layers} layers, ${c.heads} heads ` +
    `(${c.kvHeads} kv), vocab ${c.vocab}, context ${c.seqLen} · projections ${formatBytes(s.teacherBytes)} float32`;
  info.dataset.model = String(s.model);
  info.dataset.layers = String(c.layers);
  if (s.student) {
    $("quant-info").dataset.format = s.student;
  }
}

function drawLrec(): void {
  $("lrec-chart").innerHTML = lineChart(
    "LREC: KL(teacher ‖ student) per token",
    [{ name: "KL / token", points: lrecSteps.map((s) => [s.step, s.klPerToken] as const) }],
    { x: "step", y: "nats" },
  );
  const last = lrecSteps.at(-1);
  if (last)
    $("lrec-info").textContent =
      `step ${last.step}: KL ${last.klPerToken.toFixed(4)} nats/token (first ${lrecSteps[0].klPerToken.toFixed(4)}), loss ${last.loss.toFixed(4)}`;
}

function drawFt(): void {
  $("ft-chart").innerHTML = lineChart(
    "Fine-tuning: training loss",
    [{ name: "cross-entropy", points: ftSteps.map((s) => [s.step, s.loss] as const) }],
    { x: "step", y: "nats" },
  );
  const last = ftSteps.at(-1);
  const info = $("ft-info");
  if (last) {
    info.dataset.step = String(last.step);
    info.textContent = `step ${last.step}: loss ${last.loss.toFixed(4)} (${last.ms.toFixed(0)} ms/step)`;
  }
}

function drawEval(points: EvalPoint[]): void {
  $("eval-chart").innerHTML = barChart(
    "Perplexity per configuration",
    points.map((p) => ({ label: p.label, value: p.perplexity })),
    "",
  );
  const t = $<HTMLTableElement>("eval-table");
  t.replaceChildren();
  const head = t.insertRow();
  for (const h of ["configuration", "perplexity", "mean NLL", "tokens"]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.append(th);
  }
  for (const p of points) {
    const r = t.insertRow();
    r.dataset.label = p.label;
    r.dataset.ppl = String(p.perplexity);
    for (const v of [p.label, p.perplexity.toFixed(3), p.meanNll.toFixed(4), String(p.tokens)])
      r.insertCell().textContent = v;
  }
}

async function texts(): Promise<{ train: string; eval: string }> {
  if (!defaultText) {
    const get = async (u: string) => {
      const r = await fetch(u);
      if (!r.ok) throw new Error(`${u}: HTTP ${r.status}`);
      return r.text();
    };
    defaultText = { train: await get("models/train.txt"), eval: await get("models/eval.txt") };
  }
  return defaultText;
}

async function loadFiles(files: { path: string; blob: Blob }[]): Promise<void> {
  resetStages();
  await run<{
    summary: Summary;
    streamed: { reads: number; bytes: number; largest: number; size: number } | null;
  }>("Loading", { op: "load", files }, (r) => {
    showSummary(r.summary);
    if (r.streamed)
      $("model-info").textContent +=
        ` · streamed in ${r.streamed.reads} slices (largest ${formatBytes(r.streamed.largest)} of a ${formatBytes(r.streamed.size)} file)`;
    return `loaded ${r.summary.model}`;
  });
}

function resetStages(): void {
  lrecSteps = [];
  ftSteps = [];
  for (const id of ["lrec-chart", "ft-chart", "eval-chart", "eval-table"]) $(id).replaceChildren();
  for (const id of ["quant-info", "lrec-info", "ft-info", "gen-info"]) $(id).textContent = "—";
}

const relPath = (f: File) => {
  const p = (f as File & { webkitRelativePath?: string }).webkitRelativePath;
  return p ? p : f.name;
};

$<HTMLInputElement>("files").addEventListener("change", (e) => {
  const fs = [...((e.target as HTMLInputElement).files ?? [])];
  if (fs.length) void loadFiles(fs.map((f) => ({ path: f.name, blob: f })));
});
$<HTMLInputElement>("folder").addEventListener("change", (e) => {
  const fs = [...((e.target as HTMLInputElement).files ?? [])];
  if (fs.length) void loadFiles(fs.map((f) => ({ path: relPath(f), blob: f })));
});

type DirHandle = {
  name: string;
  values(): AsyncIterable<{ kind: string; name: string; getFile(): Promise<File> }>;
};
$("pick-dir").addEventListener("click", async () => {
  const pick = (window as { showDirectoryPicker?: () => Promise<DirHandle> }).showDirectoryPicker;
  if (!pick) {
    $<HTMLInputElement>("folder").click();
    return;
  }
  const dir = await pick();
  const files: { path: string; blob: Blob }[] = [];
  for await (const h of dir.values())
    if (h.kind === "file") files.push({ path: `${dir.name}/${h.name}`, blob: await h.getFile() });
  await loadFiles(files);
});

const drop = $("dropzone");
drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const items = [...(e.dataTransfer?.items ?? [])];
  const files: { path: string; blob: Blob }[] = [];
  type Entry = {
    isFile: boolean;
    isDirectory: boolean;
    name: string;
    fullPath: string;
    file?: (cb: (f: File) => void, err: (e: unknown) => void) => void;
    createReader?: () => { readEntries(cb: (es: Entry[]) => void, err: (e: unknown) => void): void };
  };
  const walk = async (en: Entry): Promise<void> => {
    if (en.isFile && en.file) {
      const f = await new Promise<File>((res, rej) => en.file!(res, rej));
      files.push({ path: en.fullPath.replace(/^\//, ""), blob: f });
    } else if (en.isDirectory && en.createReader) {
      const r = en.createReader();
      for (;;) {
        const batch = await new Promise<Entry[]>((res, rej) => r.readEntries(res, rej));
        if (batch.length === 0) break;
        for (const c of batch) await walk(c);
      }
    }
  };
  for (const it of items) {
    const en = (it as DataTransferItem & { webkitGetAsEntry?: () => Entry | null }).webkitGetAsEntry?.();
    if (en) await walk(en);
    else {
      const f = it.getAsFile();
      if (f) files.push({ path: f.name, blob: f });
    }
  }
  if (files.length) await loadFiles(files);
});

$<HTMLInputElement>("ckpt").addEventListener("change", async (e) => {
  const f = (e.target as HTMLInputElement).files?.[0];
  if (!f) return;
  lrecSteps = [];
  ftSteps = [];
  for (const id of ["lrec-chart", "ft-chart"]) $(id).replaceChildren();
  await run<{ summary: Summary; streamed: { reads: number; size: number } }>(
    "Opening the checkpoint",
    { op: "loadStudent", file: { path: f.name, blob: f } },
    (r) => {
      showSummary(r.summary);
      const s = r.summary;
      const info = $("quant-info");
      info.textContent =
        `${s.student}: projections ${formatBytes(s.studentBytes)}` +
        `${s.adapters.length ? `, adapters ${s.adapters.join(" + ")}` : ""} · streamed in ${r.streamed.reads} slices`;
      info.dataset.format = String(s.student);
      return `opened ${f.name} as the student`;
    },
  );
});

$("load-default").addEventListener("click", async () => {
  resetStages();
  await run<{ summary: Summary }>("Loading stories260K", { op: "loadDefault" }, (r) => {
    showSummary(r.summary);
    return `loaded ${r.summary.model}`;
  });
});

$("quantize").addEventListener("click", async () => {
  const calibText = val("calib-text").trim() || (await texts()).train;
  lrecSteps = [];
  ftSteps = [];
  for (const id of ["lrec-chart", "ft-chart"]) $(id).replaceChildren();
  await run<{ summary: Summary; meanRelError: number; meanRtnRelError: number }>(
    "Quantizing",
    {
      op: "quantize",
      settings: {
        bits: num("bits") as 2 | 3 | 4 | 8,
        groupSize: num("group") as 32 | 64 | 128,
        method: val("method") as "rtn" | "gptq",
        calibText,
        calibWindows: num("calib-windows"),
        calibLen: num("calib-len"),
      },
    },
    (r) => {
      showSummary(r.summary);
      const s = r.summary;
      const err = Number.isFinite(r.meanRelError)
        ? ` · mean output error ${(100 * r.meanRelError).toFixed(2)}%` +
          (val("method") === "gptq"
            ? ` (RTN on the same inputs ${(100 * r.meanRtnRelError).toFixed(2)}%)`
            : "")
        : "";
      const info = $("quant-info");
      info.textContent = `${s.student}: projections ${formatBytes(s.studentBytes)} (${(s.teacherBytes / s.studentBytes).toFixed(1)}× smaller than float32)${err}`;
      info.dataset.format = String(s.student);
      void webgpu();
      return `quantized to ${s.student}`;
    },
  );
});

async function webgpu(): Promise<void> {
  try {
    const g = await call<{
      available: boolean;
      reason: string | null;
      adapter: string | null;
      layers: number;
      maxRelError: number;
      gpuUsPerCall: number;
      wasmUsPerCall: number;
    }>({ op: "webgpu" });
    const el = $("webgpu");
    el.dataset.available = String(g.available);
    const on = g.adapter ? ` [${g.adapter}]` : "";
    el.textContent = !g.available
      ? `not used: ${g.reason} — everything runs on wasm`
      : g.reason
        ? `device found${on}; ${g.reason}`
        : `@int21/gpu qmatvec on ${g.layers} packed projections checked against wasm: max rel. error ${g.maxRelError.toExponential(1)}, ` +
          `${g.gpuUsPerCall.toFixed(0)} µs/call with readback (wasm ${g.wasmUsPerCall.toFixed(0)} µs). ` +
          (deviceUsed === "webgpu"
            ? `The pipeline's matrix products run on WebGPU (@int21/gpu's synchronous backend).${on}`
            : `The pipeline runs on wasm (the device choice; WebGPU runs it with ?device=webgpu, or on a hardware adapter by itself).${on}`);
  } catch (e) {
    $("webgpu").textContent = `check failed: ${(e as Error).message}`;
  }
}

$("lrec").addEventListener("click", async () => {
  const text = val("calib-text").trim() || (await texts()).train;
  lrecSteps = [];
  await run<Summary>(
    "LREC",
    {
      op: "lrec",
      settings: {
        steps: num("lrec-steps"),
        r: num("lrec-rank"),
        lr: num("lrec-lr"),
        lambda: num("lrec-lambda"),
        batch: num("lrec-batch"),
        seq: num("lrec-seq"),
        text,
      },
    },
    (s) => {
      showSummary(s);
      return `LREC: ${s.lrecSteps} steps`;
    },
  );
});

async function ftData(): Promise<{ data: string; name: string }> {
  const f = $<HTMLInputElement>("ft-file").files?.[0];
  if (f) return { data: await f.text(), name: f.name };
  const t = val("ft-text").trim();
  if (t) return { data: t, name: "pasted text" };
  return { data: (await texts()).train, name: "TinyStories (default)" };
}

function ftDone(s: Summary): string {
  showSummary(s);
  return s.ftSteps >= s.ftTotal
    ? `fine-tuned ${s.ftSteps} steps`
    : `stopped at step ${s.ftSteps}/${s.ftTotal}: Continue resumes`;
}

$("finetune").addEventListener("click", async () => {
  const { data, name } = await ftData();
  ftSteps = [];
  const targets = [...document.querySelectorAll<HTMLInputElement>("#ft-targets input:checked")].map(
    (i) => i.value,
  );
  await run<Summary>(
    "Fine-tuning",
    {
      op: "finetune",
      settings: {
        data,
        dataName: name,
        r: num("ft-rank"),
        alpha: num("ft-alpha"),
        targets,
        steps: num("ft-steps"),
        lr: num("ft-lr"),
        batch: num("ft-batch"),
        seqLen: num("ft-seq"),
        saveEvery: num("ft-save"),
      },
    },
    ftDone,
  );
});
$("ft-stop").addEventListener("click", () => {
  if (stop) Atomics.store(new Int32Array(stop), 0, 1);
});
$("ft-continue").addEventListener("click", () => run<Summary>("Fine-tuning", { op: "continue" }, ftDone));

$("resume").addEventListener("click", async () => {
  $("resume-banner").hidden = true;
  resetStages();
  const r = await run<{ summary: Summary; meta: SavedRun; history: FtStep[]; lrecHistory: LrecStep[] }>(
    "Restoring the saved run",
    { op: "resume" },
    (r) => {
      showSummary(r.summary);
      const q = r.meta.quantize;
      if (q) {
        $<HTMLSelectElement>("bits").value = String(q.bits);
        $<HTMLSelectElement>("group").value = String(q.groupSize);
        $<HTMLSelectElement>("method").value = q.method;
        $("quant-info").textContent =
          `${r.summary.student}: projections ${formatBytes(r.summary.studentBytes)} (re-quantized from the saved settings)`;
      }
      const f = r.meta.finetune;
      for (const [id, v] of [
        ["ft-rank", f.r],
        ["ft-alpha", f.alpha],
        ["ft-steps", f.steps],
        ["ft-lr", f.lr],
        ["ft-batch", f.batch],
        ["ft-seq", f.seqLen],
        ["ft-save", f.saveEvery],
      ] as const)
        $<HTMLInputElement>(id).value = String(v);
      lrecSteps = r.lrecHistory;
      ftSteps = r.history;
      if (lrecSteps.length) drawLrec();
      if (ftSteps.length) drawFt();
      void webgpu();
      return `restored step ${r.meta.step}/${r.meta.finetune.steps}`;
    },
  );
  if (!r) {
    $("resume-banner").hidden = false;
    return;
  }
  await run<Summary>("Fine-tuning", { op: "continue" }, ftDone);
});
$("discard").addEventListener("click", async () => {
  await call({ op: "discardSaved" });
  $("resume-banner").hidden = true;
});

$("evaluate").addEventListener("click", async () => {
  const text = val("eval-text").trim() || (await texts()).eval;
  await run<EvalPoint[]>("Evaluating", { op: "evaluate", text, ctx: num("eval-ctx") }, (pts) => {
    drawEval(pts);
    return `perplexity of ${pts.length} configurations`;
  });
});

$("generate").addEventListener("click", async () => {
  liveText = "";
  $("output").textContent = "";
  let promptIds: number[] | null;
  try {
    promptIds = parsePromptIds(val("prompt-ids"));
  } catch (e) {
    setState("error", (e as Error).message);
    return;
  }
  await run<{
    text: string;
    tokens: number[];
    promptTokens: number;
    generatedTokens: number;
    decodeTokensPerSec: number;
    stop: string;
    model: string;
    rendered?: string;
    generatedText: string;
    kernels: { gpu: number; cpu: number } | null;
  }>(
    "Generating",
    {
      op: "generate",
      prompt: val("prompt"),
      promptIds,
      chat: $<HTMLInputElement>("chat").checked,
      steps: num("gen-steps"),
      temperature: num("temperature"),
      seed: 42,
    },
    (r) => {
      // a chat shows the user's prompt and the answer, not the template's markup
      $("output").textContent = r.rendered !== undefined ? `> ${val("prompt")}\n${r.generatedText}` : r.text;
      const info = $("gen-info");
      info.dataset.ids = r.tokens.slice(r.promptTokens).join(",");
      info.dataset.decode = String(r.decodeTokensPerSec);
      info.dataset.gpuCalls = String(r.kernels?.gpu ?? 0);
      const where = r.kernels
        ? `; ${r.kernels.gpu} matrix kernel calls on WebGPU, ${r.kernels.cpu} on wasm`
        : "; on wasm";
      info.textContent = `${r.generatedTokens} tokens at ${r.decodeTokensPerSec.toFixed(0)} tokens/s (${r.model}${summary?.adapters.length ? ` + ${summary.adapters.join(" + ")}` : ""}${where}); ids ${info.dataset.ids}`;
      return `generated ${r.generatedTokens} tokens (stop: ${r.stop})`;
    },
  );
});

for (const b of document.querySelectorAll<HTMLButtonElement>("button.dl")) {
  b.addEventListener("click", async () => {
    const what = b.dataset.what as "checkpoint" | "gguf" | "lora-gguf" | "peft-config" | "peft-weights";
    await run<{ name: string; bytes: Uint8Array }>(
      `Writing ${b.textContent}`,
      { op: "export", what, ggufType: val("gguf-type") as "F32" },
      (f) => {
        const url = URL.createObjectURL(new Blob([f.bytes as BlobPart]));
        const a = document.createElement("a");
        a.href = url;
        a.download = f.name;
        a.textContent = `${f.name} (${formatBytes(f.bytes.byteLength)})`;
        const li = document.createElement("li");
        li.dataset.name = f.name;
        li.append(a);
        $("downloads").append(li);
        a.click();
        return `wrote ${f.name}`;
      },
    );
  });
}

$("measure").addEventListener("click", async () => {
  // the whole tab, sampled while the worker runs (Chromium answers when it can measure the worker too)
  let tabPeak: number | null = null;
  const sample = setInterval(
    () =>
      void measureTab().then(() => {
        if (tabBytes !== null) tabPeak = Math.max(tabPeak ?? 0, tabBytes);
      }),
    2000,
  );
  await run<Record<string, unknown>>(
    "Measuring a 7B-shape INT2 EMEF step",
    {
      op: "measure7b",
      layers: num("m-layers"),
      steps: num("m-steps"),
      rank: num("m-rank"),
      seq: num("m-seq"),
      ...(val("m-resident") === "all" ? { maxResidentBytes: Number.POSITIVE_INFINITY } : {}),
    },
    (r) => {
      const out = $("measure-out");
      out.textContent = JSON.stringify(r, null, 2);
      out.dataset.done = "1";
      // the whole tab once the step is done (Chromium, cross-origin isolated), added to the readout
      clearInterval(sample);
      void measureTab().then(() => {
        if (tabBytes !== null)
          out.textContent = JSON.stringify(
            { ...r, tabBytesAfter: tabBytes, tabBytesPeakSampled: Math.max(tabPeak ?? 0, tabBytes) },
            null,
            2,
          );
        out.dataset.tab = "1";
      });
      const steps = r.steps as { ms: number; loss: number }[];
      const last = steps[steps.length - 1];
      return `measured: ${steps.length} step${steps.length > 1 ? "s" : ""}, last ${formatDuration(last.ms)}, loss ${last.loss.toFixed(3)}`;
    },
  );
  clearInterval(sample);
});

/** Where the pipeline's matrix products run (init's answer): the WebGPU check's readout says so. */
let deviceUsed: InitResult["device"]["used"] = "wasm";

// The device choice is made when the worker starts: changing it reloads the page with ?device=.
$<HTMLSelectElement>("device").addEventListener("change", (e) => {
  const u = new URL(location.href);
  u.searchParams.set("device", (e.target as HTMLSelectElement).value);
  location.assign(u.href);
});

async function start(): Promise<void> {
  const device: DeviceChoice = parseDeviceChoice(location.search);
  $<HTMLSelectElement>("device").value = device;
  const r = await call<InitResult>({ op: "init", stop, base: document.baseURI, device });
  deviceUsed = r.device.used;
  const b = $("backend");
  b.dataset.threads = String(r.threads);
  b.dataset.isolated = String(r.isolated);
  b.dataset.device = r.device.used;
  b.dataset.requested = r.device.requested;
  b.dataset.adapter = r.device.adapter ?? "";
  const wasmText =
    `WebAssembly SIMD, ${r.threads} thread${r.threads > 1 ? "s" : ""} ` +
    `(${r.isolated ? "cross-origin isolated: shared memory" : "not isolated: one thread"}), in a Web Worker`;
  b.textContent =
    r.device.used === "webgpu"
      ? `${r.backend}: matrix products on WebGPU (${r.device.adapter}), the rest on ${wasmText}`
      : `${r.backend}: ${wasmText}`;
  const w = $("webgpu");
  w.textContent = r.webgpu;
  w.dataset.note = r.device.note ?? "";
  if (r.saved && r.saved.step < r.saved.finetune.steps) {
    const s = r.saved;
    $("resume-text").textContent =
      `A fine-tuning run of ${s.model} (${s.quantize ? `int${s.quantize.bits} ${s.quantize.method.toUpperCase()}` : "float"}` +
      `${s.lrec ? " + LREC" : ""}) stopped at step ${s.step}/${s.finetune.steps}, saved ${new Date(s.savedAt).toLocaleString()}.`;
    $("resume-banner").hidden = false;
    $("resume-banner").dataset.step = String(s.step);
  }
  setState("ready", "ready: open a model, or use stories260K");
  setInterval(() => void measureTab(), 5000);
}

start().catch((e) => setState("error", `start failed: ${e instanceof Error ? e.message : String(e)}`));
