// Training kernels of the wasm backend that are not Backend methods (train_*.c): the row-wise part of
// a chunked cross-entropy over the vocabulary. Autograd / lora reach them with trainKernels(backend),
// which is undefined for every other backend (they use the TypeScript reference then).
import type { WasmRuntime } from "./wasm-runtime";

/** Mirror of wasm/train.h. */
const OP_TRAIN_CE = 60;
const TC_X = 4;
const TC_ROWS = 5;
const TC_V = 6;
const TC_TARGETS = 7;
const TC_IGNORE = 8;
const TC_LOSS = 9;
const TC_LSE = 10;
const TC_GRAD = 11;

/**
 * `exp(x − lse)` below `e^TRAIN_CE_CUTOFF` (2^-64) counts as 0 in the cross-entropy gradient: the row's
 * dropped mass (≤ vocab · 2^-64) is far below float32 resolution, and subnormal floats would slow the
 * next GEMM (`dlogits · W`) many times over (WebAssembly has no flush-to-zero mode).
 */
export const TRAIN_CE_CUTOFF = -44.36;

/** Vocabulary entries (rows · V) above which the cross-entropy rows are split across threads. */
export const CE_PARALLEL_ELEMS = 1 << 16;

/** Arguments of {@link TrainKernels.crossEntropyRows} and {@link referenceCrossEntropyRows}. */
export interface CrossEntropyRowsArgs {
  /** Logits `[rows × V]`, row-major; overwritten with the gradient when `grad`. */
  logits: Float32Array;
  rows: number;
  V: number;
  /** One target per row, in `[0, V)` or `ignoreIndex`. */
  targets: Int32Array;
  ignoreIndex: number;
  /** Out: per row `lse − logits[target]` (0 for an ignored row). */
  loss: Float32Array;
  /** Out: per row log Σ exp(logits) (0 for an ignored row). */
  lse: Float32Array;
  /** Also write `softmax − onehot(target)` into each row (an ignored row becomes 0). */
  grad: boolean;
}

/** The training kernels of a wasm backend. */
export interface TrainKernels {
  /**
   * A `Float32Array` of `n` floats in wasm memory (kernels read and write it in place, no copy; it stays
   * valid across memory growth); release it with {@link TrainKernels.freeF32}.
   */
  allocF32(n: number): Float32Array;
  /** Releases a view from {@link TrainKernels.allocF32}. */
  freeF32(view: Float32Array): void;
  /** Whether `a` lives in this backend's wasm memory. */
  owns(a: Float32Array): boolean;
  /**
   * {@link referenceCrossEntropyRows} in wasm SIMD (a polynomial `exp`, float64 sums), rows split
   * across threads. `logits` is copied in and out when it does not live in wasm memory.
   */
  crossEntropyRows(a: CrossEntropyRowsArgs): void;
}

function fail(msg: string): never {
  throw new Error(`quant-kernels: crossEntropyRows: ${msg}`);
}

/** Checks the arguments of {@link referenceCrossEntropyRows} (and the wasm kernel). */
export function checkCrossEntropyRowsArgs(a: CrossEntropyRowsArgs): void {
  const { rows, V } = a;
  if (!Number.isSafeInteger(rows) || rows < 0) fail(`rows must be a non-negative integer, got ${rows}`);
  if (!Number.isSafeInteger(V) || V < 1) fail(`V must be a positive integer, got ${V}`);
  if (a.logits.length < rows * V) fail(`logits hold ${a.logits.length} floats, need rows·V = ${rows * V}`);
  if (a.targets.length < rows) fail(`${a.targets.length} targets for ${rows} rows`);
  if (a.loss.length < rows || a.lse.length < rows) fail(`loss and lse need ${rows} floats`);
  for (let r = 0; r < rows; r++) {
    const t = a.targets[r];
    if (t !== a.ignoreIndex && !(t >= 0 && t < V))
      fail(`target ${t} at row ${r} is outside [0, ${V}) and is not the ignore index ${a.ignoreIndex}`);
  }
}

