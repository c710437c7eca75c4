// Inference kernels of the wasm backend that are not Backend methods (decode_*.c): attention of a
// block of queries over a KV cache that lives in wasm memory. Model code reaches them with
// decodeKernels(backend), which is undefined for every other backend (use the reference then).
import { checkQuantCall } from "../check-args";
import { type AttentionArgs, checkAttentionArgs } from "../reference/decode-attention";
import { qmatvecI8Applies, qmatvecI16Applies } from "../reference/decode-qmatvec";
import type { QuantizedLinear } from "../types";
import { Q_DESC, Q_X, Q_Y } from "./layout";
import type { ResidentCache } from "./wasm-resident";
import type { WasmRuntime } from "./wasm-runtime";

/** Mirror of wasm/decode.h. */
const OP_ATTN = 40;
const AT_Q = 4;
const AT_OUT = 5;
const AT_KEYS = 6;
const AT_VALUES = 7;
const AT_ROWS = 8;
const AT_POS = 9;
const AT_CLEN = 10;
const AT_WINDOW = 11;
const AT_NHEADS = 12;
const AT_NKV = 13;
const AT_HS = 14;
const AT_SCALE = 15;
const OP_QMV = 41;
const QV_I8 = 6;

/** Score multiply-adds (rows · keys · qDim) above which attention is split across threads. */
export const ATTN_PARALLEL = 1 << 20;
/** Weights (N·K) above which the decode matvec is split across threads. */
export const QMV_PARALLEL = 1 << 21;

/** The inference kernels of a wasm backend. */
export interface DecodeKernels {
  /**
   * A zeroed `Float32Array` of `n` floats in wasm memory (kept valid across memory growth: these kernels
   * exist only on shared-memory backends); release it with {@link DecodeKernels.freeF32}.
   */
  allocF32(n: number): Float32Array;
  /** Releases a view from {@link DecodeKernels.allocF32}. */
  freeF32(view: Float32Array): void;
  /** Whether `a` lives in this backend's wasm memory. */
  owns(a: Float32Array): boolean;
  /**
   * {@link referenceAttention} in wasm SIMD (float32 sums, a polynomial `exp`). `keys` and `values`
   * must live in wasm memory ({@link DecodeKernels.allocF32}); `q` and `out` are copied when they do not.
   */
  attention(a: AttentionArgs): void;
  /** Whether {@link DecodeKernels.qmatvec} applies to `q` ({@link qmatvecI16Applies}). */
  qmatvecSupports(q: QuantizedLinear): boolean;
  /**
   * The activations' precision of {@link DecodeKernels.qmatvec} for 3–4-bit layers (the backend's
   * `decodeActivations`): `"int8"` (relaxed-SIMD module only) or `"int16"`. Other layers always use int16.
   */
  readonly qmatvecActivations: "int8" | "int16";
  /**
   * {@link referenceQmatvecI16} in wasm SIMD: `y = W·x` for one row, x rounded to int16 per weight group,
   * integer dot products (`i32x4.dot_i16x8_s`) over the resident 2/4/8-bit codes, scale and zero once per group.
   * With {@link DecodeKernels.qmatvecActivations} `"int8"`, a layer that {@link qmatvecI8Applies} (3–4 bits)
   * runs {@link referenceQmatvecI8} instead: x rounded to int8 with one step per 32-column block (the weight
   * group's step over a power of two), relaxed SIMD's
   * `i16x8.relaxed_dot_i8x16_i7x16_s` over the unsigned codes (twice the products per instruction).
   * The layer becomes resident as for `qmatmul`. `x` and `y` may live in wasm memory ({@link DecodeKernels.allocF32}):
   * then they are read and written in place (x when `inFeatures` is a whole number of 128-bit code blocks and it does
   * not overlap `y`), which saves the copies of a decode step.
   */
  qmatvec(q: QuantizedLinear, x: Float32Array, y: Float32Array): void;
}

const registry = new WeakMap<object, DecodeKernels>();

/**
 * `dst[d..d+n) = src[s..s+n)`: an element loop for short runs (no view object per call: these copies run
 * once per layer and token), `set` over a view for long ones.
 */
function copyInto(dst: Float32Array, d: number, src: Float32Array, s: number, n: number): void {
  if (n <= 2048) for (let i = 0; i < n; i++) dst[d + i] = src[s + i];
  else dst.set(src.subarray(s, s + n), d);
}

/** The inference kernels of `backend`, when it is a wasm backend with shared memory. */
export function decodeKernels(backend: object): DecodeKernels | undefined {
  return registry.get(backend);
}

/**
 * Lets `to` reach the attention kernels of the wasm backend `from` (when it has them): for a backend that
 * runs its own matrix products (e.g. a GPU one) and everything else on `from`. The decode matvec is not
 * shared (`qmatvecSupports` is false), so one-row products keep running on `to`'s `qmatmul`.
 */
export function shareDecodeKernels(from: object, to: object): void {
  const k = registry.get(from);
  if (k) registry.set(to, { ...k, qmatvecSupports: () => false });
}

