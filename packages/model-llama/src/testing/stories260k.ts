// Test-only: the real stories260K checkpoint as LlamaWeights, parsed directly from its llama2.c
// legacy layout (see shared/models/stories260K/README.md) so the runner's tests do not depend on
// the loader. Plain row-major float matmuls stand in for the quant-kernels FloatLinear.
import { readFileSync } from "node:fs";
import type { Linear } from "@int21/quant-kernels";
import { SHARED, sharedPath } from "@int21/shared-data";
import type { LlamaConfig } from "../config";
import type { LayerWeights, LlamaWeights } from "../weights";

/** `y[r,n] = Σ_k x[r,k]·w[n,k]`, the plain loop. */
export class DenseLinear implements Linear {
  constructor(
    readonly weight: Float32Array,
    readonly outFeatures: number,
    readonly inFeatures: number,
  ) {
    if (weight.length !== outFeatures * inFeatures) throw new Error("DenseLinear: weight size");
  }
  forward(x: Float32Array, rows: number, y: Float32Array): void {
    const K = this.inFeatures;
    const N = this.outFeatures;
    const w = this.weight;
    let r = 0;
    // four rows share each weight row
    for (; r + 4 <= rows; r += 4) {
      const x0 = r * K;
      const x1 = x0 + K;
      const x2 = x1 + K;
      const x3 = x2 + K;
      for (let n = 0; n < N; n++) {
        const wo = n * K;
        let s0 = 0;
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        for (let k = 0; k < K; k++) {
          const wk = w[wo + k];
          s0 += x[x0 + k] * wk;
          s1 += x[x1 + k] * wk;
          s2 += x[x2 + k] * wk;
          s3 += x[x3 + k] * wk;
        }
        y[r * N + n] = s0;
        y[(r + 1) * N + n] = s1;
        y[(r + 2) * N + n] = s2;
        y[(r + 3) * N + n] = s3;
      }
    }
    for (; r < rows; r++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += x[r * K + k] * w[n * K + k];
        y[r * N + n] = s;
      }
    }
  }
  /** `dx[r,k] = Σ_n g[r,n]·w[n,k]`: the input gradient (the weight is frozen). */
  inputGrad(g: Float32Array, rows: number, dx: Float32Array): void {
    const K = this.inFeatures;
    const N = this.outFeatures;
    const w = this.weight;
    dx.fill(0, 0, rows * K);
    for (let r = 0; r < rows; r++) {
      for (let n = 0; n < N; n++) {
        const gv = g[r * N + n];
        for (let k = 0; k < K; k++) dx[r * K + k] += gv * w[n * K + k];
      }
    }
  }
  bytes(): number {
    return this.weight.byteLength;
  }
}

let cached: LlamaWeights | undefined;

/** stories260K with every projection a {@link DenseLinear}. */
export function stories260K(): LlamaWeights {
  if (cached) return cached;
  const buf = readFileSync(sharedPath(SHARED.stories260K));
  const head = new Int32Array(buf.buffer, buf.byteOffset, 7);
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocab, seqLen] = head;
  const config: LlamaConfig = {
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    vocabSize: Math.abs(vocab),
    seqLen,
    ropeTheta: 10000,
    normEps: 1e-5,
    sharedClassifier: vocab > 0,
  };
  const f = new Float32Array(buf.buffer.slice(buf.byteOffset + 28, buf.byteOffset + buf.byteLength));
  let off = 0;
  const take = (n: number) => f.subarray(off, (off += n));
  const kv = (dim * nKvHeads) / nHeads;
  const emb = take(config.vocabSize * dim);
  const rmsAtt = take(nLayers * dim);
  const wq = take(nLayers * dim * dim);
  const wk = take(nLayers * kv * dim);
  const wv = take(nLayers * kv * dim);
  const wo = take(nLayers * dim * dim);
  const rmsFfn = take(nLayers * dim);
  const w1 = take(nLayers * hiddenDim * dim);
  const w2 = take(nLayers * dim * hiddenDim);
  const w3 = take(nLayers * hiddenDim * dim);
  const finalNorm = take(dim);
  const slice = (a: Float32Array, l: number, n: number, k: number) =>
    new DenseLinear(a.subarray(l * n * k, (l + 1) * n * k), n, k);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < nLayers; l++) {
    layers.push({
      attnNorm: rmsAtt.subarray(l * dim, (l + 1) * dim),
      wq: slice(wq, l, dim, dim),
      wk: slice(wk, l, kv, dim),
      wv: slice(wv, l, kv, dim),
      wo: slice(wo, l, dim, dim),
      ffnNorm: rmsFfn.subarray(l * dim, (l + 1) * dim),
      w1: slice(w1, l, hiddenDim, dim),
      w2: slice(w2, l, dim, hiddenDim),
      w3: slice(w3, l, hiddenDim, dim),
    });
  }
  cached = {
    config,
    tokenEmbedding: emb,
    layers,
    finalNorm,
    classifier: new DenseLinear(emb, config.vocabSize, dim),
  };
  return cached;
}
