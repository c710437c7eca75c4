// A synchronous Backend whose kernels run on a WebGPU device owned by a worker: the caller posts the
// request, blocks in Atomics.wait while the worker runs the WebGPU kernel, and reads the result from
// shared memory. This is what lets the synchronous model and training code (autograd, lora,
// model-llama) run its matrix products on WebGPU.
import {
  type AdamWArgs,
  type Backend,
  checkAdamWArgs,
  createReferenceBackend,
  type GemmArgs,
  type KernelName,
  type QuantFormat,
  type QuantizedLinear,
  referenceAdamW,
  shareDecodeKernels,
  shareTrainKernels,
} from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { gemmEpilogue, resolveGemm } from "./gemm-args";
import { assertQuantArgs } from "./quant-args";
import {
  CTRL_WORDS,
  type InitReply,
  readText,
  ST_BUSY,
  ST_DEAD,
  ST_DONE,
  ST_ERROR,
  ST_FALLBACK,
  ST_IDLE,
  type SyncRequest,
  TEXT_BYTES,
  type WireFormat,
} from "./sync-protocol";

/** The parts of a worker the backend uses: a Node `Worker` or a browser `Worker`. */
export interface SyncWorkerLike {
  postMessage(message: unknown): void;
  terminate(): unknown;
}

/** Options of {@link createWebGpuSyncBackend}. */
export interface WebGpuSyncBackendOptions {
  /**
   * The CPU backend for kernels and formats the device does not run (`supports()` false: codebook and
   * ggml-block formats, problems beyond the device's limits) and for everything when no device can be
   * made. Default: `createWasmBackend()` (disposed by `dispose()`); a backend you pass stays yours.
   */
  fallback?: Backend;
  /**
   * Starts the worker that owns the device. Default: `dist/webgpu-worker.js` of this package, through
   * `worker_threads` in Node, `new Worker(url, { type: "module" })` in a browser worker. Bundled apps
   * pass their own, e.g. `() => new Worker(new URL("@int21/gpu/webgpu-worker", import.meta.url), { type: "module" })`.
   */
  worker?: () => SyncWorkerLike | Promise<SyncWorkerLike>;
  /** Extra Dawn flags for `create()` in Node (as in `requestWebGpuDevice`). */
  dawnFlags?: string[];
  powerPreference?: GPUPowerPreference;
  /** Longest a single kernel call may take before it throws (the worker is then abandoned). Default 600 000 ms. */
  timeoutMs?: number;
  /** Longest the worker may take to start and make its device before the backend falls back. Default 60 000 ms. */
  initTimeoutMs?: number;
  /** Where the one-time "falling back" notice goes. Default `console.warn`. */
  warn?: (message: string) => void;
}

/** What {@link SyncBackendStats} counts: the four kernels and the optional `adamw`. */
export type SyncKernelName = KernelName | "adamw";

/** Counts of kernel calls by where they ran (for logs and tests). */
export interface SyncBackendStats {
  gpu: Record<SyncKernelName, number>;
  cpu: Record<SyncKernelName, number>;
}

/** A synchronous {@link Backend} on a WebGPU device in a worker, or on its CPU fallback. */
export interface WebGpuSyncBackend extends Backend {
  /**
   * One Adam / AdamW update (quant-kernels' `AdamWArgs`) on the device; autograd's `Adam.step` / `AdamW.step`
   * call it while this backend is set. `m` and `v` stay resident on the device keyed by the `m` array: a
   * call whose `step` follows the last one for that `m` sends only the parameters and gradients, and
   * `params`, `m` and `v` are written back after every call (so the optimizer's `stateDict()` stays right).
   * Without a device it runs the fallback's `adamw`, else quant-kernels' `referenceAdamW`.
   */
  adamw(args: AdamWArgs): void;
  /** The device's source, feature level and adapter, or null when everything runs on the fallback. */
  readonly context: { source: string; featureLevel: "core" | "compatibility"; adapter: string } | null;
  /** Why the backend runs on its fallback, or null when WebGPU runs it. */
  readonly fallbackReason: string | null;
  /** The CPU backend that runs what the device does not. */
  readonly fallback: Backend;
  /** Kernel calls so far, by kernel and by where they ran. */
  stats(): SyncBackendStats;
}

const zeroCounts = (): Record<SyncKernelName, number> => ({
  sgemm: 0,
  dequantize: 0,
  qmatmul: 0,
  qmatmulT: 0,
  adamw: 0,
});

