// The studio's worker: every heavy step runs here (the page only draws). Requests come as
// `{ id, ...Request }`; each gets one Reply; progress, steps, tokens and saves are Events in between.
import { memory, setBackend } from "@int21/autograd";
import { createWebGpuSyncBackend, type WebGpuSyncBackend } from "@int21/gpu";
import { createWasmBackend, type WasmBackend } from "@int21/quant-kernels/wasm";
import { measure7bStep } from "./measure7b";
import { blobFileStats, clearBlobFiles, registerBlobFile } from "./blob-files";
import { opfsStore } from "./opfs";
import type { Event, InitResult, MemoryReadout, Reply, Request } from "./protocol";
import { blobSource, classifyPick, workerSliceReader } from "./sources";
import { parseSavedRun, type SavedRun, type StateStore, Studio } from "./studio";
import { webGpuCheck } from "./webgpu-check";

const post = (m: Event | Reply, transfer: Transferable[] = []) =>
  (self as unknown as { postMessage(m: unknown, t: Transferable[]): void }).postMessage(m, transfer);

let wasm: WasmBackend;
let studio: Studio;
let store: StateStore | null = null;
let stopFlag: Int32Array | null = null;
/** The in-memory scratch folder of the build's fs/promises stub (blob-files.ts), where saveLlamaAdapter writes. */
const SCRATCH = "/scratch";
/**
 * Bytes of re-packed layers the studio's wasm backend keeps resident (least recently used dropped first). Capped
 * because @int21/quant-kernels' glue fails once wasm memory passes 2 GiB (signed `addr >> 2`; README, *Measured*):
 * a model whose packed layers pass 1 GiB streams them through wasm memory instead of crashing.
 */
const RESIDENT_BUDGET = 2 ** 30;
/** The page's base URL (the default model and texts are served under it). */
let baseUrl = "";

