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
const OP_TRAIN_ATTN_FWD = 61;
const OP_TRAIN_ATTN_BWD = 62;
const TA_Q = 4;
const TA_K = 5;
const TA_V = 6;
const TA_OUT = 7;
const TA_STATS = 8;
const TA_B = 9;
const TA_T = 10;
const TA_S = 11;
const TA_H = 12;
const TA_HKV = 13;
const TA_HS = 14;
const TA_SCALE = 15;
const TA_CAUSAL = 16;
const TA_DOUT = 17;
const TA_DQ = 18;
const TA_DK = 19;
const TA_DV = 20;

const OP_TRAIN_SWIGLU_FWD = 63;
const OP_TRAIN_SWIGLU_BWD = 64;
const TS_A = 4;
const TS_B = 5;
const TS_OUT = 6;
const TS_G = 7;
const TS_DA = 8;
const TS_DB = 9;
const TS_N = 10;

const OP_TRAIN_RMSNORM_FWD = 65;
const OP_TRAIN_RMSNORM_BWD = 66;
const OP_TRAIN_RMSNORM_GW = 67;
const OP_TRAIN_ROPE = 68;
const TR_X = 4;
const TR_W = 5;
const TR_Y = 6;
const TR_INV = 7;
const TR_ROWS = 8;
const TR_D = 9;
const TR_EPS = 10;
const TR_G = 11;
const TR_GX = 12;
const TR_GW = 13;
const TR_COS = 14;
const TR_SIN = 15;
const TR_HS = 16;
const TR_T = 17;
const TR_HALF = 18;
const TR_ACC = 19;
const TR_SIGN = 20;

/** Elements (rows · d) above which the RMSNorm and RoPE kernels are split across threads. */
export const TRAIN_ROWS_PARALLEL = 1 << 15;

/** Elements above which the SwiGLU kernels are split across threads. */
export const TRAIN_SWIGLU_PARALLEL = 1 << 15;

/**
 * Floats per piece when the element- and row-wise kernels (SwiGLU, RMSNorm, RoPE) stage operands that
 * live outside wasm memory: such a call runs piece by piece, so the per-call arena holds one piece of
 * each operand, not the whole tensors (a training step's arena, and so wasm memory, which never shrinks,
 * stays at what one piece needs). Operands already in wasm memory run in one piece. Each piece computes
 * what the whole call would (the kernels are independent per element / row): the results are identical.
 */
export const TRAIN_STAGE_FLOATS = 1 << 18;

/** Query rows per block of the training attention kernel (train_attn.c's TA_BM). */
const TA_BM = 64;

/** Score multiply-adds (B·H·T·S·hs) above which training attention is split across threads. */
export const TRAIN_ATTN_PARALLEL = 1 << 20;

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

/**
 * Shapes of {@link TrainKernels.attentionForward} / {@link TrainKernels.attentionBackward}: q, out, dout,
 * dq `[B, T, H·hs]`; k, v, dk, dv `[B, S, Hkv·hs]` (row-major, dense); stats `[B, H, T, 2]`. Query t sees
 * keys `j ≤ t + S − T` when `causal`, all S otherwise.
 */
export interface TrainAttentionShape {
  B: number;
  T: number;
  S: number;
  H: number;
  Hkv: number;
  hs: number;
  scale: number;
  causal: boolean;
}

/**
 * Rows of a rotary embedding ({@link TrainKernels.rope}, {@link referenceRope}): `rows` rows of `D =
 * nHeads·hs` floats, row r at position index `t = r mod T`; `cos`/`sin` hold `[T × hs/2]` floats.
 */