/** What the WGSL kernels decode: affine formats of 1–8 bits (codebook and block formats run on the fallback). */
function deviceFormat(f?: QuantFormat): boolean {
  return (
    !f || ((f.decode ?? "affine") === "affine" && Number.isInteger(f.bits) && f.bits >= 1 && f.bits <= 8)
  );
}

function wireFormat(f: QuantFormat): WireFormat {
  return {
    id: f.id,
    name: f.name,
    bits: f.bits,
    groupSize: f.groupSize,
    symmetric: f.symmetric,
    scaleDtype: f.scaleDtype,
    ...(f.decode === undefined ? {} : { decode: f.decode }),
  };
}

const isNode = () =>
  typeof process !== "undefined" &&
  !!process.versions?.node &&
  typeof (globalThis as { self?: unknown }).self === "undefined";

/** Whether this thread may block in Atomics.wait (not a browser window's main thread). */
function canBlock(): boolean {
  if (isNode()) return true;
  const g = globalThis as { WorkerGlobalScope?: unknown; window?: unknown };
  return g.WorkerGlobalScope !== undefined || g.window === undefined;
}

/** The default worker: this package's `webgpu-worker` entry next to the running module. */
async function defaultWorker(): Promise<SyncWorkerLike & { once?: unknown; unref?: () => void }> {
  const here: string | undefined =
    typeof __filename === "string" ? `file://${__filename}` : (import.meta as { url?: string }).url;
  if (!here) throw new Error("gpu: cannot locate webgpu-worker (no import.meta.url): pass the worker option");
  if (isNode()) {
    // Running from source (tests): the .ts entry through tsx; from dist: the built .js / .cjs entry.
    const ext = here.endsWith(".ts") ? ".ts" : here.endsWith(".cjs") ? ".cjs" : ".js";
    const url = new URL(`./webgpu-worker${ext}`, here);
    const spec = "node:worker_threads";
    const wt = (await import(/* @vite-ignore */ /* webpackIgnore: true */ spec)) as {
      Worker: new (
        u: URL | string,
        o: { eval?: boolean },
      ) => SyncWorkerLike & { once: unknown; unref(): void };
    };
    if (ext !== ".ts") return new wt.Worker(url, {});
    // From source (this package's tests), the worker's TypeScript goes through tsx's loader, registered
    // in the worker itself (Node 20 does not apply `--import` hooks to a worker's entry module).
    const boot = `import("tsx/esm/api").then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`;
    return new wt.Worker(boot, { eval: true });
  }
  const W = (globalThis as { Worker?: new (u: URL, o: { type: "module" }) => SyncWorkerLike }).Worker;
  if (!W) throw new Error("gpu: this thread cannot start a Worker: pass the worker option");
  return new W(new URL("./webgpu-worker.js", here), { type: "module" });
}

/** Resolves with the worker's `ready` message (Node `once`, or a browser `addEventListener`). */
function waitReady(w: SyncWorkerLike): Promise<InitReply> {
  return new Promise((resolve, reject) => {
    const n = w as unknown as {
      once?: (e: string, h: (v: unknown) => void) => void;
      addEventListener?: (e: string, h: (ev: { data?: unknown; message?: string }) => void) => void;
    };
    if (typeof n.once === "function") {
      n.once("message", (m) => resolve(m as InitReply));
      n.once("error", (e) => reject(e as Error));
    } else if (typeof n.addEventListener === "function") {
      n.addEventListener("message", (ev) => resolve(ev.data as InitReply));
      n.addEventListener("error", (ev) => reject(new Error(ev.message ?? "worker error")));
    } else reject(new Error("gpu: the worker has neither once() nor addEventListener()"));
  });
}

/**
 * Creates a synchronous {@link Backend} whose `sgemm`, `qmatmul`, `qmatmulT` and `dequantize` run on a
 * WebGPU device (the kernels of `createWebGpuBackend`) owned by a worker. Each call copies its inputs into
 * shared memory, posts the request and blocks in `Atomics.wait` until the worker has written the result;
 * `QuantizedLinear` records (and `bConst` GEMM operands) are posted once, keyed by identity, and stay
 * resident on the device, so only activations cross per call.
 *
 * Needs `SharedArrayBuffer` and a thread allowed to block: Node (any thread; the worker is a
 * `worker_threads` worker, Dawn through the optional `webgpu` package), or a browser **worker** of a
 * cross-origin-isolated page (COOP/COEP), which starts the device worker as a nested dedicated worker.
 * On a browser's main thread it throws. Without a device (or without SharedArrayBuffer) it says why once
 * and runs every kernel on `fallback`; kernels and formats the device does not run (see `supports()`)
 * run on `fallback` too.
 */