function mem(): MemoryReadout {
  const m = memory();
  const heap = (performance as { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize;
  return {
    wasmBytes: wasm?.memoryBytes() ?? 0,
    ledgerLive: m.liveBytes,
    ledgerPeak: m.peakBytes,
    workerHeap: heap ?? null,
  };
}

const emit = (p: Parameters<Parameters<Studio["quantize"]>[1]>[0]) =>
  post({ type: "progress", p, mem: mem() });

function readWhole(blob: Blob): Uint8Array {
  return new Uint8Array(workerSliceReader()(blob));
}

async function savedRun(): Promise<SavedRun | null> {
  const b = await store?.load();
  if (!b) return null;
  try {
    return parseSavedRun(b).meta;
  } catch {
    return null;
  }
}

/** A store that also tells the page when it saved. */
function announcing(s: StateStore): StateStore {
  return {
    async save(bytes) {
      await s.save(bytes);
      const sum = studio.summary();
      post({ type: "saved", step: sum.ftSteps, total: sum.ftTotal, bytes: bytes.byteLength });
    },
    load: () => s.load(),
    clear: () => s.clear(),
  };
}

async function loadDefault() {
  const [m, t] = await Promise.all(
    ["models/stories260K.bin", "models/tok512.bin"].map(async (u) => {
      const r = await fetch(new URL(u, baseUrl).href);
      if (!r.ok) throw new Error(`${u}: HTTP ${r.status}`);
      return r.blob();
    }),
  );
  return studio.load(
    {
      kind: "llama2c",
      model: blobSource(m, "stories260K.bin"),
      tokenizer: readWhole(t),
      tokenizerName: "tok512.bin",
    },
    emit,
  );
}

/** Adapters that are the CPU behind a graphics API: there the wasm kernels are faster (@int21/gpu README). */
const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|softpipe|software|microsoft basic render/i;

/**
 * @int21/gpu's synchronous WebGPU backend (its device in a nested worker; this worker blocks in Atomics.wait,
 * which needs the page cross-origin isolated), with the wasm backend for everything the device does not run.
 * `auto` takes it on a hardware adapter only (a software adapter is the CPU behind a graphics API, where wasm is
 * faster); `webgpu` takes any adapter. The backend is null when none is taken, with the reason.
 */
async function webGpuBackend(
  choice: "auto" | "webgpu",
  isolated: boolean,
): Promise<{ backend: WebGpuSyncBackend | null; reason: string | null }> {
  if (!(navigator as { gpu?: unknown }).gpu)
    return { backend: null, reason: "navigator.gpu is absent (this browser offers no WebGPU)" };
  if (!isolated)
    return {
      backend: null,
      reason:
        "the page is not cross-origin isolated (COOP/COEP), and the synchronous WebGPU backend blocks in Atomics.wait",
    };
  let b: WebGpuSyncBackend;
  try {
    b = await createWebGpuSyncBackend({
      fallback: wasm,
      warn: () => {},
      initTimeoutMs: 20_000,
      worker: () => new Worker(new URL("./webgpu-device-worker.ts", import.meta.url), { type: "module" }),
    });
  } catch (e) {
    return { backend: null, reason: `the WebGPU backend failed to start: ${(e as Error)?.message ?? e}` };
  }
  if (!b.context) {
    const reason = b.fallbackReason ?? "no WebGPU device";
    b.dispose();
    return { backend: null, reason };
  }
  if (choice === "auto" && SOFTWARE_ADAPTER.test(b.context.adapter)) {
    const reason = `${b.context.adapter} is a software adapter, where wasm is faster (?device=webgpu forces it)`;
    b.dispose();
    return { backend: null, reason };
  }
  return { backend: b, reason: null };
}

/** Kernel calls so far on the WebGPU sync backend, by where they ran (null on wasm). */
function kernelCalls(): { gpu: number; cpu: number } | null {
  const b = studio.backend as Partial<WebGpuSyncBackend>;
  if (typeof b.stats !== "function") return null;
  const st = b.stats();
  const sum = (r: Record<string, number>) => Object.values(r).reduce((a, n) => a + n, 0);
  return { gpu: sum(st.gpu), cpu: sum(st.cpu) };
}

const ops: { [K in Request["op"]]: (r: Extract<Request, { op: K }>) => Promise<unknown> } = {
  async init(r) {
    const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
    try {
      wasm = await createWasmBackend(
        isolated
          ? { maxResidentBytes: RESIDENT_BUDGET }
          : { sharedMemory: false, threads: 1, maxResidentBytes: RESIDENT_BUDGET },
      );
    } catch {
      wasm = await createWasmBackend({ sharedMemory: false, threads: 1, maxResidentBytes: RESIDENT_BUDGET });
    }
    stopFlag = r.stop ? new Int32Array(r.stop) : null;
    baseUrl = r.base;
    const s = await opfsStore();
    store = s ? announcing(s) : null;
    const gpu = (navigator as { gpu?: unknown }).gpu;
    const device = r.device ?? "auto";
    const picked =
      device === "wasm"
        ? { backend: null, reason: "wasm chosen (device: wasm)" }
        : await webGpuBackend(device, isolated);
    const onGpu = picked.backend;
    studio = new Studio(onGpu ?? wasm, store, { scratchDir: SCRATCH });
    const res: InitResult = {
      backend: onGpu ? `${onGpu.name} (+ ${wasm.name})` : wasm.name,
      threads: wasm.threads,
      isolated,
      simd: true,
      webgpu: onGpu
        ? `in use: ${onGpu.context?.adapter ?? "WebGPU"} (the pipeline's matrix products on WebGPU)`
        : device === "webgpu"
          ? `WebGPU was asked for (device: webgpu) but none could be made: ${picked.reason} — everything runs on wasm`
          : gpu
            ? "navigator.gpu present (checked after quantizing)"
            : "not available (navigator.gpu is absent)",
      device: {
        requested: device,
        used: onGpu ? "webgpu" : "wasm",
        adapter: onGpu?.context?.adapter ?? null,
        note: picked.reason,
      },
      saved: await savedRun(),
    };
    return res;
  },
  async load(r) {
    const pick = classifyPick(r.files);
    if (pick.kind === "llama2c") {
      let tokBytes: Uint8Array;
      let tokName: string;
      if (pick.tokenizer) {
        tokBytes = readWhole(pick.tokenizer.blob);
        tokName = pick.tokenizer.path;
      } else {
        const res = await fetch(new URL("models/tok512.bin", baseUrl).href);
        if (!res.ok)
          throw new Error(
            `${pick.model.path}: no tokenizer picked, and the default tok512.bin is not served`,
          );
        tokBytes = new Uint8Array(await res.arrayBuffer());
        tokName = "tok512.bin (default)";
      }
      const src = blobSource(pick.model.blob, pick.model.path);
      const summary = await studio.load(
        { kind: "llama2c", model: src, tokenizer: tokBytes, tokenizerName: tokName },
        emit,
      );
      return {
        summary,
        streamed: {
          reads: src.stats.reads,
          bytes: src.stats.bytes,
          largest: src.stats.largestRead,
          size: src.size,
        },
      };
    }
    if (pick.kind === "gguf") {
      // loadGguf(path) streams through @int21/io's positioned reads; the build's fs/promises serves the picked Blob
      clearBlobFiles();
      const path = registerBlobFile(`/picked/${pick.model.path}`, pick.model.blob);
      const summary = await studio.load({ kind: "gguf", src: path, name: pick.model.path }, emit);
      const st = blobFileStats;
      return {
        summary,
        streamed: { reads: st.reads, bytes: st.bytes, largest: st.largestRead, size: pick.model.blob.size },
      };
    }
    const files: Record<string, ReturnType<typeof blobSource>> = {};
    for (const [n, f] of Object.entries(pick.files)) files[n] = blobSource(f.blob, `${pick.label}/${n}`);
    clearBlobFiles();
    const dir = `/picked/${pick.label}`;
    for (const [n, f] of Object.entries(pick.files)) registerBlobFile(`${dir}/${n}`, f.blob);
    const summary = await studio.load({ kind: "hf", files, label: pick.label, dir }, emit);
    const weights = Object.entries(files).filter(([n]) => n.endsWith(".safetensors"));
    const stat = (k: "reads" | "bytes" | "largestRead") =>
      weights.reduce(
        (a, [, s]) => (k === "largestRead" ? Math.max(a, s.stats[k]) : a + s.stats[k]),
        k === "largestRead" ? blobFileStats.largestRead : blobFileStats[k],
      );
    return {
      summary,
      streamed: {
        reads: stat("reads"),
        bytes: stat("bytes"),
        largest: stat("largestRead"),
        size: weights.reduce((a, [, s]) => a + s.size, 0),
      },
    };
  },
  async loadStudent(r) {
    clearBlobFiles();
    const path = registerBlobFile(`/picked/${r.file.path}`, r.file.blob);
    const summary = await studio.loadStudent(path, r.file.path);
    return {
      summary,
      streamed: {
        reads: blobFileStats.reads,
        bytes: blobFileStats.bytes,
        largest: blobFileStats.largestRead,
        size: r.file.blob.size,
      },
    };
  },
  async loadDefault() {
    return { summary: await loadDefault(), streamed: null };
  },
  async quantize(r) {
    const q = studio.quantize(r.settings, emit);
    return q;
  },
  async lrec(r) {
    return studio.lrec(r.settings, emit, (s) => post({ type: "lrec-step", s }));
  },
  async finetune(r) {
    studio.startFinetune(r.settings);
    return runFinetune();
  },
  async continue() {
    return runFinetune();
  },
  async resume() {
    const bytes = await store?.load();
    if (!bytes) throw new Error("no saved run in this browser");
    const meta = parseSavedRun(bytes).meta;
    if (studio.name !== meta.model) {
      if (meta.model === "stories260K.bin") await loadDefault();
      else
        throw new Error(
          `the saved run was made on ${meta.model}: open that model first, then press Continue`,
        );
    }
    const { summary } = await studio.resumeRun(bytes, emit);
    return { summary, meta, history: studio.ftHistory, lrecHistory: studio.lrecHistory };
  },
  async discardSaved() {
    await store?.clear();
    return null;
  },
  async evaluate(r) {
    return studio.evaluate(r.text, r.ctx, emit);
  },
  async generate(r) {
    const before = kernelCalls();
    const t0 = performance.now();
    const g = studio.generate(
      {
        prompt: r.prompt,
        ...(r.promptIds ? { promptIds: r.promptIds } : {}),
        chat: r.chat,
        steps: r.steps,
        temperature: r.temperature,
        seed: r.seed,
      },
      (piece) => post({ type: "token", piece }),
    );
    const after = kernelCalls();
    return {
      ...g,
      ms: performance.now() - t0,
      model: studio.summary().student ?? "float32",
      kernels: before && after ? { gpu: after.gpu - before.gpu, cpu: after.cpu - before.cpu } : null,
    };
  },
  async export(r) {
    if (r.what === "peft-config" || r.what === "peft-weights") return studio.exportPeftFile(r.what);
    return studio.exportFile(r.what, r.ggufType ? { ggufType: r.ggufType } : {});
  },
  async webgpu() {
    return webGpuCheck(wasm, studio.student ?? studio.active);
  },
  async measure7b(r) {
    return measure7b(r);
  },
};

async function runFinetune() {
  if (stopFlag) Atomics.store(stopFlag, 0, 0);
  return studio.finetune(emit, (s) => post({ type: "ft-step", s }), {
    shouldStop: () => (stopFlag ? Atomics.load(stopFlag, 0) !== 0 : false),
  });
}

/**
 * A 7B-shape INT2 EMEF step in the tab (src/measure7b.ts): on a backend of its own whose resident budget is
 * `maxResidentBytes` (0, the default: only the layer in use is re-packed into wasm memory, so the packed model is
 * held once, in JavaScript; the studio's own backend keeps every layer resident for decoding). The studio's
 * backend is autograd's again afterwards, and the measurement's backend is disposed.
 */
async function measure7b(r: Extract<Request, { op: "measure7b" }>) {
  const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
  const budget = r.maxResidentBytes ?? 0;
  const be = await createWasmBackend(
    isolated ? { maxResidentBytes: budget } : { sharedMemory: false, threads: 1, maxResidentBytes: budget },
  );
  setBackend(be);
  const t0 = performance.now();
  const heap = () => (performance as { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize ?? null;
  try {
    const res = measure7bStep(
      r,
      be,
      (p) =>
        post({
          type: "progress",
          p: {
            stage: p.phase === "generate" ? "measure: generating" : "measure: training",
            done: p.done,
            total: p.total,
            elapsedMs: performance.now() - t0,
            etaMs: Number.NaN,
            detail: p.detail,
          },
          mem: { ...mem(), wasmBytes: be.memoryBytes() },
        }),
      { maxResidentBytes: budget },
    );
    return { ...res, workerHeapBytes: heap() };
  } finally {
    setBackend(studio.backend);
    be.dispose();
  }
}

self.onmessage = async (e: MessageEvent<Request & { id: number }>) => {
  const { id, ...req } = e.data;
  try {
    const result = await (ops[req.op] as (r: Request) => Promise<unknown>)(req as Request);
    const transfer: Transferable[] = [];
    const bytes = (result as { bytes?: Uint8Array } | null)?.bytes;
    if (bytes instanceof Uint8Array && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength)
      transfer.push(bytes.buffer as ArrayBuffer);
    post({ id, ok: true, result }, transfer);
  } catch (err) {
    console.error(err);
    post({ id, ok: false, error: err instanceof Error ? err.message : String(err) });
  }
};
