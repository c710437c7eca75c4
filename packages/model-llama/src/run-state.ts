import { type LlamaConfig, headSize, kvDim, layerWindow, qDim, ropeInvFreq, validateConfig } from "./config";

/** The activation buffers forward's `RowOps` computes in (a {@link RunState} is one, `maxRows` rows each). */
export interface RowBuffers {
  /** `[rows × dim]` residual stream. */
  readonly x: Float32Array;
  /** `[rows × max(dim, qDim)]` the normed input of a branch, then the attention output. */
  readonly xb: Float32Array;
  /** `[rows × dim]` a branch's output before its residual add. */
  readonly xb2: Float32Array;
  /** `[rows × hiddenDim]` w1 (gate) output, then the gated hidden state. */
  readonly hb: Float32Array;
  /** `[rows × hiddenDim]` w3 (up) output. */
  readonly hb2: Float32Array;
  /** `[rows × qDim]`, `[rows × kvDim]`, `[rows × kvDim]` queries, keys, values. */
  readonly q: Float32Array;
  readonly k: Float32Array;
  readonly v: Float32Array;
}

/**
 * Every buffer inference touches, allocated once (llama2.c's `RunState`), plus the explicit KV cache
 * and the RoPE tables. A forward over `rows ≤ maxRows` positions at a time uses the first `rows` rows
 * of each activation buffer.
 *
 * The cache holds {@link RunState.ctx} positions (the run's context, not `seqLen`) and grows, up to
 * `seqLen`, when a forward reaches past it ({@link ensureContext}); the cache fields are then replaced
 * by bigger arrays. A sliding-window layer keeps only the last `slidingWindow + maxRows − 1` positions,
 * as a ring (position p in slot `p mod cacheLen[l]`).
 */
export interface RunState extends RowBuffers {
  readonly config: LlamaConfig;
  /** Most positions one {@link forward} chunk processes (prefill GEMM height). */
  readonly maxRows: number;
  /** Positions the cache and RoPE tables currently cover (≤ seqLen); grows on demand. */
  ctx: number;
  /** [ctx] attention scores of one (row, head). */
  att: Float32Array;
  /** [maxRows × vocabSize] logits; after a forward, row r belongs to the r-th position asked for. */
  readonly logits: Float32Array;
  /** Keys after RoPE: layer l holds `cacheLen[l]` rows of kvDim from `cacheOffset[l]`. */
  keyCache: Float32Array;
  /** Values, laid out as {@link keyCache}. */
  valueCache: Float32Array;
  /** Rows of the cache of each layer: ctx for full attention, at most `slidingWindow + maxRows − 1` for a sliding layer. */
  cacheLen: Int32Array;
  /** Float offset of each layer's rows in the caches. */
  cacheOffset: Float64Array;
  /** [ctx × headSize/2] cos(pos · invFreq[j]). */
  ropeCos: Float32Array;
  /** [ctx × headSize/2] sin(pos · invFreq[j]). */
  ropeSin: Float32Array;
  /** [headSize/2] RoPE inverse frequencies ({@link ropeInvFreq}). */
  readonly invFreq: Float64Array;
}

/** Options of {@link createRunState}. */
export interface RunStateOptions {
  /** Prefill chunk height (default 64, at most seqLen). */
  maxRows?: number;
  /**
   * Positions to allocate the KV cache for at first (default min(seqLen, 4096)); a forward that reaches
   * past them grows the cache, up to seqLen.
   */
  ctx?: number;
}

/**
 * Allocates a {@link RunState} for `config`. Memory: `2 · nLayers · ctx · kvDim` floats of cache (less
 * on sliding-window layers) plus `maxRows · (4·dim + 2·kvDim + 2·hiddenDim + vocabSize)` floats of
 * activations.
 *
 * RoPE frequencies follow llama2.c: for the pair (i, i+1) inside a head (i even),
 * `freq = ropeTheta^(−i / headSize)` (then the config's `ropeScaling`), angle `pos · freq`.
 */
