import {
  type DecodeKernels,
  type Linear,
  type QuantizedLinear,
  type TrainKernels,
  decodeKernels,
  trainKernels,
} from "@int21/quant-kernels";
import {
  type BlockAttention,
  type BlockBiasName,
  type BlockHeadNormName,
  type BlockNormName,
  type BlockOps,
  attentionScale,
  llamaBlock,
} from "./block";
import { CONFIG_NUMBER_FIELDS, type LlamaConfig, headSize, kvDim, layerWindow } from "./config";
import { embeddingRows } from "./embedding";
import { residentKvCache, weightKernels } from "./kv-cache";
import { type RowBuffers, type RunState, ensureContext } from "./run-state";

export type { RowBuffers };
import type { LayerWeights, LinearName, LlamaWeights } from "./weights";

// ---------------------------------------------------------------------------------------------
// Blocks. Each writes into buffers it is given and allocates nothing.

/**
 * RMSNorm of `rows` rows of width `n`: `out[r,j] = w[j] · x[r,j] / sqrt(mean_j x[r,j]² + eps)`.
 * `out` may alias `x`.
 */
export function rmsnorm(
  out: Float32Array,
  x: Float32Array,
  w: Float32Array,
  rows: number,
  n: number,
  eps: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    let ss = 0;
    for (let j = 0; j < n; j++) ss += x[o + j] * x[o + j];
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let j = 0; j < n; j++) out[o + j] = w[j] * (inv * x[o + j]);
  }
}

/**
 * Rotary embedding in place over `rows` rows of width `width` (a multiple of `hs`), row r at
 * position `pos + r`. Pairs (i, i+1), i even, inside each head rotate by angle `pos · invFreq[(i mod hs)/2]`
 * (`θ^(−(i mod hs)/hs)`, scaled by the config's `ropeScaling` / `ropeFreqFactors`; tables in `state`):
 * ```
 * v[i]   = v[i]·cos − v[i+1]·sin
 * v[i+1] = v[i]·sin + v[i+1]·cos
 * ```
 */
export function rope(
  v: Float32Array,
  rows: number,
  width: number,
  hs: number,
  pos: number,
  state: RunState,
): void {
  const half = hs / 2;
  const { ropeCos, ropeSin } = state;
  for (let r = 0; r < rows; r++) {
    const t = (pos + r) * half;
    // head by head: pair m of every head reads table entry t + m
    for (let h = r * width; h < (r + 1) * width; h += hs) {
      for (let m = 0, i = h; m < half; m++, i += 2) {
        const c = ropeCos[t + m];
        const s = ropeSin[t + m];
        const v0 = v[i];
        const v1 = v[i + 1];
        v[i] = v0 * c - v1 * s;
        v[i + 1] = v0 * s + v1 * c;
      }
    }
  }
}

/**
 * Causal grouped-query attention for `rows` queries at positions `pos..pos+rows-1` of layer `l`,
 * reading keys/values from the cache. Query head h reads kv head `h / (nHeads/nKvHeads)`.
 * ```
 * att[t]      = q[r,h]·k[t,g] · scale                 first ≤ t ≤ pos + r
 * att[t]      = cap · tanh(att[t] / cap)              with attnLogitSoftcap
 * out[r,h,:]  = Σ_t softmax(att)[t] · v[t,g,:]
 * ```
 * `scale` is `1/sqrt(headSize)` (or `queryPreAttnScalar^−½`); `first` is 0, or `pos + r − window + 1`
 * with a sliding `window` (default: the config's window of layer `l`).
 */
