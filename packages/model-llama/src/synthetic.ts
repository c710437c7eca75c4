import {
  type Backend,
  createFloatLinear,
  type Linear,
  createQuantLinear,
  type QuantFormat,
  type QuantizedLinear,
  createQuantizedLinear,
  createReferenceBackend,
  getFormat,
  groupCount,
  roundToF16,
  rtnQuantize,
} from "@int21/quant-kernels";
import { matrixWordsPerRow, packedMatrixView } from "@int21/bitpack";
import { type LlamaConfig, kvDim, qDim, validateConfig } from "./config";
import { tiedClassifier } from "./embedding";
import { extraLayerSpecs, resolveFormat } from "./load-assemble";
import type { LayerWeights, LlamaWeights } from "./weights";

/** Named LLaMA shapes: the llama2.c TinyStories models, TinyLlama 1.1B and LLaMA-2 7B. */
export type SyntheticModelName = "stories260K" | "stories15M" | "stories110M" | "1.1B" | "7B";

const BASE = { ropeTheta: 10000, normEps: 1e-5 };

const CONFIGS: Record<SyntheticModelName, LlamaConfig> = {
  stories260K: {
    dim: 64,
    hiddenDim: 172,
    nLayers: 5,
    nHeads: 8,
    nKvHeads: 4,
    vocabSize: 512,
    seqLen: 512,
    sharedClassifier: true,
    ...BASE,
  },
  stories15M: {
    dim: 288,
    hiddenDim: 768,
    nLayers: 6,
    nHeads: 6,
    nKvHeads: 6,
    vocabSize: 32000,
    seqLen: 256,
    sharedClassifier: true,
    ...BASE,
  },
  stories110M: {
    dim: 768,
    hiddenDim: 2048,
    nLayers: 12,
    nHeads: 12,
    nKvHeads: 12,
    vocabSize: 32000,
    seqLen: 1024,
    sharedClassifier: true,
    ...BASE,
  },
  "1.1B": {
    dim: 2048,
    hiddenDim: 5632,
    nLayers: 22,
    nHeads: 32,
    nKvHeads: 4,
    vocabSize: 32000,
    seqLen: 2048,
    sharedClassifier: false,
    ...BASE,
  },
  "7B": {
    dim: 4096,
    hiddenDim: 11008,
    nLayers: 32,
    nHeads: 32,
    nKvHeads: 32,
    vocabSize: 32000,
    seqLen: 2048,
    sharedClassifier: false,
    ...BASE,
  },
};

/** The config of a named LLaMA shape (a fresh copy). */
export function syntheticConfig(name: SyntheticModelName): LlamaConfig {
  const c = CONFIGS[name];
  if (!c)
    throw new Error(
      `syntheticConfig: unknown model "${String(name)}"; known: ${Object.keys(CONFIGS).join(", ")}`,
    );
  return { ...c };
}

/** Options of {@link syntheticWeights}. */
export interface SyntheticOptions {
  /** PRNG seed (same seed, same weights). Default 1. */
  seed?: number;
  /** Packed format of every projection (and of an unshared classifier); omit for float weights. */
  format?: QuantFormat | string;
  /** Backend of the returned linears (default: a new reference backend). */
  backend?: Backend;
  /**
   * Packed format of the token embedding (rows = tokens; a tied classifier runs over the same record);
   * omit for a float32 table. The packed table is generated block by block like a projection, from the
   * same random values the float table would hold.
   */
  embeddingFormat?: QuantFormat | string;
  /** Float32 elements generated at once per projection (default 2^20): the largest float block ever built. */
  blockElements?: number;
  /**
   * With `format` (and `embeddingFormat`): `"rtn"` (default) generates float blocks and quantizes them;
   * `"random"` writes random codes straight into the packed words ({@link randomPacked}; affine formats only),
   * which builds a 7B model in seconds instead of minutes, for memory and speed measurements where values do
   * not matter.
   */
  codes?: "rtn" | "random";
  /** Told after each layer (layers done). */
  onLayer?: (done: number) => void;
}

/** mulberry32: a small, fast, seedable 32-bit PRNG returning floats in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Random LLaMA weights of any shape (any family's config: its biases, q/k norms and post norms are
 * generated too), for tests and benchmarks at real sizes (7B) where no checkpoint is at hand. Projections are uniform in ±√(3/K) (unit-variance outputs for unit inputs), norms
 * 1 ± 0.1, embeddings uniform in ±1. With `format`, each projection is generated and quantized
 * (round-to-nearest) one row block at a time straight into its packed words, so no float matrix
 * larger than `blockElements` ever exists; the token embedding is float32 (`vocabSize × dim`) unless
 * `embeddingFormat` packs it the same way.
 * Deterministic in `seed`.
 */