/**
 * Registers the kernels of a new wasm backend (called by createWasmBackend); `int8`: the decode matvec rounds
 * the activations of 3–4-bit layers to int8 (the caller checks that the relaxed-SIMD module runs).
 */
export function registerDecodeKernels(
  backend: object,
  rt: WasmRuntime,
  allocF32: (n: number) => Float32Array,
  freeF32: (v: Float32Array) => void,
  cache: ResidentCache,
  int8 = false,
): void {
  // Without shared memory a growth detaches views: a cache could not stay in wasm memory.
  if (!rt.shared) return;
  const owns = (a: Float32Array) => rt.heap.owns(a);
  registry.set(backend, {
    allocF32(n) {
      const v = allocF32(n);
      v.fill(0);
      return v;
    },
    freeF32,
    owns,
    attention(a) {
      rt.check("attention");
      checkAttentionArgs(a, "quant-kernels: wasm attention");
      if (!owns(a.keys) || !owns(a.values))
        throw new Error("quant-kernels: wasm attention: keys and values must live in wasm memory (allocF32)");
      const { rows, nHeads, headSize: hs, pos, window } = a;
      if (rows === 0) return;
      const n = rows * nHeads * hs;
      const qIn = owns(a.q);
      const oIn = owns(a.out);
      const ctx = window > 0 ? Math.min(pos + rows, window) : pos + rows;
      rt.begin(256 + (qIn ? 0 : n * 4) + (oIn ? 0 : n * 4), ctx + 16);
      const heap = rt.heap;
      let qa: number;
      if (qIn) qa = a.q.byteOffset;
      else {
        qa = rt.take(n * 4);
        copyInto(heap.f32, qa >>> 2, a.q, 0, n);
      }
      const oa = oIn ? a.out.byteOffset : rt.take(n * 4);
      const { i32, f32, base } = rt.jobSlots(OP_ATTN);
      i32[base + AT_Q] = qa;
      i32[base + AT_OUT] = oa;
      i32[base + AT_KEYS] = a.keys.byteOffset + a.offset * 4;
      i32[base + AT_VALUES] = a.values.byteOffset + a.offset * 4;
      i32[base + AT_ROWS] = rows;
      i32[base + AT_POS] = pos;
      i32[base + AT_CLEN] = a.cacheLen;
      i32[base + AT_WINDOW] = window;
      i32[base + AT_NHEADS] = nHeads;
      i32[base + AT_NKV] = a.nKvHeads;
      i32[base + AT_HS] = hs;
      f32[base + AT_SCALE] = a.scale;
      rt.run(rows * ctx * nHeads * hs >= ATTN_PARALLEL ? rt.threads : 1);
      if (!oIn) copyInto(a.out, 0, rt.heap.f32, oa >>> 2, n);
    },
    qmatvecSupports: qmatvecI16Applies,
    qmatvecActivations: int8 ? "int8" : "int16",
    qmatvec(q, x, y) {
      rt.check("qmatvec");
      checkQuantCall("decode qmatvec", q, x, "x", q.inFeatures, 1, y, "y", q.outFeatures);
      if (!qmatvecI16Applies(q))
        throw new Error(
          `quant-kernels: wasm decode qmatvec: format ${q.format.name} is not a 1–8-bit affine format with whole-block groups (at most 512 columns for 8 bits)`,
        );
      const res = cache.quantized(q);
      const { N, K, Kp, nGroups } = res;
      const heap = rt.heap;
      const yIn = owns(y);
      // x in wasm memory is read in place when it needs no zero padding and does not overlap y (threads write
      // y while others may still be reading x); otherwise it is copied
      const xIn =
        Kp === K &&
        owns(x) &&
        !(yIn && x.byteOffset < y.byteOffset + N * 4 && y.byteOffset < x.byteOffset + K * 4);
      // scratch per thread: xq (Kp int16), a v128 correction, dx and Σ xq per group (decode_qmv.c)
      rt.begin(256 + (xIn ? 0 : Kp * 4) + (yIn ? 0 : N * 4), Kp / 2 + 6 * nGroups + 64);
      let xa: number;
      if (xIn) xa = x.byteOffset;
      else {
        xa = rt.take(Kp * 4);
        const f32 = heap.f32;
        copyInto(f32, xa >>> 2, x, 0, K);
        for (let i = (xa >>> 2) + K; i < (xa >>> 2) + Kp; i++) f32[i] = 0;
      }
      const ya = yIn ? y.byteOffset : rt.take(N * 4);
      const { i32, base } = rt.jobSlots(OP_QMV);
      i32[base + Q_DESC] = res.desc;
      i32[base + Q_X] = xa;
      i32[base + Q_Y] = ya;
      i32[base + QV_I8] = int8 && qmatvecI8Applies(q) ? 1 : 0;
      rt.run(N * K >= QMV_PARALLEL ? rt.threads : 1);
      if (!yIn) copyInto(y, 0, heap.f32, ya >>> 2, N);
    },
  });
}