export function attention(
  state: RunState,
  l: number,
  rows: number,
  pos: number,
  out: Float32Array,
  window = layerWindow(state.config, l),
): void {
  const c = state.config;
  const { nHeads } = c;
  const hs = headSize(c);
  const kv = kvDim(c);
  const qd = nHeads * hs;
  const group = nHeads / c.nKvHeads;
  const scale = attentionScale(c);
  const cap = c.attnLogitSoftcap ?? 0;
  const { q, att, keyCache, valueCache } = state;
  const loff = state.cacheOffset[l];
  const clen = state.cacheLen[l];
  const hs4 = hs - (hs % 4);
  for (let r = 0; r < rows; r++) {
    const last = pos + r;
    const first = window > 0 ? Math.max(0, last - window + 1) : 0;
    // Keys first..last: n1 of them from cache slot slot0 on, then n - n1 from slot 0 (a wrapped ring).
    const n = last - first + 1;
    const slot0 = first % clen;
    const n1 = Math.min(n, clen - slot0);
    for (let h = 0; h < nHeads; h++) {
      const qo = r * qd + h * hs;
      const ho = loff + Math.floor(h / group) * hs;
      const start = ho + slot0 * kv;
      // scores q·k · scale, four partial sums
      let max = Number.NEGATIVE_INFINITY;
      for (let t = 0, ko = start; t < n; t++, ko += kv) {
        if (t === n1) ko = ho;
        let s0 = 0;
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        let i = 0;
        for (; i < hs4; i += 4) {
          s0 += q[qo + i] * keyCache[ko + i];
          s1 += q[qo + i + 1] * keyCache[ko + i + 1];
          s2 += q[qo + i + 2] * keyCache[ko + i + 2];
          s3 += q[qo + i + 3] * keyCache[ko + i + 3];
        }
        for (; i < hs; i++) s0 += q[qo + i] * keyCache[ko + i];
        const sc = (s0 + s1 + (s2 + s3)) * scale;
        att[t] = sc;
        if (sc > max) max = sc;
      }
      if (cap > 0) {
        max = Number.NEGATIVE_INFINITY;
        for (let t = 0; t < n; t++) {
          const sc = cap * Math.tanh(att[t] / cap);
          att[t] = sc;
          if (sc > max) max = sc;
        }
      }
      let sum = 0;
      for (let t = 0; t < n; t++) {
        const e = Math.exp(att[t] - max);
        att[t] = e;
        sum += e;
      }
      const inv = 1 / sum;
      // weighted sum of values, four output columns at a time held in registers
      const oo = r * qd + h * hs;
      let i = 0;
      for (; i < hs4; i += 4) {
        let a0 = 0;
        let a1 = 0;
        let a2 = 0;
        let a3 = 0;
        for (let t = 0, vo = start + i; t < n1; t++, vo += kv) {
          const a = att[t];
          a0 += a * valueCache[vo];
          a1 += a * valueCache[vo + 1];
          a2 += a * valueCache[vo + 2];
          a3 += a * valueCache[vo + 3];
        }
        for (let t = n1, vo = ho + i; t < n; t++, vo += kv) {
          const a = att[t];
          a0 += a * valueCache[vo];
          a1 += a * valueCache[vo + 1];
          a2 += a * valueCache[vo + 2];
          a3 += a * valueCache[vo + 3];
        }
        out[oo + i] = a0 * inv;
        out[oo + i + 1] = a1 * inv;
        out[oo + i + 2] = a2 * inv;
        out[oo + i + 3] = a3 * inv;
      }
      for (; i < hs; i++) {
        let a0 = 0;
        for (let t = 0, vo = start + i; t < n1; t++, vo += kv) a0 += att[t] * valueCache[vo];
        for (let t = n1, vo = ho + i; t < n; t++, vo += kv) a0 += att[t] * valueCache[vo];
        out[oo + i] = a0 * inv;
      }
    }
  }
}

/** `h[i] = silu(h[i]) · g[i] = h[i] / (1 + e^(−h[i])) · g[i]` for the first n entries. */
export function swiglu(h: Float32Array, g: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const a = h[i];
    h[i] = (a / (1 + Math.exp(-a))) * g[i];
  }
}

/**
 * `h[i] = gelu_tanh(h[i]) · g[i]` for the first n entries (Gemma's GeGLU), with
 * `gelu_tanh(a) = a/2 · (1 + tanh(sqrt(2/π) · (a + 0.044715 a³)))`.
 */
export function geglu(h: Float32Array, g: Float32Array, n: number): void {
  const k = Math.sqrt(2 / Math.PI);
  for (let i = 0; i < n; i++) {
    const a = h[i];
    h[i] = 0.5 * a * (1 + Math.tanh(k * (a + 0.044715 * a * a * a))) * g[i];
  }
}

/** `y[r, j] += b[j]` over `rows` rows of width `b.length`. */
export function addBias(y: Float32Array, b: Float32Array, rows: number): void {
  const n = b.length;
  for (let r = 0, o = 0; r < rows; r++, o += n) for (let j = 0; j < n; j++) y[o + j] += b[j];
}

/** `v[i] = cap · tanh(v[i] / cap)` for the first n entries (soft-capping). */
export function softcap(v: Float32Array, n: number, cap: number): void {
  for (let i = 0; i < n; i++) v[i] = cap * Math.tanh(v[i] / cap);
}