/**
 * The scalar reference:
 * ```
 * for each row r with target t ≠ ignoreIndex:
 *   lse[r] = log Σ_j exp(x[r,j]);  loss[r] = lse[r] − x[r,t]
 *   if grad: x[r,j] = exp(x[r,j] − lse[r]) (0 when x[r,j] − lse[r] < TRAIN_CE_CUTOFF);  x[r,t] −= 1
 * an ignored row: loss = lse = 0, and with grad the row becomes 0
 * ```
 */
export function referenceCrossEntropyRows(a: CrossEntropyRowsArgs): void {
  checkCrossEntropyRowsArgs(a);
  const { logits: x, rows, V, targets } = a;
  for (let r = 0; r < rows; r++) {
    const o = r * V;
    const t = targets[r];
    if (t === a.ignoreIndex) {
      a.loss[r] = 0;
      a.lse[r] = 0;
      if (a.grad) x.fill(0, o, o + V);
      continue;
    }
    let m = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < V; j++) if (x[o + j] > m) m = x[o + j];
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(x[o + j] - m);
    const lse = m + Math.log(s);
    a.lse[r] = lse;
    a.loss[r] = lse - x[o + t];
    if (!a.grad) continue;
    const l = Math.fround(lse);
    for (let j = 0; j < V; j++) {
      const z = Math.fround(x[o + j] - l);
      x[o + j] = z < TRAIN_CE_CUTOFF ? 0 : Math.exp(z);
    }
    x[o + t] -= 1;
  }
}

const registry = new WeakMap<object, TrainKernels>();

/** The training kernels of `backend`, when it is a wasm backend with shared memory. */
export function trainKernels(backend: object): TrainKernels | undefined {
  return registry.get(backend);
}

/** Registers the kernels of a new wasm backend (called by createWasmBackend). */
export function registerTrainKernels(
  backend: object,
  rt: WasmRuntime,
  allocF32: (n: number) => Float32Array,
  freeF32: (v: Float32Array) => void,
): void {
  // Without shared memory a growth detaches views: buffers could not stay in wasm memory.
  if (!rt.shared) return;
  const owns = (a: Float32Array) => rt.heap.owns(a);
  registry.set(backend, {
    allocF32,
    freeF32,
    owns,
    crossEntropyRows(a) {
      rt.check("crossEntropyRows");
      checkCrossEntropyRowsArgs(a);
      const { rows, V } = a;
      if (rows === 0) return;
      const n = rows * V;
      const xIn = owns(a.logits);
      rt.begin(256 + (xIn ? 0 : n * 4) + rows * 12 + 192, 16);
      const heap = rt.heap;
      let xa: number;
      if (xIn) xa = a.logits.byteOffset;
      else {
        xa = rt.take(n * 4);
        heap.f32.set(a.logits.subarray(0, n), xa >> 2);
      }
      const ta = rt.take(rows * 4);
      heap.i32.set(a.targets.subarray(0, rows), ta >> 2);
      const la = rt.take(rows * 4);
      const sa = rt.take(rows * 4);
      const { i32, base } = rt.jobSlots(OP_TRAIN_CE);
      i32[base + TC_X] = xa;
      i32[base + TC_ROWS] = rows;
      i32[base + TC_V] = V;
      i32[base + TC_TARGETS] = ta;
      i32[base + TC_IGNORE] = a.ignoreIndex;
      i32[base + TC_LOSS] = la;
      i32[base + TC_LSE] = sa;
      i32[base + TC_GRAD] = a.grad ? 1 : 0;
      rt.run(n >= CE_PARALLEL_ELEMS ? rt.threads : 1);
      const f32 = rt.heap.f32;
      a.loss.set(f32.subarray(la >> 2, (la >> 2) + rows));
      a.lse.set(f32.subarray(sa >> 2, (sa >> 2) + rows));
      if (!xIn && a.grad) a.logits.set(f32.subarray(xa >> 2, (xa >> 2) + n));
    },
  });
}
