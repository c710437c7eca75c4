// Test and benchmark helper (not exported): one LLaMA transformer layer built from the primitives.
import { attention, rope } from "./attention";
import { add, mul, silu } from "./elementwise";
import { linear } from "./linear";
import { rmsNorm } from "./norm";
import { createRng } from "./random";
import { parameter, type Tensor } from "./tensor";

/** Shape of one layer. */
export interface LayerConfig {
  dim: number;
  hidden: number;
  nHeads: number;
  nKvHeads: number;
}

/** The layer's weights, llama2.c names. */
export interface LayerWeights {
  attnNorm: Tensor; // [dim]
  wq: Tensor; // [dim, dim]
  wk: Tensor; // [kvDim, dim]
  wv: Tensor; // [kvDim, dim]
  wo: Tensor; // [dim, dim]
  ffnNorm: Tensor; // [dim]
  w1: Tensor; // [hidden, dim]
  w2: Tensor; // [dim, hidden]
  w3: Tensor; // [hidden, dim]
}

/** Random weights (std 1/sqrt(fan-in)), trainable unless `frozen`. */
export function initLayer(c: LayerConfig, seed: number, frozen = false): LayerWeights {
  const rng = createRng(seed);
  const kv = (c.dim / c.nHeads) * c.nKvHeads;
  const mat = (n: number, k: number) => {
    const v = new Float32Array(n * k);
    const s = 1 / Math.sqrt(k);
    for (let i = 0; i < v.length; i++) v[i] = s * rng.normal();
    return parameter(v, [n, k], { requiresGrad: !frozen });
  };
  const norm = () => parameter(new Float32Array(c.dim).fill(1), [c.dim], { requiresGrad: !frozen });
  return {
    attnNorm: norm(),
    wq: mat(c.dim, c.dim),
    wk: mat(kv, c.dim),
    wv: mat(kv, c.dim),
    wo: mat(c.dim, c.dim),
    ffnNorm: norm(),
    w1: mat(c.hidden, c.dim),
    w2: mat(c.dim, c.hidden),
    w3: mat(c.hidden, c.dim),
  };
}

/** All weights of a layer as a list (for optimizers). */
export function layerParams(w: LayerWeights): Tensor[] {
  return [w.attnNorm, w.wq, w.wk, w.wv, w.wo, w.ffnNorm, w.w1, w.w2, w.w3];
}

/** One pre-norm LLaMA layer on x `[B, T, dim]` (or `[T, dim]`). */
export function llamaLayer(x: Tensor, w: LayerWeights, c: LayerConfig): Tensor {
  const hs = c.dim / c.nHeads;
  const h = rmsNorm(x, w.attnNorm);
  const q = rope(linear(h, w.wq), { headSize: hs });
  const k = rope(linear(h, w.wk), { headSize: hs });
  const v = linear(h, w.wv);
  const a = attention(q, k, v, { nHeads: c.nHeads, nKvHeads: c.nKvHeads });
  const x2 = add(x, linear(a, w.wo));
  const h2 = rmsNorm(x2, w.ffnNorm);
  const f = linear(mul(silu(linear(h2, w.w1)), linear(h2, w.w3)), w.w2);
  return add(x2, f);
}