/** Per linear: the wasm decode kernels that run its one-row products, or null (its own forward). */
const decodeLinears = new WeakMap<Linear, DecodeKernels | null>();

function decodeKernelsOf(lin: Linear): DecodeKernels | null {
  let k = decodeLinears.get(lin);
  if (k === undefined) {
    const l = lin as Linear & { q?: QuantizedLinear; backend?: object };
    const dk = l.q !== undefined && l.backend !== undefined ? decodeKernels(l.backend) : undefined;
    k = dk !== undefined && l.q !== undefined && dk.qmatvecSupports(l.q) ? dk : null;
    decodeLinears.set(lin, k);
  }
  return k;
}

/**
 * `y = x·Wᵀ (+ bias)` for `rows` rows. One row of a packed 1–8-bit affine layer on a wasm backend runs the
 * decode matvec (`DecodeKernels.qmatvec`: x rounded to int16 per weight group, integer dot products);
 * everything else runs `lin.forward`.
 */
export function linearForward(lin: Linear, x: Float32Array, rows: number, y: Float32Array): void {
  if (rows === 1) {
    const k = decodeKernelsOf(lin);
    if (k !== null) {
      const l = lin as Linear & { q: QuantizedLinear; bias?: Float32Array };
      k.qmatvec(l.q, x, y);
      if (l.bias) addBias(y, l.bias, 1);
      return;
    }
  }
  lin.forward(x, rows, y);
}

/**
 * {@link BlockOps} over Float32Array rows: `rows` rows of {@link RowBuffers}, every op in place or
 * into its fixed buffer, allocating nothing (norm → xb, projections → q / k / v / xb2 / hb / hb2,
 * attention → xb, post norms, biases, head norms, RoPE and the gate in place, residual adds into x).
 * RoPE and attention depend on where the rows sit (the inference KV cache, or stacked calibration
 * windows) and are left to subclasses; {@link RowOps.project} runs one projection (`linearForward`).
 */
export abstract class RowOps implements BlockOps<Float32Array> {
  /** Rows in the buffers this block runs on. */
  rows = 0;
  constructor(
    readonly config: LlamaConfig,
    readonly buf: RowBuffers,
  ) {}

  norm(x: Float32Array, L: LayerWeights, name: BlockNormName): Float32Array {
    const c = this.config;
    const out = name === "attnNorm" || name === "ffnNorm" ? this.buf.xb : x;
    rmsnorm(out, x, L[name] as Float32Array, this.rows, c.dim, c.normEps);
    return out;
  }

  linear(x: Float32Array, L: LayerWeights, name: LinearName, _layer: number): Float32Array {
    const b = this.buf;
    const out =
      name === "wq"
        ? b.q
        : name === "wk"
          ? b.k
          : name === "wv"
            ? b.v
            : name === "w1"
              ? b.hb
              : name === "w3"
                ? b.hb2
                : b.xb2;
    this.project(L[name], x, out, name);
    return out;
  }

  /** `out = x·linᵀ` over {@link rows} rows. */
  protected project(lin: Linear, x: Float32Array, out: Float32Array, _name: LinearName): void {
    linearForward(lin, x, this.rows, out);
  }

  bias(y: Float32Array, L: LayerWeights, name: BlockBiasName): Float32Array {
    addBias(y, L[name] as Float32Array, this.rows);
    return y;
  }

  headNorm(t: Float32Array, L: LayerWeights, name: BlockHeadNormName, heads: number): Float32Array {
    const c = this.config;
    rmsnorm(t, t, L[name] as Float32Array, this.rows * heads, headSize(c), c.normEps);
    return t;
  }

  abstract rope(t: Float32Array, heads: number): Float32Array;

  abstract attention(q: Float32Array, k: Float32Array, v: Float32Array, at: BlockAttention): Float32Array;

  gate(a: Float32Array, b: Float32Array, act: "silu" | "gelu_tanh"): Float32Array {
    const n = this.rows * this.config.hiddenDim;
    if (act === "gelu_tanh") geglu(a, b, n);
    else swiglu(a, b, n);
    return a;
  }

  residual(x: Float32Array, y: Float32Array): Float32Array {
    const n = this.rows * this.config.dim;
    for (let i = 0; i < n; i++) x[i] += y[i];
    return x;
  }
}

/** The activation buffers {@link residentRows} moves into wasm memory. */
const ROW_FIELDS = ["x", "xb", "xb2", "hb", "hb2", "q", "k", "v"] as const;
type RowField = (typeof ROW_FIELDS)[number];