export function createRunState(config: LlamaConfig, opts: RunStateOptions = {}): RunState {
  validateConfig(config);
  const maxRows = Math.min(opts.maxRows ?? 64, config.seqLen);
  if (!Number.isSafeInteger(maxRows) || maxRows < 1)
    throw new Error(`createRunState: maxRows must be a positive integer, got ${String(opts.maxRows)}`);
  const ctx = Math.min(opts.ctx ?? 4096, config.seqLen);
  if (!Number.isSafeInteger(ctx) || ctx < 1)
    throw new Error(`createRunState: ctx must be a positive integer, got ${String(opts.ctx)}`);
  const { dim, hiddenDim, vocabSize } = config;
  const kv = kvDim(config);
  const qd = qDim(config);
  const state: RunState = {
    config,
    maxRows,
    ctx: 0,
    x: new Float32Array(maxRows * dim),
    xb: new Float32Array(maxRows * Math.max(dim, qd)),
    xb2: new Float32Array(maxRows * dim),
    hb: new Float32Array(maxRows * hiddenDim),
    hb2: new Float32Array(maxRows * hiddenDim),
    q: new Float32Array(maxRows * qd),
    k: new Float32Array(maxRows * kv),
    v: new Float32Array(maxRows * kv),
    att: new Float32Array(0),
    logits: new Float32Array(maxRows * vocabSize),
    keyCache: new Float32Array(0),
    valueCache: new Float32Array(0),
    cacheLen: new Int32Array(config.nLayers),
    cacheOffset: new Float64Array(config.nLayers),
    ropeCos: new Float32Array(0),
    ropeSin: new Float32Array(0),
    invFreq: ropeInvFreq(config),
  };
  resize(state, ctx);
  return state;
}

/**
 * Makes `state` cover positions `0 .. needed − 1`: when `needed > state.ctx` the cache and RoPE tables
 * grow (to at least double, at most seqLen), keeping every cached key and value. Throws when `needed`
 * exceeds seqLen.
 */
export function ensureContext(state: RunState, needed: number): void {
  if (needed <= state.ctx) return;
  const { seqLen } = state.config;
  if (needed > seqLen)
    throw new Error(`run state: ${needed} positions exceed the model's context seqLen ${seqLen}`);
  resize(state, Math.min(seqLen, Math.max(needed, 2 * state.ctx)));
}

function resize(s: RunState, ctx: number): void {
  const c = s.config;
  const kv = kvDim(c);
  const half = headSize(c) / 2;
  const len = new Int32Array(c.nLayers);
  const off = new Float64Array(c.nLayers);
  let total = 0;
  for (let l = 0; l < c.nLayers; l++) {
    const w = layerWindow(c, l);
    len[l] = w > 0 ? Math.min(ctx, w + s.maxRows - 1) : ctx;
    off[l] = total;
    total += len[l] * kv;
  }
  const keys = new Float32Array(total);
  const values = new Float32Array(total);
  if (s.ctx > 0) {
    // Positions below the old ctx sit in slot p (or already in a full ring): same slots in the new one.
    for (let l = 0; l < c.nLayers; l++) {
      const o = s.cacheOffset[l];
      const n = s.cacheLen[l] * kv;
      keys.set(s.keyCache.subarray(o, o + n), off[l]);
      values.set(s.valueCache.subarray(o, o + n), off[l]);
    }
  }
  const cos = new Float32Array(ctx * half);
  const sin = new Float32Array(ctx * half);
  const f = s.invFreq;
  for (let p = 0; p < ctx; p++) {
    for (let j = 0; j < half; j++) {
      const angle = p * f[j];
      cos[p * half + j] = Math.cos(angle);
      sin[p * half + j] = Math.sin(angle);
    }
  }
  s.ctx = ctx;
  s.att = new Float32Array(ctx);
  s.keyCache = keys;
  s.valueCache = values;
  s.cacheLen = len;
  s.cacheOffset = off;
  s.ropeCos = cos;
  s.ropeSin = sin;
}
