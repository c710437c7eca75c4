// A LLaMA model widened exactly: the same function of the tokens with a larger model width, hidden width
// and head size, every added row and column zero. Used to put a small real model (stories260K: rows 64
// and 172 wide) into rows that are whole 256-weight k-quant blocks, so a Q2_K/Q3_K file of real weights
// can be made and checked against llama.cpp.
//
// With D0 → D the RMS over D of a vector with D − D0 zeros is √(D0/D) of its RMS over D0, so the norm
// weights are scaled by √(D0/D) and eps by D0/D; attention divides by √hs instead of √hs0, so wq is scaled by
// √(hs/hs0); RoPE θ becomes θ^(hs/hs0), so that pair i of the wider head turns by θ^(−2i/hs0) as before
// (int21 keeps q/k in interleaved-pair order). Zero columns quantize to zero, so a block quantizer sees
// exactly the original weights.
import { type Backend, type FloatLinear, createFloatLinear } from "@int21/quant-kernels";
import { type LlamaConfig, headSize } from "./config";
import type { LayerWeights, LlamaWeights } from "./weights";

/** The wider shape of {@link widenExactly}. */
export interface WidenOptions {
  /** The new model width (≥ dim, a multiple of nHeads whose head size is a multiple of the old one). */
  dim: number;
  /** The new FFN width (≥ hiddenDim). */
  hiddenDim: number;
  /** The backend of the new float projections. */
  backend: Backend;
}

const UNSUPPORTED: (keyof LlamaConfig)[] = [
  "headDim",
  "ropeScaling",
  "ropeFreqFactors",
  "qkvBias",
  "oBias",
  "qkNorm",
  "postNorms",
  "embedScale",
  "finalLogitSoftcap",
  "attnLogitSoftcap",
  "queryPreAttnScalar",
  "normOffset",
];

/**
 * `weights` widened to `opts.dim` / `opts.hiddenDim` (head size `dim / nHeads`) with the same logits (up to
 * float32 rounding): see the file header. Needs float projections and a plain LLaMA config (no biases, q/k
 * norms, post norms, soft-capping, embedding scale, norm offset or RoPE scaling); anything else is refused,
 * naming it.
 */
export function widenExactly(weights: LlamaWeights, opts: WidenOptions): LlamaWeights {
  const c = weights.config;
  const D = opts.dim;
  const H = opts.hiddenDim;
  for (const k of UNSUPPORTED) {
    const v = c[k];
    if (v !== undefined && v !== false && !(k === "headDim" && v === c.dim / c.nHeads))
      throw new Error(
        `widenExactly: config.${k} = ${JSON.stringify(v)} is not supported (a plain LLaMA only)`,
      );
  }
  const hs0 = headSize(c);
  const hs1 = D / c.nHeads;
  if (!Number.isInteger(hs1) || D < c.dim || H < c.hiddenDim || hs1 % hs0 !== 0)
    throw new Error(
      `widenExactly: dim ${c.dim} → ${D}, hiddenDim ${c.hiddenDim} → ${H}: need dim ≥ ${c.dim}, hiddenDim ≥ ${c.hiddenDim} and a head size ${D}/${c.nHeads} that is a multiple of ${hs0}`,
    );
  if (!(weights.tokenEmbedding instanceof Float32Array))
    throw new Error("widenExactly: the token embedding must be float32 (a packed table is not supported)");
  const { backend } = opts;
  const r = hs1 / hs0;
  // output row i of q/k/v (head h, element d) → h·hs1 + d; residual and hidden rows keep their index
  const headRow = (i: number) => Math.floor(i / hs0) * hs1 + (i % hs0);
  const same = (i: number) => i;
  const widen = (
    name: string,
    l: unknown,
    N1: number,
    K1: number,
    row: (i: number) => number,
    col: (j: number) => number,
    scale = 1,
  ) => {
    const f = l as Partial<FloatLinear> & { outFeatures: number; inFeatures: number };
    if (!(f.weight instanceof Float32Array) || f.weight.length !== f.outFeatures * f.inFeatures)
      throw new Error(
        `widenExactly: ${name} is not a float projection; widen the float model, then quantize`,
      );
    const out = new Float32Array(N1 * K1);
    for (let i = 0; i < f.outFeatures; i++)
      for (let j = 0; j < f.inFeatures; j++)
        out[row(i) * K1 + col(j)] = scale * f.weight[i * f.inFeatures + j];
    return createFloatLinear({ weight: out, outFeatures: N1, inFeatures: K1, backend });
  };
  const norm = (v: Float32Array) => {
    const out = new Float32Array(D);
    const s = Math.sqrt(c.dim / D);
    for (let i = 0; i < v.length; i++) out[i] = v[i] * s;
    return out;
  };
  const kv1 = c.nKvHeads * hs1;
  const e0 = weights.tokenEmbedding;
  const emb = new Float32Array(c.vocabSize * D);
  for (let t = 0; t < c.vocabSize; t++) emb.set(e0.subarray(t * c.dim, (t + 1) * c.dim), t * D);
  const config: LlamaConfig = {
    ...c,
    dim: D,
    hiddenDim: H,
    normEps: (c.normEps * c.dim) / D,
    ropeTheta: c.ropeTheta ** r,
  };
  delete config.headDim;
  const classifier = c.sharedClassifier
    ? createFloatLinear({ weight: emb, outFeatures: c.vocabSize, inFeatures: D, backend })
    : widen("classifier", weights.classifier, c.vocabSize, D, same, same);
  return {
    config,
    tokenEmbedding: emb,
    finalNorm: norm(weights.finalNorm),
    classifier,
    layers: weights.layers.map(
      (L, l): LayerWeights => ({
        attnNorm: norm(L.attnNorm),
        ffnNorm: norm(L.ffnNorm),
        wq: widen(`layers.${l}.wq`, L.wq, c.nHeads * hs1, D, headRow, same, Math.sqrt(r)),
        wk: widen(`layers.${l}.wk`, L.wk, kv1, D, headRow, same),
        wv: widen(`layers.${l}.wv`, L.wv, kv1, D, headRow, same),
        wo: widen(`layers.${l}.wo`, L.wo, D, c.nHeads * hs1, same, headRow),
        w1: widen(`layers.${l}.w1`, L.w1, H, D, same, same),
        w3: widen(`layers.${l}.w3`, L.w3, H, D, same, same),
        w2: widen(`layers.${l}.w2`, L.w2, D, H, same, same),
      }),
    ),
  };
}