/** Per run state: the decode kernels whose wasm memory holds its activation buffers, and those views. */
const rowHomes = new WeakMap<RunState, { kernels: DecodeKernels; views: Float32Array[] }>();
const rowRegistry = new FinalizationRegistry<{ kernels: DecodeKernels; views: Float32Array[] }>((h) => {
  try {
    for (const v of h.views) h.kernels.freeF32(v);
  } catch {
    // the backend's memory went away first
  }
});

/**
 * Moves `state`'s activation buffers (x, xb, xb2, hb, hb2, q, k, v; not the logits) into the wasm memory of
 * `kernels`, once per state, keeping their contents: the matrix products, attention and gate then read and
 * write them in place instead of copying each operand in and out per call. Nothing moves when the state
 * lives in another backend's memory already (its kernels copy as before); a collected state frees its copies.
 */
function residentRows(state: RunState, kernels: DecodeKernels): void {
  if (rowHomes.has(state)) return;
  const views: Float32Array[] = [];
  const mutable = state as { -readonly [F in RowField]: Float32Array };
  for (const f of ROW_FIELDS) {
    const v = kernels.allocF32(state[f].length);
    v.set(state[f]);
    mutable[f] = v;
    views.push(v);
  }
  const home = { kernels, views };
  rowHomes.set(state, home);
  rowRegistry.register(state, home);
}

/** Per run state: the `[nHeads × maxRows × 2]` row statistics the blocked prefill attention writes. */
const prefillStats = new WeakMap<RunState, Float32Array>();

/**
 * The inference ops: rows at positions `pos ..` of a {@link RunState}; attention appends their keys
 * and values to the layer's cache and reads it, in wasm memory with the backend's kernel when the
 * weights run on one (no score soft-cap), else in JS ({@link attention}). On a wasm backend a block of
 * rows whose keys all sit unwrapped in the cache (`pos + rows ≤` the layer's cache length, no window
 * narrower than `pos + rows`) runs the blocked attention of training instead (`TrainKernels.attentionForward`:
 * 64 query rows at a time, their scores one packed GEMM): the same softmax-weighted sums in another
 * float32 summation order.
 */
class CacheOps extends RowOps {
  pos = 0;
  private readonly kernels: DecodeKernels | undefined;
  private readonly blocked: TrainKernels | undefined;
  private readonly args: ReturnType<typeof residentKvCache> | undefined;

  constructor(
    private readonly state: RunState,
    w: LlamaWeights,
  ) {
    super(state.config, state);
    // On a wasm backend the cache lives in wasm memory and attention runs there (decode_attn.c); the
    // score soft-cap (Gemma 2) stays on the JS path.
    this.kernels = state.config.attnLogitSoftcap === undefined ? weightKernels(w, state) : undefined;
    // the activations in the same wasm memory and the blocked kernel of the same backend (not when the state's
    // attention was sent elsewhere)
    const b = (w.layers[0]?.wq as { backend?: object } | undefined)?.backend;
    const same = this.kernels !== undefined && b !== undefined && decodeKernels(b) === this.kernels;
    if (same && this.kernels !== undefined) residentRows(state, this.kernels);
    this.args = this.kernels !== undefined ? residentKvCache(state, this.kernels) : undefined;
    this.blocked = same && b !== undefined && state.maxRows > 1 ? trainKernels(b) : undefined;
  }

  rope(t: Float32Array, heads: number): Float32Array {
    const hs = headSize(this.config);
    rope(t, this.rows, heads * hs, hs, this.pos, this.state);
    return t;
  }

  /** A prefill chunk's RMSNorm runs in wasm SIMD on a wasm backend (`TrainKernels.rmsNorm`, in place). */
  override norm(x: Float32Array, L: LayerWeights, name: BlockNormName): Float32Array {
    if (this.blocked === undefined || this.rows === 1) return super.norm(x, L, name);
    const c = this.config;
    const out = name === "attnNorm" || name === "ffnNorm" ? this.buf.xb : x;
    const n = this.rows * c.dim;
    this.blocked.rmsNorm(
      this.rows,
      c.dim,
      x.subarray(0, n),
      L[name] as Float32Array,
      c.normEps,
      out.subarray(0, n),
      null,
    );
    return out;
  }

