import { type LlamaConfig, headSize, kvDim, validateConfig } from "./config";

/**
 * Every buffer inference touches, allocated once (llama2.c's `RunState`), plus the explicit KV cache
 * and the RoPE tables. A forward over `rows ≤ maxRows` positions at a time uses the first `rows` rows
 * of each activation buffer.
 */
export interface RunState {
  readonly config: LlamaConfig;
  /** Most positions one {@link forward} chunk processes (prefill GEMM height). */
  readonly maxRows: number;
  /** [maxRows × dim] residual stream. */
  readonly x: Float32Array;
  /** [maxRows × dim] inside a residual branch (normed input, attention output, FFN output). */
  readonly xb: Float32Array;
  /** [maxRows × dim] projection output before the residual add. */
  readonly xb2: Float32Array;
  /** [maxRows × hiddenDim] w1 (gate) output, then silu(gate) · up. */
  readonly hb: Float32Array;
  /** [maxRows × hiddenDim] w3 (up) output. */
  readonly hb2: Float32Array;
  /** [maxRows × dim] queries. */
  readonly q: Float32Array;
  /** [maxRows × kvDim] keys of the chunk before they enter the cache. */
  readonly k: Float32Array;
  /** [maxRows × kvDim] values of the chunk. */
  readonly v: Float32Array;
  /** [seqLen] attention scores of one (row, head). */
  readonly att: Float32Array;
  /** [maxRows × vocabSize] logits; after a forward, row r belongs to the r-th position asked for. */
  readonly logits: Float32Array;
  /** [nLayers × seqLen × kvDim] keys after RoPE. */
  readonly keyCache: Float32Array;
  /** [nLayers × seqLen × kvDim] values. */
  readonly valueCache: Float32Array;
  /** [seqLen × headSize/2] cos(pos · θ^(−2i/headSize)). */
  readonly ropeCos: Float32Array;
  /** [seqLen × headSize/2] sin(pos · θ^(−2i/headSize)). */
  readonly ropeSin: Float32Array;
}

/** Options of {@link createRunState}. */
export interface RunStateOptions {
  /** Prefill chunk height (default 64, at most seqLen). */
  maxRows?: number;
}

/**
 * Allocates a {@link RunState} for `config`. Memory: `2 · nLayers · seqLen · kvDim` floats of cache
 * plus `maxRows · (4·dim + 2·kvDim + 2·hiddenDim + vocabSize)` floats of activations.
 *
 * RoPE frequencies follow llama2.c: for the pair (i, i+1) inside a head (i even),
 * `freq = ropeTheta^(−i / headSize)`, angle `pos · freq`.
 */
export function createRunState(config: LlamaConfig, opts: RunStateOptions = {}): RunState {
  validateConfig(config);
  const maxRows = Math.min(opts.maxRows ?? 64, config.seqLen);
  if (!Number.isSafeInteger(maxRows) || maxRows < 1)
    throw new Error(`createRunState: maxRows must be a positive integer, got ${String(opts.maxRows)}`);
  const { dim, hiddenDim, nLayers, seqLen, vocabSize } = config;
  const kv = kvDim(config);
  const hs = headSize(config);
  const half = hs / 2;
  const ropeCos = new Float32Array(seqLen * half);
  const ropeSin = new Float32Array(seqLen * half);
  for (let p = 0; p < seqLen; p++) {
    for (let j = 0; j < half; j++) {
      const angle = p * config.ropeTheta ** (-(2 * j) / hs);
      ropeCos[p * half + j] = Math.cos(angle);
      ropeSin[p * half + j] = Math.sin(angle);
    }
  }
  return {
    config,
    maxRows,
    x: new Float32Array(maxRows * dim),
    xb: new Float32Array(maxRows * dim),
    xb2: new Float32Array(maxRows * dim),
    hb: new Float32Array(maxRows * hiddenDim),
    hb2: new Float32Array(maxRows * hiddenDim),
    q: new Float32Array(maxRows * dim),
    k: new Float32Array(maxRows * kv),
    v: new Float32Array(maxRows * kv),
    att: new Float32Array(seqLen),
    logits: new Float32Array(maxRows * vocabSize),
    keyCache: new Float32Array(nLayers * seqLen * kv),
    valueCache: new Float32Array(nLayers * seqLen * kv),
    ropeCos,
    ropeSin,
  };
}