export interface RopeRowsArgs {
  rows: number;
  D: number;
  hs: number;
  T: number;
  /** Pairs `(m, m + hs/2)` (Hugging Face `rotate_half`) instead of `(2m, 2m+1)`. */
  half: boolean;
  cos: Float32Array;
  sin: Float32Array;
  /** +1 rotates forward, −1 applies the inverse (transposed) rotation. */
  sign: 1 | -1;
  /** `dst +=` the rotated rows instead of `dst =`. */
  accumulate: boolean;
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
  /**
   * Grouped-query attention forward over whole sequences, in blocks of 64 query rows whose scores are
   * one packed GEMM against the keys the block's last row sees (masked key blocks are skipped):
   * `out_t = Σ_j softmax_j(scale · q_t·k_j) v_j`, and per row `stats = (max, 1/Σexp)` for backward. The
   * same numbers as autograd's `attention` op up to float32 summation order (a polynomial `exp`).
   */
  attentionForward(
    s: TrainAttentionShape,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    out: Float32Array,
    stats: Float32Array,
  ): void;
  /**
   * Its backward from the saved stats: accumulates (`+=`) dq, dk, dv (each may be null when not wanted).
   */
  attentionBackward(
    s: TrainAttentionShape,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    stats: Float32Array,
    dout: Float32Array,
    dq: Float32Array | null,
    dk: Float32Array | null,
    dv: Float32Array | null,
  ): void;
  /**
   * {@link referenceRmsNorm} in wasm SIMD, rows split across threads: `y = x · s · w` per row of `d`,
   * `s = 1/sqrt(mean(x²) + eps)` (written to `inv` when given).
   */
  rmsNorm(
    rows: number,
    d: number,
    x: Float32Array,
    w: Float32Array,
    eps: number,
    y: Float32Array,
    inv: Float32Array | null,
  ): void;
  /** {@link referenceRmsNormBackward} in wasm SIMD: accumulates (`+=`) gx and gw (either may be null). */
  rmsNormBackward(
    rows: number,
    d: number,
    x: Float32Array,
    w: Float32Array,
    inv: Float32Array,
    g: Float32Array,
    gx: Float32Array | null,
    gw: Float32Array | null,
  ): void;
  /** {@link referenceRope} in wasm SIMD, rows split across threads (`src` and `dst` must not overlap). */
  rope(a: RopeRowsArgs, src: Float32Array, dst: Float32Array): void;
  /** `out[i] = a[i] · σ(a[i]) · b[i]` for `i < n` (σ from a polynomial `exp`). */
  swiglu(n: number, a: Float32Array, b: Float32Array, out: Float32Array): void;
  /**
   * Its backward, accumulating (`+=`): `da[i] += g·b·σ(a)·(1 + a(1 − σ(a)))`, `db[i] += g·a·σ(a)`
   * (either may be null).
   */
  swigluBackward(
    n: number,
    a: Float32Array,
    b: Float32Array,
    g: Float32Array,
    da: Float32Array | null,
    db: Float32Array | null,
  ): void;
}

function checkSwiglu(n: number, arrays: Record<string, Float32Array | null>): void {
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`quant-kernels: train swiglu: n must be a non-negative integer, got ${n}`);
  for (const [name, a] of Object.entries(arrays))
    if (a !== null && a.length < n)
      throw new Error(`quant-kernels: train swiglu: ${name} holds ${a.length} floats, needs ${n}`);
}

function checkRows(
  op: string,
  rows: number,
  d: number,
  arrays: Record<string, [Float32Array | null, number]>,
) {
  if (!Number.isSafeInteger(rows) || rows < 0)
    throw new Error(`quant-kernels: train ${op}: rows must be a non-negative integer, got ${rows}`);
  if (!Number.isSafeInteger(d) || d < 1)
    throw new Error(`quant-kernels: train ${op}: row length must be a positive integer, got ${d}`);
  for (const [name, [a, n]] of Object.entries(arrays))
    if (a !== null && a.length < n)
      throw new Error(`quant-kernels: train ${op}: ${name} holds ${a.length} floats, needs ${n}`);
}

