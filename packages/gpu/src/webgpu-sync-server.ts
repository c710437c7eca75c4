// The worker half of the synchronous WebGPU backend: owns the device, runs the WebGPU kernels of
// webgpu-backend.ts on requests from the blocked caller, and writes results into the shared arena.
/// <reference types="@webgpu/types" />
import type { Backend, QuantFormat, QuantizedLinear } from "@int21/quant-kernels";
import {
  CTRL_WORDS,
  type InitReply,
  ST_BUSY,
  ST_DEAD,
  ST_DONE,
  ST_ERROR,
  ST_FALLBACK,
  type SyncRequest,
  type WireLayer,
  writeText,
} from "./sync-protocol";
import { createWebGpuBackend, type WebGpuBackend } from "./webgpu-backend";

/** How the server talks to its caller: a Node `parentPort` or a web worker's global scope, adapted. */
export interface SyncEndpoint {
  post(message: InitReply): void;
  onMessage(handler: (message: SyncRequest) => void): void;
}

/** Thrown by the worker's fallback: the caller's thread runs the call on its own CPU backend. */
class NeedsFallback extends Error {}

const needsFallback = (): never => {
  throw new NeedsFallback("run on the CPU fallback");
};

/** The worker's fallback: every kernel hands the call back to the caller (whose fallback is fast). */
const HAND_BACK: Backend = {
  name: "caller",
  supports: () => false,
  sgemm: needsFallback,
  dequantize: needsFallback,
  qmatmul: needsFallback,
  qmatmulT: needsFallback,
  adamw: needsFallback,
  dispose() {},
};

function layerFrom(w: WireLayer): QuantizedLinear {
  return {
    format: w.format as unknown as QuantFormat,
    outFeatures: w.N,
    inFeatures: w.K,
    qweight: {
      bits: w.format.bits as QuantFormat["bits"],
      rows: w.N,
      cols: w.K,
      wordsPerRow: w.wordsPerRow,
      words: w.words,
    },
    scales: w.scales,
    zeros: w.zeros,
    ...(w.gIdx ? { gIdx: w.gIdx } : {}),
  };
}

/**
 * Serves requests on `endpoint` until `dispose`. The first message must be `init` (device options and
 * the shared control and text buffers); the answer says which device was made, or why none was.
 * `onFatal` is what the worker entry calls on an uncaught error: it marks the caller's call dead.
 */
