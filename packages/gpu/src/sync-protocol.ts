// The wire between the synchronous WebGPU backend (caller's thread) and the worker that owns the device.
//
// The caller posts a request with postMessage and blocks in Atomics.wait on a state word; the worker runs
// the WebGPU kernel, writes the result into a shared arena, sets the state word and notifies. Inputs and
// outputs travel through the arena (a SharedArrayBuffer, replaced by a larger one when a call needs it);
// quantized records and constant GEMM operands are posted once and kept by the worker under an id.

/** Words of the control block (an `Int32Array` over a SharedArrayBuffer). */
export const CTRL_WORDS = 4;
/** Control word 0: the state of the current call. */
export const ST_IDLE = 0;
/** A request is posted and the worker has not finished it. */
export const ST_BUSY = 1;
/** The result is in the arena. */
export const ST_DONE = 2;
/** The kernel threw; the message is in the text buffer (length in word 1). */
export const ST_ERROR = 3;
/** The worker's device cannot run this call (limits, format): the caller runs it on its CPU fallback. */
export const ST_FALLBACK = 4;
/** The worker hit an uncaught error and stopped serving; the message is in the text buffer. */
export const ST_DEAD = 5;
/** Bytes of the shared text buffer that carries error messages back. */
export const TEXT_BYTES = 8192;

/** The data fields of a QuantFormat (records may carry functions, which do not cross postMessage). */
export interface WireFormat {
  id: number;
  name: string;
  bits: number;
  groupSize: number;
  symmetric: boolean;
  scaleDtype: string;
  decode?: string;
}

/** A QuantizedLinear as posted once to the worker (copies of the caller's arrays). */
export interface WireLayer {
  format: WireFormat;
  N: number;
  K: number;
  wordsPerRow: number;
  words: Uint32Array;
  scales: Float32Array;
  zeros: Float32Array;
  gIdx?: Int32Array;
}

/** Device options that cross to the worker (the GPU object itself cannot). */
export interface WireDeviceOptions {
  dawnFlags?: string[];
  powerPreference?: GPUPowerPreference;
}

/** Requests, caller → worker. Offsets and lengths are in floats of the arena. */
export type SyncRequest =
  | { op: "init"; ctrl: SharedArrayBuffer; text: SharedArrayBuffer; device: WireDeviceOptions }
  | { op: "arena"; arena: SharedArrayBuffer }
  | { op: "layer"; id: number; layer: WireLayer }
  | { op: "constB"; id: number; data: Float32Array }
  | { op: "free"; id: number }
  | { op: "qmatmul" | "qmatmulT"; id: number; rows: number; inOff: number; outOff: number }
  | { op: "dequantize"; id: number; outOff: number }
  | {
      op: "sgemm";
      M: number;
      N: number;
      K: number;
      transA: boolean;
      transB: boolean;
      lda: number;
      ldb: number;
      aOff: number;
      aLen: number;
      /** B in the arena (`bOff`, `bLen`), or a constant posted before (`constB` id, `bOff` into it). */
      constB: number | null;
      bOff: number;
      bLen: number;
      outOff: number;
    }
  | {
      /**
       * One Adam / AdamW update of `n` values. The arena holds params at `pOff`, grads at `gOff` and, when
       * `load`, m and v at `mOff` / `vOff`; the worker writes `params | m | v` (3n) at `outOff`. Without `load`
       * the worker reuses its resident m and v of `id` (answering ST_FALLBACK when it holds no step − 1).
       */
      op: "adamw";
      id: number;
      n: number;
      load: boolean;
      pOff: number;
      gOff: number;
      mOff: number;
      vOff: number;
      outOff: number;
      lr: number;
      beta1: number;
      beta2: number;
      eps: number;
      weightDecay: number;
      step: number;
      decoupled: boolean;
    }
  | { op: "dispose" };

/** The worker's answer to `init`, posted back (the caller is not blocked then). */
export type InitReply =
  | { op: "ready"; ok: true; source: string; featureLevel: "core" | "compatibility"; adapter: string }
  | { op: "ready"; ok: false; reason: string };

/** Writes `message` (UTF-8, truncated to the buffer) into `text` and returns its length in bytes. */
export function writeText(text: SharedArrayBuffer, message: string): number {
  const bytes = new TextEncoder().encode(message);
  const n = Math.min(bytes.length, text.byteLength);
  new Uint8Array(text).set(bytes.subarray(0, n));
  return n;
}

/** Reads `length` bytes of UTF-8 back from `text`. */
export function readText(text: SharedArrayBuffer, length: number): string {
  // TextDecoder refuses views of shared memory: copy out first.
  return new TextDecoder().decode(new Uint8Array(text).slice(0, length));
}