  /** A prefill chunk's SwiGLU runs in wasm SIMD on a wasm backend (`TrainKernels.swiglu`: a polynomial `exp`). */
  override gate(a: Float32Array, b: Float32Array, act: "silu" | "gelu_tanh"): Float32Array {
    if (this.blocked === undefined || act !== "silu" || this.rows === 1) return super.gate(a, b, act);
    const n = this.rows * this.config.hiddenDim;
    this.blocked.swiglu(n, a.subarray(0, n), b.subarray(0, n), a.subarray(0, n));
    return a;
  }

  attention(_q: Float32Array, k: Float32Array, v: Float32Array, at: BlockAttention): Float32Array {
    const s = this.state;
    const { rows, pos } = this;
    const c = s.config;
    const kv = kvDim(c);
    const base = s.cacheOffset[at.layer];
    const clen = s.cacheLen[at.layer];
    const { keyCache, valueCache } = s;
    // rows r.. go to cache slots (pos + r) mod clen: runs of consecutive slots, each one copy (later
    // rows overwrite earlier ones when a chunk is longer than the cache, as one row at a time would)
    for (let r = 0; r < rows; ) {
      const slot = (pos + r) % clen;
      const n = Math.min(rows - r, clen - slot);
      const o = base + slot * kv;
      keyCache.set(k.subarray(r * kv, (r + n) * kv), o);
      valueCache.set(v.subarray(r * kv, (r + n) * kv), o);
      r += n;
    }
    const { args, kernels, blocked } = this;
    const S = pos + rows;
    if (blocked !== undefined && rows > 1 && S <= clen && (at.window <= 0 || at.window >= S)) {
      const hs = headSize(c);
      const qd = c.nHeads * hs;
      let stats = prefillStats.get(s);
      if (stats === undefined) {
        stats = new Float32Array(c.nHeads * s.maxRows * 2);
        prefillStats.set(s, stats);
      }
      blocked.attentionForward(
        { B: 1, T: rows, S, H: c.nHeads, Hkv: c.nKvHeads, hs, scale: at.scale, causal: true },
        s.q.subarray(0, rows * qd),
        keyCache.subarray(base, base + S * kv),
        valueCache.subarray(base, base + S * kv),
        s.xb.subarray(0, rows * qd),
        stats.subarray(0, c.nHeads * rows * 2),
      );
    } else if (args !== undefined && kernels !== undefined) {
      args.q = s.q;
      args.out = s.xb;
      args.offset = base;
      args.cacheLen = clen;
      args.rows = rows;
      args.pos = pos;
      args.window = at.window;
      args.headSize = headSize(c);
      args.scale = at.scale;
      kernels.attention(args);
    } else attention(s, at.layer, rows, pos, s.xb, at.window);
    return s.xb;
  }
}

// ---------------------------------------------------------------------------------------------
// The transformer.

/** Which logits {@link forward} computes. */
export type LogitsMode = "last" | "all" | "none";

const CONFIG_KEYS = [
  ...CONFIG_NUMBER_FIELDS,
  "headDim",
  "slidingWindow",
  "qkvBias",
  "oBias",
  "qkNorm",
  "hiddenAct",
  "postNorms",
  "embedScale",
  "finalLogitSoftcap",
  "attnLogitSoftcap",
  "queryPreAttnScalar",
] as const;

function checkWeights(w: LlamaWeights, state: RunState): void {
  if (w.config === state.config) return;
  for (const k of CONFIG_KEYS) {
    if (w.config[k] !== state.config[k])
      throw new Error(
        `forward: run state was made for config ${JSON.stringify(state.config)}, weights have ${JSON.stringify(w.config)} (${k} differs)`,
      );
  }
}