export function serveWebGpuRequests(endpoint: SyncEndpoint): { onFatal(e: unknown): void } {
  let ctrl: Int32Array | null = null;
  let text: SharedArrayBuffer | null = null;
  let arena: Float32Array | null = null;
  let backend: WebGpuBackend | null = null;
  const layers = new Map<number, QuantizedLinear>();
  const constants = new Map<number, Float32Array>();
  /** Adam state keys (the async backend keeps m and v on the device per key) and the last step each holds. */
  const adamKeys = new Map<number, { step: number }>();

  const finish = (state: number, message?: string) => {
    if (!ctrl || !text) return;
    ctrl[1] = message === undefined ? 0 : writeText(text, message);
    Atomics.store(ctrl, 0, state);
    Atomics.notify(ctrl, 0);
  };

  const get = <T>(m: Map<number, T>, id: number, what: string): T => {
    const v = m.get(id);
    if (v === undefined) throw new Error(`gpu: WebGPU worker: unknown ${what} id ${id}`);
    return v;
  };

  const view = (off: number, len: number): Float32Array => {
    if (!arena) throw new Error("gpu: WebGPU worker: no arena");
    return arena.subarray(off, off + len);
  };

  async function run(r: SyncRequest): Promise<void> {
    const b = backend;
    if (!b) throw new Error("gpu: WebGPU worker: no device");
    switch (r.op) {
      case "qmatmul":
      case "qmatmulT": {
        const q = get(layers, r.id, "layer");
        const [inLen, outLen] =
          r.op === "qmatmul"
            ? [r.rows * q.inFeatures, r.rows * q.outFeatures]
            : [r.rows * q.outFeatures, r.rows * q.inFeatures];
        const x = view(r.inOff, inLen);
        const y = view(r.outOff, outLen);
        if (r.op === "qmatmul") await b.qmatmulAsync(x, r.rows, q, y);
        else await b.qmatmulTAsync(x, r.rows, q, y);
        return;
      }
      case "dequantize": {
        const q = get(layers, r.id, "layer");
        await b.dequantizeAsync(q, view(r.outOff, q.outFeatures * q.inFeatures));
        return;
      }
      case "sgemm": {
        const B = r.constB === null ? view(r.bOff, r.bLen) : get(constants, r.constB, "constant");
        await b.sgemmAsync({
          M: r.M,
          N: r.N,
          K: r.K,
          A: view(r.aOff, r.aLen),
          B,
          C: view(r.outOff, r.M * r.N),
          transA: r.transA,
          transB: r.transB,
          lda: r.lda,
          ldb: r.ldb,
          bOffset: r.constB === null ? 0 : r.bOff,
          bConst: r.constB !== null,
        });
        return;
      }
      case "adamw": {
        let key = adamKeys.get(r.id);
        if (!r.load && key?.step !== r.step - 1) needsFallback();
        if (!key) {
          key = { step: -1 };
          adamKeys.set(r.id, key);
        }
        key.step = -1;
        const out = view(r.outOff, 3 * r.n);
        const m = out.subarray(r.n, 2 * r.n);
        const v = out.subarray(2 * r.n, 3 * r.n);
        if (r.load) {
          m.set(view(r.mOff, r.n));
          v.set(view(r.vOff, r.n));
        }
        out.subarray(0, r.n).set(view(r.pOff, r.n));
        await b.adamwAsync(
          {
            params: out,
            offset: 0,
            grads: view(r.gOff, r.n),
            m,
            v,
            lr: r.lr,
            beta1: r.beta1,
            beta2: r.beta2,
            eps: r.eps,
            weightDecay: r.weightDecay,
            step: r.step,
            decoupled: r.decoupled,
          },
          { key, reload: r.load },
        );
        key.step = r.step;
        return;
      }
      default:
        throw new Error(`gpu: WebGPU worker: unknown request ${(r as { op: string }).op}`);
    }
  }

  endpoint.onMessage((r) => {
    switch (r.op) {
      case "init":
        ctrl = new Int32Array(r.ctrl, 0, CTRL_WORDS);
        text = r.text;
        void createWebGpuBackend({ ...r.device, fallback: HAND_BACK, warn: () => {} }).then(
          (b) => {
            if (b.context) {
              backend = b;
              endpoint.post({
                op: "ready",
                ok: true,
                source: b.context.source,
                featureLevel: b.context.featureLevel,
                adapter: b.context.adapter,
              });
            } else endpoint.post({ op: "ready", ok: false, reason: b.fallbackReason ?? "no device" });
          },
          (e: Error) => endpoint.post({ op: "ready", ok: false, reason: e.message }),
        );
        return;
      case "arena":
        arena = new Float32Array(r.arena);
        return;
      case "layer":
        layers.set(r.id, layerFrom(r.layer));
        return;
      case "constB":
        constants.set(r.id, r.data);
        return;
      case "free":
        layers.delete(r.id);
        constants.delete(r.id);
        adamKeys.delete(r.id);
        return;
      case "dispose":
        layers.clear();
        constants.clear();
        adamKeys.clear();
        backend?.dispose();
        backend = null;
        return;
      default:
        if (ctrl && Atomics.load(ctrl, 0) !== ST_BUSY) return;
        run(r).then(
          () => finish(ST_DONE),
          (e: unknown) =>
            e instanceof NeedsFallback
              ? finish(ST_FALLBACK)
              : finish(ST_ERROR, (e as Error)?.message ?? String(e)),
        );
    }
  });

  return {
    onFatal(e: unknown) {
      finish(ST_DEAD, `gpu: WebGPU worker failed: ${(e as Error)?.message ?? String(e)}`);
    },
  };
}
