// stories260K widened exactly to k-quant shapes: dim 64 → 256, hidden 172 → 256, head 8 → 32, every added row
// and column zero. The RMS over 256 of a vector with 192 zeros is half its RMS over 64, so the norm weights are
// halved and eps quartered; attention divides by √32 instead of √8, so wq is doubled; RoPE θ becomes 10000⁴ so
// that θ'^(-2i/32) = θ^(-2i/8). The result computes stories260K's logits, and every projection row is a whole
// number of 256-weight Q2_K super-blocks (stories260K's own 64/172-wide rows fit none: llama-quantize would
// fall back to other types). The zero columns quantize to zero, so Q2_K quantizes exactly stories260K's weights.
// (benchmarks/src/merge-study.ts carries the same function for the merge study.)
import type { LlamaWeights } from "@int21/model-llama";
import { type Backend, type FloatLinear, createFloatLinear } from "@int21/quant-kernels";

/**
 * stories260K widened exactly to dim 256 / hidden 256 / head 32 (see the header): the same function of the
 * tokens, in rows of whole 256-weight k-quant blocks.
 */
export function widenStories260K(w: LlamaWeights, backend: Backend): LlamaWeights {
  const c = w.config;
  const D = 256;
  const H = 256;
  const hs0 = c.dim / c.nHeads;
  const hs1 = D / c.nHeads;
  if (c.dim > D || c.hiddenDim > H || hs1 % hs0 !== 0)
    throw new Error(`widenStories260K: ${c.dim}/${c.hiddenDim} does not fit ${D}/${H}`);
  const r = hs1 / hs0;
  // output row i of q/k/v (head h, element d) → h·hs1 + d; residual and hidden rows keep their index
  const headRow = (i: number) => Math.floor(i / hs0) * hs1 + (i % hs0);
  const same = (i: number) => i;
  const widen = (
    l: unknown,
    N1: number,
    K1: number,
    row: (i: number) => number,
    col: (j: number) => number,
    scale = 1,
  ) => {
    const f = l as FloatLinear;
    const out = new Float32Array(N1 * K1);
    for (let i = 0; i < f.outFeatures; i++)
      for (let j = 0; j < f.inFeatures; j++)
        out[row(i) * K1 + col(j)] = scale * f.weight[i * f.inFeatures + j];
    return createFloatLinear({ weight: out, outFeatures: N1, inFeatures: K1, backend });
  };
  const norm = (v: Float32Array) => {
    const out = new Float32Array(D);
    for (let i = 0; i < v.length; i++) out[i] = v[i] * Math.sqrt(c.dim / D);
    return out;
  };
  const kv1 = c.nKvHeads * hs1;
  const emb = new Float32Array(c.vocabSize * D);
  const e0 = w.tokenEmbedding as Float32Array;
  for (let t = 0; t < c.vocabSize; t++) emb.set(e0.subarray(t * c.dim, (t + 1) * c.dim), t * D);
  const config = {
    ...c,
    dim: D,
    hiddenDim: H,
    normEps: (c.normEps * c.dim) / D,
    ropeTheta: c.ropeTheta ** r,
  };
  return {
    config,
    tokenEmbedding: emb,
    finalNorm: norm(w.finalNorm),
    classifier: createFloatLinear({ weight: emb, outFeatures: c.vocabSize, inFeatures: D, backend }),
    layers: w.layers.map((L) => ({
      attnNorm: norm(L.attnNorm),
      ffnNorm: norm(L.ffnNorm),
      wq: widen(L.wq, D, D, headRow, same, Math.sqrt(hs1 / hs0)),
      wk: widen(L.wk, kv1, D, headRow, same),
      wv: widen(L.wv, kv1, D, headRow, same),
      wo: widen(L.wo, D, D, same, headRow),
      w1: widen(L.w1, H, D, same, same),
      w3: widen(L.w3, H, D, same, same),
      w2: widen(L.w2, D, H, same, same),
    })),
  };
}