export function syntheticWeights(config: LlamaConfig, opts: SyntheticOptions = {}): LlamaWeights {
  validateConfig(config, "syntheticWeights config");
  const rand = mulberry32(opts.seed ?? 1);
  const backend = opts.backend ?? createReferenceBackend();
  const format = opts.format === undefined ? undefined : resolveFormat(opts.format);
  const block = opts.blockElements ?? 1 << 20;
  const { dim, hiddenDim, vocabSize } = config;
  const kv = kvDim(config);
  const uniform = (n: number, a: number, center = 0) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = center + a * (2 * rand() - 1);
    return out;
  };
  const word = () => Math.floor(rand() * 4294967296) >>> 0;
  const packed = (N: number, K: number, f: QuantFormat, a: number) =>
    opts.codes === "random"
      ? randomPacked(N, K, f, word, a)
      : packedRandom(N, K, f, block, (n) => uniform(n, a));
  const linear = (N: number, K: number): Linear => {
    const a = Math.sqrt(3 / K);
    if (!format)
      return createFloatLinear({ weight: uniform(N * K, a), outFeatures: N, inFeatures: K, backend });
    return createQuantLinear({ q: packed(N, K, format, a), backend });
  };
  const embeddingFormat =
    opts.embeddingFormat === undefined ? undefined : resolveFormat(opts.embeddingFormat);
  const tokenEmbedding = embeddingFormat
    ? packed(vocabSize, dim, embeddingFormat, 1)
    : uniform(vocabSize * dim, 1);
  const layers: LayerWeights[] = [];
  const qd = qDim(config);
  const extras = extraLayerSpecs(config);
  for (let l = 0; l < config.nLayers; l++) {
    const layer: LayerWeights = {
      attnNorm: uniform(dim, 0.1, 1),
      wq: linear(qd, dim),
      wk: linear(kv, dim),
      wv: linear(kv, dim),
      wo: linear(dim, qd),
      ffnNorm: uniform(dim, 0.1, 1),
      w1: linear(hiddenDim, dim),
      w2: linear(dim, hiddenDim),
      w3: linear(hiddenDim, dim),
    };
    // The family's extra vectors (after the projections, so LLaMA weights keep their random stream):
    // biases ±0.1, norms 1 ± 0.1.
    for (const e of extras)
      layer[e.name] = /Norm$/.test(e.name) ? uniform(e.shape[0], 0.1, 1) : uniform(e.shape[0], 0.1);
    layers.push(layer);
    opts.onLayer?.(l + 1);
  }
  const finalNorm = uniform(dim, 0.1, 1);
  const classifier = config.sharedClassifier
    ? tiedClassifier(tokenEmbedding, config, backend)
    : linear(vocabSize, dim);
  return { config: { ...config }, tokenEmbedding, layers, finalNorm, classifier };
}

/** Quantizes `N×K` generated values block of rows by block of rows into one packed record. */
function packedRandom(
  N: number,
  K: number,
  format: QuantFormat,
  blockElements: number,
  gen: (n: number) => Float32Array,
): QuantizedLinear {
  const rowsPerBlock = Math.max(1, Math.floor(blockElements / K));
  const nG = groupCount(format, K);
  const scales = new Float32Array(N * nG);
  const zeros = new Float32Array(N * nG);
  let words: Uint32Array | undefined;
  let wpr = 0;
  for (let r0 = 0; r0 < N; r0 += rowsPerBlock) {
    const rows = Math.min(rowsPerBlock, N - r0);
    const q = rtnQuantize(gen(rows * K), rows, K, format);
    if (!words) {
      wpr = q.qweight.wordsPerRow;
      words = new Uint32Array(N * wpr);
    }
    words.set(q.qweight.words, r0 * wpr);
    scales.set(q.scales, r0 * nG);
    zeros.set(q.zeros, r0 * nG);
  }
  return createQuantizedLinear({
    format,
    outFeatures: N,
    inFeatures: K,
    qweight: packedMatrixView(words!, N, K, format.bits),
    scales,
    zeros,
  });
}

/**
 * A packed `[N × K]` record of random codes in the affine `format`, written straight into packed words
 * (words from `next`, each row's tail bits cleared), every group's f16 scale spreading the codes over
 * ±amp (default √(3/K): unit-variance outputs, like {@link syntheticWeights}; 1 for a token embedding),
 * zeros mid-range. No float matrix is built at all, so a 7B model is generated in seconds (RTN of float
 * blocks, as {@link syntheticWeights} does, takes about 35 s per 7B layer in JavaScript); the memory and the
 * kernels' work are the same (`syntheticWeights(…, { codes: "random" })`).
 */
export function randomPacked(
  N: number,
  K: number,
  format: QuantFormat | string,
  next: () => number,
  amp = Math.sqrt(3 / K),
): QuantizedLinear {
  const f = typeof format === "string" ? getFormat(format) : format;
  if ((f.decode ?? "affine") !== "affine")
    throw new Error(`randomPacked: format ${f.name} is not an affine format (int<b>-g<g>-…)`);
  const wpr = matrixWordsPerRow(K, f.bits);
  const words = new Uint32Array(N * wpr);
  for (let i = 0; i < words.length; i++) words[i] = next();
  const tail = (K * f.bits) % 32;
  if (tail !== 0) for (let n = 0; n < N; n++) words[n * wpr + wpr - 1] &= 2 ** tail - 1;
  const nP = N * groupCount(f, K);
  const qmax = 2 ** f.bits - 1;
  return createQuantizedLinear({
    format: f,
    outFeatures: N,
    inFeatures: K,
    qweight: packedMatrixView(words, N, K, f.bits),
    scales: new Float32Array(nP).fill(roundToF16((2 * amp) / qmax)),
    zeros: new Float32Array(nP).fill(f.symmetric ? 2 ** (f.bits - 1) : qmax / 2),
  });
}