function checkRope(a: RopeRowsArgs, src: Float32Array, dst: Float32Array): void {
  const { hs, T, D } = a;
  if (!Number.isSafeInteger(hs) || hs < 2 || hs % 2 !== 0 || D % hs !== 0)
    throw new Error(`quant-kernels: train rope: head size ${hs} must be even and divide the row length ${D}`);
  if (!Number.isSafeInteger(T) || T < 1)
    throw new Error(`quant-kernels: train rope: T must be a positive integer, got ${T}`);
  if (a.sign !== 1 && a.sign !== -1)
    throw new Error(`quant-kernels: train rope: sign must be ±1, got ${a.sign}`);
  const nt = (T * hs) / 2;
  checkRows("rope", a.rows, D, {
    src: [src, a.rows * D],
    dst: [dst, a.rows * D],
    cos: [a.cos, nt],
    sin: [a.sin, nt],
  });
}

/**
 * RMSNorm's scalar reference (float64 sums):
 * ```
 * for r < rows: s = 1/sqrt(Σ_j x[r,j]²/d + eps);  inv[r] = s;  y[r,j] = x[r,j]·s·w[j]
 * ```
 */
export function referenceRmsNorm(
  rows: number,
  d: number,
  x: Float32Array,
  w: Float32Array,
  eps: number,
  y: Float32Array,
  inv: Float32Array | null,
): void {
  checkRows("rmsNorm", rows, d, { x: [x, rows * d], w: [w, d], y: [y, rows * d], inv: [inv, rows] });
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    let ss = 0;
    for (let j = 0; j < d; j++) ss += x[o + j] * x[o + j];
    const s = Math.fround(1 / Math.sqrt(ss / d + eps));
    if (inv) inv[r] = s;
    for (let j = 0; j < d; j++) y[o + j] = x[o + j] * s * w[j];
  }
}

/**
 * RMSNorm's backward reference, accumulating:
 * ```
 * s = inv[r];  c = s³/d · Σ_j g[r,j]·w[j]·x[r,j]
 * gx[r,j] += s·g[r,j]·w[j] − c·x[r,j];   gw[j] += Σ_r g[r,j]·x[r,j]·s
 * ```
 */
export function referenceRmsNormBackward(
  rows: number,
  d: number,
  x: Float32Array,
  w: Float32Array,
  inv: Float32Array,
  g: Float32Array,
  gx: Float32Array | null,
  gw: Float32Array | null,
): void {
  const n = rows * d;
  checkRows("rmsNormBackward", rows, d, {
    x: [x, n],
    w: [w, d],
    inv: [inv, rows],
    g: [g, n],
    gx: [gx, n],
    gw: [gw, d],
  });
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    const s = inv[r];
    if (gw) for (let j = 0; j < d; j++) gw[j] += g[o + j] * x[o + j] * s;
    if (gx) {
      let dot = 0;
      for (let j = 0; j < d; j++) dot += g[o + j] * w[j] * x[o + j];
      const c = (s * s * s * dot) / d;
      for (let j = 0; j < d; j++) gx[o + j] += s * g[o + j] * w[j] - c * x[o + j];
    }
  }
}

/**
 * RoPE's reference over rows (see {@link RopeRowsArgs}):
 * ```
 * t = r mod T;  per head h0, pair m (i0, i1) = (2m, 2m+1) or (m, m + hs/2):
 * c = cos[t, m], s = sign·sin[t, m];  y0 = x0·c − x1·s;  y1 = x0·s + x1·c;  dst (+)= (y0, y1)
 * ```
 */
export function referenceRope(a: RopeRowsArgs, src: Float32Array, dst: Float32Array): void {
  checkRope(a, src, dst);
  const { rows, D, hs, T, half, cos, sin, sign, accumulate } = a;
  const np = hs / 2;
  for (let r = 0; r < rows; r++) {
    const t = r % T;
    for (let h0 = r * D; h0 < (r + 1) * D; h0 += hs) {
      for (let m = 0; m < np; m++) {
        const i0 = half ? h0 + m : h0 + 2 * m;
        const i1 = half ? i0 + np : i0 + 1;
        const c = cos[t * np + m];
        const s = sign * sin[t * np + m];
        const y0 = Math.fround(src[i0] * c) - Math.fround(src[i1] * s);
        const y1 = Math.fround(src[i0] * s) + Math.fround(src[i1] * c);
        if (accumulate) {
          dst[i0] += y0;
          dst[i1] += y1;
        } else {
          dst[i0] = y0;
          dst[i1] = y1;
        }
      }
    }
  }
}