/**
 * Runs `tokens` (positions `pos .. pos + tokens.length − 1`) through the model, writing their keys and
 * values into the cache, and returns logits: with `"last"` (default) a `[vocabSize]` view for the last
 * token; with `"all"` a `[tokens.length × vocabSize]` view (needs `tokens.length ≤ maxRows`); with
 * `"none"` an empty view (cache only). Views alias `state.logits` and are overwritten by the next call.
 *
 * Chunks of up to `state.maxRows` tokens go through `Linear.forward` with `rows > 1` (the GEMM path,
 * prefill); one token is the matvec path (decode).
 *
 * Per layer, {@link llamaBlock} (the block training and GPTQ calibration run too) over {@link RowOps}
 * whose attention appends the rows' keys and values to the cache and attends over it; in llama2.c's order:
 * ```
 * xb = rmsnorm(x, attnNorm);  q,k,v = xb·Wqᵀ, xb·Wkᵀ, xb·Wvᵀ;  rope(q), rope(k);  cache ← k, v
 * x += attention(q, cache)·Woᵀ
 * xb = rmsnorm(x, ffnNorm);  x += (silu(xb·W1ᵀ) ⊙ xb·W3ᵀ)·W2ᵀ
 * ```
 * then `logits = rmsnorm(x, finalNorm)·Wclsᵀ`. The family fields of the config add (see {@link llamaBlock}):
 * the embedding × `embedScale`; q/k/v (and o) biases; per-head q/k RMSNorm before RoPE (`qkNorm`); scaled
 * RoPE frequencies; a sliding window and score soft-cap in attention; `rmsnorm(…, postAttnNorm)` /
 * `rmsnorm(…, postFfnNorm)` of each branch before its residual add (`postNorms`); GeGLU instead of
 * SwiGLU; `cap · tanh(logits / cap)` at the end. Positions past `state.ctx` grow the cache first.
 *
 * On a wasm backend the first call moves the state's KV cache and activation buffers (x, xb, xb2, hb, hb2,
 * q, k, v) into the backend's wasm memory, where the kernels read and write them in place: read those
 * buffers through `state` after a call, not through references taken before it.
 */
export function forward(
  weights: LlamaWeights,
  state: RunState,
  tokens: ArrayLike<number>,
  pos: number,
  mode: LogitsMode = "last",
): Float32Array {
  checkWeights(weights, state);
  const c = state.config;
  const n = tokens.length;
  if (n === 0) throw new Error("forward: no tokens");
  if (!Number.isSafeInteger(pos) || pos < 0 || pos + n > c.seqLen)
    throw new Error(`forward: positions ${pos}..${pos + n - 1} are outside the context [0, ${c.seqLen})`);
  if (mode === "all" && n > state.maxRows)
    throw new Error(
      `forward: "all" logits for ${n} tokens need maxRows ≥ ${n}, the run state has ${state.maxRows}`,
    );
  for (let i = 0; i < n; i++) {
    const t = tokens[i];
    if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize)
      throw new Error(`forward: token ${String(t)} at index ${i} is outside [0, ${c.vocabSize})`);
  }
  ensureContext(state, pos + n);
  for (let start = 0; start < n; start += state.maxRows) {
    const rows = Math.min(state.maxRows, n - start);
    forwardChunk(weights, state, tokens, start, rows, pos + start);
  }
  const V = c.vocabSize;
  if (mode === "none") return state.logits.subarray(0, 0);
  const lastRows = n - Math.floor((n - 1) / state.maxRows) * state.maxRows;
  if (mode === "all") {
    rmsnorm(state.xb, state.x, weights.finalNorm, n, c.dim, c.normEps);
    weights.classifier.forward(state.xb, n, state.logits);
    if (c.finalLogitSoftcap !== undefined) softcap(state.logits, n * V, c.finalLogitSoftcap);
    return state.logits.subarray(0, n * V);
  }
  const off = (lastRows - 1) * c.dim;
  for (let j = 0; j < c.dim; j++) state.xb2[j] = state.x[off + j];
  rmsnorm(state.xb, state.xb2, weights.finalNorm, 1, c.dim, c.normEps);
  linearForward(weights.classifier, state.xb, 1, state.logits);
  if (c.finalLogitSoftcap !== undefined) softcap(state.logits, V, c.finalLogitSoftcap);
  return state.logits.subarray(0, V);
}

function forwardChunk(
  w: LlamaWeights,
  s: RunState,
  tokens: ArrayLike<number>,
  start: number,
  rows: number,
  pos: number,
): void {
  const c = s.config;
  const { dim } = c;
  const ops = new CacheOps(s, w); // (may move the state's buffers into wasm memory: read them after)
  const x = s.x;
  ops.rows = rows;
  ops.pos = pos;
  let ids = tokens;
  if (start !== 0 || rows !== tokens.length) {
    const chunk = new Int32Array(rows);
    for (let r = 0; r < rows; r++) chunk[r] = tokens[start + r];
    ids = chunk;
  }
  embeddingRows(w, ids, x.subarray(0, rows * dim));
  if (c.embedScale !== undefined) {
    const e = Math.fround(c.embedScale);
    for (let i = 0; i < rows * dim; i++) x[i] *= e;
  }
  for (let l = 0; l < c.nLayers; l++) llamaBlock(ops, w.layers[l], l, x);
}