export async function createWebGpuSyncBackend(
  opts: WebGpuSyncBackendOptions = {},
): Promise<WebGpuSyncBackend> {
  if (!canBlock())
    throw new Error(
      "gpu: createWebGpuSyncBackend blocks its thread (Atomics.wait), which a browser's main thread may not: call it in a worker",
    );
  const warn = opts.warn ?? ((m: string) => console.warn(m));
  const ownFallback = opts.fallback === undefined;
  let fallback: Backend;
  if (opts.fallback) fallback = opts.fallback;
  else {
    try {
      fallback = await createWasmBackend();
    } catch {
      fallback = createReferenceBackend();
    }
  }
  const timeoutMs = opts.timeoutMs ?? 600_000;
  const gpuCalls = zeroCounts();
  const cpuCalls = zeroCounts();

  let reason: string | null = null;
  let worker: SyncWorkerLike | null = null;
  let context: WebGpuSyncBackend["context"] = null;
  const ctrlSab = typeof SharedArrayBuffer === "undefined" ? null : new SharedArrayBuffer(CTRL_WORDS * 4);
  const textSab = ctrlSab ? new SharedArrayBuffer(TEXT_BYTES) : null;
  if (!ctrlSab || !textSab) {
    reason = "no SharedArrayBuffer (a browser page must be cross-origin isolated: COOP/COEP headers)";
  } else {
    try {
      // Dawn's OpenGL ES path reads EGL_PLATFORM from the process environment, which a worker's
      // process.env does not write: set it here (surfaceless: Mesa without a display), as the async backend does.
      if (isNode() && process.env.EGL_PLATFORM === undefined) process.env.EGL_PLATFORM = "surfaceless";
      worker = await (opts.worker ?? defaultWorker)();
      const ready = waitReady(worker);
      const init: SyncRequest = {
        op: "init",
        ctrl: ctrlSab,
        text: textSab,
        device: {
          ...(opts.dawnFlags ? { dawnFlags: opts.dawnFlags } : {}),
          ...(opts.powerPreference ? { powerPreference: opts.powerPreference } : {}),
        },
      };
      worker.postMessage(init);
      const initMs = opts.initTimeoutMs ?? 60_000;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const r = await Promise.race([
        ready,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${initMs} ms`)), initMs);
        }),
      ]).finally(() => clearTimeout(timer));
      if (r.ok) context = { source: r.source, featureLevel: r.featureLevel, adapter: r.adapter };
      else reason = `no WebGPU device (${r.reason})`;
    } catch (e) {
      reason = `the WebGPU worker did not start (${(e as Error)?.message ?? String(e)})`;
    }
    if (!context && worker) {
      void worker.terminate();
      worker = null;
    }
  }
  if (reason) warn(`@int21/gpu: ${reason}; running on the ${fallback.name} backend instead.`);
  // A Node worker must not keep the process alive once the caller is done with the backend.
  (worker as { unref?: () => void } | null)?.unref?.();

  const ctrl = ctrlSab ? new Int32Array(ctrlSab) : new Int32Array(CTRL_WORDS);
  let arena: Float32Array = new Float32Array(0);
  let broken: string | null = null;
  let disposed = false;
  let nextId = 1;
  const layerIds = new WeakMap<QuantizedLinear, number>();
  const constIds = new WeakMap<Float32Array, number>();
  /** Adam state by `m` array: its id on the worker and the last step the worker holds (-1: none). */
  const adamIds = new WeakMap<Float32Array, { id: number; step: number }>();
  const freed = new FinalizationRegistry<number>((id) => {
    if (worker && !disposed) worker.postMessage({ op: "free", id } satisfies SyncRequest);
  });

  const post = (r: SyncRequest) => (worker as SyncWorkerLike).postMessage(r);

  /** The arena, grown (a new SharedArrayBuffer sent to the worker) to hold `floats`. */
  const ensureArena = (floats: number): Float32Array => {
    if (arena.length < floats) {
      const n = Math.max(floats, 2 * arena.length, 1 << 16);
      const sab = new SharedArrayBuffer(n * 4);
      arena = new Float32Array(sab);
      post({ op: "arena", arena: sab });
    }
    return arena;
  };

  const layerId = (q: QuantizedLinear): number => {
    let id = layerIds.get(q);
    if (id !== undefined) return id;
    id = nextId++;
    const N = q.outFeatures;
    const wpr = q.qweight.wordsPerRow;
    const G = q.format.groupSize === -1 ? 1 : Math.ceil(q.inFeatures / q.format.groupSize);
    // slice(): a view would send its whole underlying buffer.
    post({
      op: "layer",
      id,
      layer: {
        format: wireFormat(q.format),
        N,
        K: q.inFeatures,
        wordsPerRow: wpr,
        words: q.qweight.words.slice(0, N * wpr),
        scales: q.scales.slice(0, N * G),
        zeros: q.zeros.slice(0, N * G),
        ...(q.gIdx ? { gIdx: q.gIdx.slice(0, q.inFeatures) } : {}),
      },
    });
    layerIds.set(q, id);
    freed.register(q, id);
    return id;
  };

  const constId = (B: Float32Array): number => {
    let id = constIds.get(B);
    if (id !== undefined) return id;
    id = nextId++;
    post({ op: "constB", id, data: B.slice() });
    constIds.set(B, id);
    freed.register(B, id);
    return id;
  };

  /** Posts `r` and blocks until the worker answers: true when the result is in the arena, false to fall back. */
  const call = (r: SyncRequest & { op: SyncKernelName }): boolean => {
    if (disposed) throw new Error("gpu: webgpu-sync backend used after dispose()");
    if (broken) throw new Error(broken);
    Atomics.store(ctrl, 0, ST_BUSY);
    post(r);
    const deadline = Date.now() + timeoutMs;
    while (Atomics.load(ctrl, 0) === ST_BUSY) {
      const left = deadline - Date.now();
      if (left <= 0) {
        broken = `gpu: WebGPU worker did not finish ${r.op} within ${timeoutMs} ms; the backend is unusable`;
        throw new Error(broken);
      }
      Atomics.wait(ctrl, 0, ST_BUSY, Math.min(left, 1000));
    }
    const state = Atomics.load(ctrl, 0);
    const message =
      state === ST_ERROR || state === ST_DEAD ? readText(textSab as SharedArrayBuffer, ctrl[1]) : "";
    Atomics.store(ctrl, 0, ST_IDLE);
    if (state === ST_DONE) return true;
    if (state === ST_FALLBACK) return false;
    if (state === ST_DEAD) broken = message;
    throw new Error(message || `gpu: WebGPU worker answered ${r.op} with state ${state}`);
  };

  /** Whether the device runs `kernel` for `format` (throws once the backend is disposed). */
  const onDevice = (kernel: KernelName, format?: QuantFormat) => {
    if (disposed) throw new Error(`gpu: webgpu-sync backend: ${kernel} called after dispose()`);
    return worker !== null && (kernel === "sgemm" || deviceFormat(format));
  };

  const backend: WebGpuSyncBackend = {
    name: context ? "webgpu-sync" : `webgpu-fallback-${fallback.name}`,
    context,
    fallbackReason: reason,
    fallback,
    supports: (kernel, format) =>
      !disposed && worker !== null && (kernel === "sgemm" || deviceFormat(format)),
    stats: () => ({ gpu: { ...gpuCalls }, cpu: { ...cpuCalls } }),

    sgemm(args: GemmArgs): void {
      const g = resolveGemm(args);
      if (!onDevice("sgemm")) {
        cpuCalls.sgemm++;
        fallback.sgemm(args);
        return;
      }
      if (g.M === 0 || g.N === 0) return;
      if (g.K === 0) {
        gemmEpilogue(g, new Float32Array(g.M * g.N));
        return;
      }
      const aLen = g.aEnd - g.aOffset;
      const useConst = g.bConst;
      const bLen = useConst ? 0 : g.bEnd - g.bOffset;
      const a = ensureArena(aLen + bLen + g.M * g.N);
      a.set(g.A.subarray(g.aOffset, g.aEnd), 0);
      if (!useConst) a.set(g.B.subarray(g.bOffset, g.bEnd), aLen);
      const outOff = aLen + bLen;
      const ok = call({
        op: "sgemm",
        M: g.M,
        N: g.N,
        K: g.K,
        transA: g.transA,
        transB: g.transB,
        lda: g.lda,
        ldb: g.ldb,
        aOff: 0,
        aLen,
        constB: useConst ? constId(g.B) : null,
        bOff: useConst ? g.bOffset : aLen,
        bLen,
        outOff,
      });
      if (!ok) {
        cpuCalls.sgemm++;
        fallback.sgemm(args);
        return;
      }
      gpuCalls.sgemm++;
      gemmEpilogue(g, arena.subarray(outOff, outOff + g.M * g.N));
    },

    dequantize(q: QuantizedLinear, out: Float32Array): void {
      if (!onDevice("dequantize", q.format)) {
        cpuCalls.dequantize++;
        fallback.dequantize(q, out);
        return;
      }
      assertQuantArgs("dequantize", q, 0, null, out);
      const n = q.outFeatures * q.inFeatures;
      const id = layerId(q);
      ensureArena(n);
      if (!call({ op: "dequantize", id, outOff: 0 })) {
        cpuCalls.dequantize++;
        fallback.dequantize(q, out);
        return;
      }
      gpuCalls.dequantize++;
      out.set(arena.subarray(0, n));
    },

    qmatmul(x: Float32Array, rows: number, q: QuantizedLinear, y: Float32Array): void {
      matmul("qmatmul", x, rows, q, y);
    },

    qmatmulT(g: Float32Array, rows: number, q: QuantizedLinear, dx: Float32Array): void {
      matmul("qmatmulT", g, rows, q, dx);
    },

    adamw(args: AdamWArgs): void {
      if (disposed) throw new Error("gpu: webgpu-sync backend: adamw called after dispose()");
      checkAdamWArgs(args);
      const cpu = () => {
        cpuCalls.adamw++;
        if (fallback.adamw) fallback.adamw(args);
        else referenceAdamW(args);
      };
      const n = args.grads.length;
      if (worker === null || n === 0) {
        cpu();
        return;
      }
      let st = adamIds.get(args.m);
      if (!st) {
        st = { id: nextId++, step: -1 };
        adamIds.set(args.m, st);
        freed.register(args.m, st.id);
      }
      const load = st.step !== args.step - 1;
      const o = args.offset ?? 0;
      // arena: params | grads | (m | v when loading) | out: params | m | v
      const gOff = n;
      const mOff = 2 * n;
      const vOff = 3 * n;
      const outOff = load ? 4 * n : 2 * n;
      const a = ensureArena(outOff + 3 * n);
      a.set(args.params.subarray(o, o + n), 0);
      a.set(args.grads.subarray(0, n), gOff);
      if (load) {
        a.set(args.m.subarray(0, n), mOff);
        a.set(args.v.subarray(0, n), vOff);
      }
      st.step = -1;
      const ok = call({
        op: "adamw",
        id: st.id,
        n,
        load,
        pOff: 0,
        gOff,
        mOff,
        vOff,
        outOff,
        lr: args.lr,
        beta1: args.beta1,
        beta2: args.beta2,
        eps: args.eps,
        weightDecay: args.weightDecay,
        step: args.step,
        decoupled: args.decoupled ?? true,
      });
      if (!ok) {
        cpu();
        return;
      }
      gpuCalls.adamw++;
      st.step = args.step;
      args.params.set(arena.subarray(outOff, outOff + n), o);
      args.m.set(arena.subarray(outOff + n, outOff + 2 * n));
      args.v.set(arena.subarray(outOff + 2 * n, outOff + 3 * n));
    },

    dispose(): void {
      if (disposed) return;
      disposed = true;
      if (worker) {
        post({ op: "dispose" });
        void worker.terminate();
        worker = null;
      }
      if (ownFallback) fallback.dispose();
    },
  };

  function matmul(
    kernel: "qmatmul" | "qmatmulT",
    x: Float32Array,
    rows: number,
    q: QuantizedLinear,
    y: Float32Array,
  ): void {
    if (!onDevice(kernel, q.format)) {
      cpuCalls[kernel]++;
      fallback[kernel](x, rows, q, y);
      return;
    }
    assertQuantArgs(kernel, q, rows, x, y);
    if (rows === 0) return;
    const [inLen, outLen] =
      kernel === "qmatmul"
        ? [rows * q.inFeatures, rows * q.outFeatures]
        : [rows * q.outFeatures, rows * q.inFeatures];
    const id = layerId(q);
    const a = ensureArena(inLen + outLen);
    a.set(x.subarray(0, inLen), 0);
    if (!call({ op: kernel, id, rows, inOff: 0, outOff: inLen })) {
      cpuCalls[kernel]++;
      fallback[kernel](x, rows, q, y);
      return;
    }
    gpuCalls[kernel]++;
    y.set(arena.subarray(inLen, inLen + outLen));
  }

  // The fallback's wasm training and attention kernels (trainKernels / decodeKernels) serve this backend
  // too: attention, cross-entropy, RMSNorm, RoPE and SwiGLU run in wasm while the matrix products run on
  // the device (the decode matvec stays with qmatmul, on the device).
  shareTrainKernels(fallback, backend);
  shareDecodeKernels(fallback, backend);
  return backend;
}