function checkAttention(s: TrainAttentionShape, sizes: Record<string, [Float32Array | null, number]>): void {
  const { B, T, S, H, Hkv, hs } = s;
  for (const [k, v] of Object.entries({ B, T, S, H, Hkv, hs }))
    if (!Number.isSafeInteger(v) || v < 1)
      throw new Error(`quant-kernels: train attention: ${k} must be a positive integer, got ${v}`);
  if (H % Hkv !== 0)
    throw new Error(`quant-kernels: train attention: H ${H} is not a multiple of Hkv ${Hkv}`);
  if (s.causal && S < T)
    throw new Error(`quant-kernels: train attention: causal needs S ≥ T, got S ${S}, T ${T}`);
  for (const [name, [a, n]] of Object.entries(sizes))
    if (a !== null && a.length < n)
      throw new Error(`quant-kernels: train attention: ${name} holds ${a.length} floats, needs ${n}`);
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

function writeShape(i32: Int32Array, f32: Float32Array, base: number, s: TrainAttentionShape): void {
  i32[base + TA_B] = s.B;
  i32[base + TA_T] = s.T;
  i32[base + TA_S] = s.S;
  i32[base + TA_H] = s.H;
  i32[base + TA_HKV] = s.Hkv;
  i32[base + TA_HS] = s.hs;
  f32[base + TA_SCALE] = s.scale;
  i32[base + TA_CAUSAL] = s.causal ? 1 : 0;
}

/** Element counts of the attention operands: queries and outputs, keys and values, row statistics. */
function attentionSizes(sh: TrainAttentionShape): { nq: number; nk: number; ns: number } {
  return { nq: sh.B * sh.T * sh.H * sh.hs, nk: sh.B * sh.S * sh.Hkv * sh.hs, ns: sh.B * sh.H * sh.T * 2 };
}

/**
 * Runs attention job `op` over shape `sh` with operand byte address `addrs[i]` in job slot `slots[i]`, on
 * every thread when the work reaches {@link TRAIN_ATTN_PARALLEL}.
 */
function runAttention(
  rt: WasmRuntime,
  op: number,
  sh: TrainAttentionShape,
  slots: readonly number[],
  addrs: readonly number[],
): void {
  const { i32, f32, base } = rt.jobSlots(op);
  writeShape(i32, f32, base, sh);
  for (let i = 0; i < slots.length; i++) i32[base + slots[i]] = addrs[i];
  rt.run(sh.B * sh.H * sh.T * sh.S * sh.hs >= TRAIN_ATTN_PARALLEL ? rt.threads : 1);
}

/**
 * Runs `run(start, count)` over `[0, units)` in pieces of at most `per` units (at least `align`, a
 * multiple of it) when one of `arrays` lives outside wasm memory and the whole would pass `per`; else
 * once over everything. Returns whether it split the call.
 */
function staged(
  owns: (a: Float32Array) => boolean,
  arrays: (Float32Array | null)[],
  units: number,
  per: number,
  align: number,
  run: (start: number, count: number) => void,
): boolean {
  const step = Math.max(align, Math.floor(per / align) * align);
  if (units <= step || arrays.every((a) => a === null || owns(a))) return false;
  for (let u = 0; u < units; u += step) run(u, Math.min(step, units - u));
  return true;
}

/** `a[start·w, (start + count)·w)`, or null. */
function piece(a: Float32Array | null, start: number, count: number, w: number): Float32Array | null {
  return a === null ? null : a.subarray(start * w, (start + count) * w);
}

/** Operands of one call: arrays already in wasm memory are used in place, the others copied through the arena. */
class Io {
  constructor(
    private readonly rt: WasmRuntime,
    arrays: (Float32Array | null)[],
    tmpFloats: number,
  ) {
    let need = 256;
    for (const x of arrays) if (x && !rt.heap.owns(x)) need += x.length * 4 + 64;
    rt.begin(need, tmpFloats);
  }

  /** The byte address of `x` in wasm memory (copied in when `copyIn` and it lives outside). */
  put(x: Float32Array, n: number, copyIn: boolean): number {
    if (this.rt.heap.owns(x)) return x.byteOffset;
    const a = this.rt.take(n * 4);
    if (copyIn) this.rt.heap.f32.set(x.subarray(0, n), a >>> 2);
    return a;
  }

  /** Copies `n` floats at `addr` back into `x` unless `x` lives there. */
  get(x: Float32Array, addr: number, n: number): void {
    if (this.rt.heap.owns(x)) return;
    x.set(this.rt.heap.f32.subarray(addr >>> 2, (addr >>> 2) + n));
  }
}

const registry = new WeakMap<object, TrainKernels>();

/** The training kernels of `backend`, when it is a wasm backend with shared memory. */
export function trainKernels(backend: object): TrainKernels | undefined {
  return registry.get(backend);
}

/**
 * Lets `to` reach the training kernels of the wasm backend `from` (when it has them): for a backend that
 * runs its own matrix products (e.g. a GPU one) and everything else on `from`.
 */
export function shareTrainKernels(from: object, to: object): void {
  const k = registry.get(from);
  if (k) registry.set(to, k);
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
  const kernels: TrainKernels = {
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
        heap.f32.set(a.logits.subarray(0, n), xa >>> 2);
      }
      const ta = rt.take(rows * 4);
      heap.i32.set(a.targets.subarray(0, rows), ta >>> 2);
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
      a.loss.set(f32.subarray(la >>> 2, (la >>> 2) + rows));
      a.lse.set(f32.subarray(sa >>> 2, (sa >>> 2) + rows));
      if (!xIn && a.grad) a.logits.set(f32.subarray(xa >>> 2, (xa >>> 2) + n));
    },
    attentionForward(sh, q, k, v, out, stats) {
      rt.check("attentionForward");
      const { nq, nk, ns } = attentionSizes(sh);
      checkAttention(sh, { q: [q, nq], k: [k, nk], v: [v, nk], out: [out, nq], stats: [stats, ns] });
      const io = new Io(rt, [q, k, v, out, stats], TA_BM * 2 * sh.S + 64);
      const a = [
        io.put(q, nq, true),
        io.put(k, nk, true),
        io.put(v, nk, true),
        io.put(out, nq, false),
        io.put(stats, ns, false),
      ];
      runAttention(rt, OP_TRAIN_ATTN_FWD, sh, [TA_Q, TA_K, TA_V, TA_OUT, TA_STATS], a);
      io.get(out, a[3], nq);
      io.get(stats, a[4], ns);
    },
    attentionBackward(sh, q, k, v, stats, dout, dq, dk, dv) {
      rt.check("attentionBackward");
      const { nq, nk, ns } = attentionSizes(sh);
      checkAttention(sh, {
        q: [q, nq],
        k: [k, nk],
        v: [v, nk],
        stats: [stats, ns],
        dout: [dout, nq],
        dq: [dq, nq],
        dk: [dk, nk],
        dv: [dv, nk],
      });
      const io = new Io(rt, [q, k, v, stats, dout, dq, dk, dv], TA_BM * 2 * sh.S + 64);
      const a = [
        io.put(q, nq, true),
        io.put(k, nk, true),
        io.put(v, nk, true),
        io.put(stats, ns, true),
        io.put(dout, nq, true),
        dq ? io.put(dq, nq, true) : 0,
        dk ? io.put(dk, nk, true) : 0,
        dv ? io.put(dv, nk, true) : 0,
      ];
      runAttention(rt, OP_TRAIN_ATTN_BWD, sh, [TA_Q, TA_K, TA_V, TA_STATS, TA_DOUT, TA_DQ, TA_DK, TA_DV], a);
      if (dq) io.get(dq, a[5], nq);
      if (dk) io.get(dk, a[6], nk);
      if (dv) io.get(dv, a[7], nk);
    },
    rmsNorm(rows, d, x, w, eps, y, inv) {
      rt.check("rmsNorm");
      const n = rows * d;
      checkRows("rmsNorm", rows, d, { x: [x, n], w: [w, d], y: [y, n], inv: [inv, rows] });
      if (!(eps >= 0)) throw new Error(`quant-kernels: train rmsNorm: eps ${eps} must be >= 0`);
      if (rows === 0) return;
      const per = Math.floor(TRAIN_STAGE_FLOATS / d);
      const split = staged(owns, [x, y], rows, per, 1, (r, m) =>
        kernels.rmsNorm(m, d, piece(x, r, m, d)!, w, eps, piece(y, r, m, d)!, piece(inv, r, m, 1)),
      );
      if (split) return;
      const io = new Io(rt, [x, w, y, inv], 16);
      const p = [
        io.put(x, n, true),
        io.put(w, d, true),
        io.put(y, n, false),
        inv ? io.put(inv, rows, false) : 0,
      ];
      const { i32, f32, base } = rt.jobSlots(OP_TRAIN_RMSNORM_FWD);
      i32[base + TR_X] = p[0];
      i32[base + TR_W] = p[1];
      i32[base + TR_Y] = p[2];
      i32[base + TR_INV] = p[3];
      i32[base + TR_ROWS] = rows;
      i32[base + TR_D] = d;
      f32[base + TR_EPS] = eps;
      rt.run(n >= TRAIN_ROWS_PARALLEL ? rt.threads : 1);
      io.get(y, p[2], n);
      if (inv) io.get(inv, p[3], rows);
    },
    rmsNormBackward(rows, d, x, w, inv, g, gx, gw) {
      rt.check("rmsNormBackward");
      const n = rows * d;
      checkRows("rmsNormBackward", rows, d, {
        x: [x, n],
        w: [w, d],
        inv: [inv, rows],
        g: [g, n],
        gx: [gx, n],
        gw: [gw, d],
      });
      if (rows === 0 || (!gx && !gw)) return;
      // gw sums over rows: only a call without it is split (the same sums either way)
      if (!gw) {
        const per = Math.floor(TRAIN_STAGE_FLOATS / d);
        const split = staged(owns, [x, g, gx], rows, per, 1, (r, m) =>
          kernels.rmsNormBackward(
            m,
            d,
            piece(x, r, m, d)!,
            w,
            piece(inv, r, m, 1)!,
            piece(g, r, m, d)!,
            piece(gx, r, m, d),
            null,
          ),
        );
        if (split) return;
      }
      const io = new Io(rt, [x, w, inv, g, gx, gw], 16);
      const p = [
        io.put(x, n, true),
        io.put(w, d, true),
        io.put(inv, rows, true),
        io.put(g, n, true),
        gx ? io.put(gx, n, true) : 0,
        gw ? io.put(gw, d, true) : 0,
      ];
      const nth = n >= TRAIN_ROWS_PARALLEL ? rt.threads : 1;
      for (const [op, out] of [
        [OP_TRAIN_RMSNORM_BWD, p[4]],
        [OP_TRAIN_RMSNORM_GW, p[5]],
      ]) {
        if (out === 0) continue;
        const { i32, base } = rt.jobSlots(op);
        i32[base + TR_X] = p[0];
        i32[base + TR_W] = p[1];
        i32[base + TR_INV] = p[2];
        i32[base + TR_G] = p[3];
        i32[base + TR_GX] = p[4];
        i32[base + TR_GW] = p[5];
        i32[base + TR_ROWS] = rows;
        i32[base + TR_D] = d;
        rt.run(nth);
      }
      if (gx) io.get(gx, p[4], n);
      if (gw) io.get(gw, p[5], d);
    },
    rope(a, src, dst) {
      rt.check("rope");
      checkRope(a, src, dst);
      const n = a.rows * a.D;
      if (n === 0) return;
      // whole sequences per piece (row r sits at position r mod T)
      const per = Math.floor(TRAIN_STAGE_FLOATS / a.D);
      const split = staged(owns, [src, dst], a.rows, per, a.T, (r, m) =>
        kernels.rope({ ...a, rows: m }, piece(src, r, m, a.D)!, piece(dst, r, m, a.D)!),
      );
      if (split) return;
      const nt = (a.T * a.hs) / 2;
      const io = new Io(rt, [src, dst, a.cos, a.sin], 16);
      const p = [
        io.put(src, n, true),
        io.put(dst, n, a.accumulate),
        io.put(a.cos, nt, true),
        io.put(a.sin, nt, true),
      ];
      const { i32, f32, base } = rt.jobSlots(OP_TRAIN_ROPE);
      i32[base + TR_X] = p[0];
      i32[base + TR_Y] = p[1];
      i32[base + TR_COS] = p[2];
      i32[base + TR_SIN] = p[3];
      i32[base + TR_ROWS] = a.rows;
      i32[base + TR_D] = a.D;
      i32[base + TR_HS] = a.hs;
      i32[base + TR_T] = a.T;
      i32[base + TR_HALF] = a.half ? 1 : 0;
      i32[base + TR_ACC] = a.accumulate ? 1 : 0;
      f32[base + TR_SIGN] = a.sign;
      rt.run(n >= TRAIN_ROWS_PARALLEL ? rt.threads : 1);
      io.get(dst, p[1], n);
    },
    swiglu(n, a, b, out) {
      rt.check("swiglu");
      checkSwiglu(n, { a, b, out });
      if (n === 0) return;
      const split = staged(owns, [a, b, out], n, TRAIN_STAGE_FLOATS, 1, (i, m) =>
        kernels.swiglu(m, piece(a, i, m, 1)!, piece(b, i, m, 1)!, piece(out, i, m, 1)!),
      );
      if (split) return;
      const io = new Io(rt, [a, b, out], 16);
      const p = [io.put(a, n, true), io.put(b, n, true), io.put(out, n, false)];
      const { i32, base } = rt.jobSlots(OP_TRAIN_SWIGLU_FWD);
      i32[base + TS_A] = p[0];
      i32[base + TS_B] = p[1];
      i32[base + TS_OUT] = p[2];
      i32[base + TS_N] = n;
      rt.run(n >= TRAIN_SWIGLU_PARALLEL ? rt.threads : 1);
      io.get(out, p[2], n);
    },
    swigluBackward(n, a, b, g, da, db) {
      rt.check("swigluBackward");
      checkSwiglu(n, { a, b, g, da, db });
      if (n === 0 || (!da && !db)) return;
      const split = staged(owns, [a, b, g, da, db], n, TRAIN_STAGE_FLOATS, 1, (i, m) =>
        kernels.swigluBackward(
          m,
          piece(a, i, m, 1)!,
          piece(b, i, m, 1)!,
          piece(g, i, m, 1)!,
          piece(da, i, m, 1),
          piece(db, i, m, 1),
        ),
      );
      if (split) return;
      const io = new Io(rt, [a, b, g, da, db], 16);
      const p = [
        io.put(a, n, true),
        io.put(b, n, true),
        io.put(g, n, true),
        da ? io.put(da, n, true) : 0,
        db ? io.put(db, n, true) : 0,
      ];
      const { i32, base } = rt.jobSlots(OP_TRAIN_SWIGLU_BWD);
      i32[base + TS_A] = p[0];
      i32[base + TS_B] = p[1];
      i32[base + TS_G] = p[2];
      i32[base + TS_DA] = p[3];
      i32[base + TS_DB] = p[4];
      i32[base + TS_N] = n;
      rt.run(n >= TRAIN_SWIGLU_PARALLEL ? rt.threads : 1);
      if (da) io.get(da, p[3], n);
      if (db) io.get(db, p[4], n);
    },
  };
  registry.set(backend, kernels);
}
