import { type LlamaConfig, headSize, layerWindow } from "./config";
import type { LayerWeights, LinearName } from "./weights";

/** The RMSNorm weights of a layer: before attention / the FFN, and Gemma 2's norms of each branch's output. */
export type BlockNormName = "attnNorm" | "ffnNorm" | "postAttnNorm" | "postFfnNorm";

/** The projection biases of a layer (Qwen2's q/k/v, a few families' o). */
export type BlockBiasName = "bq" | "bk" | "bv" | "bo";

/** The per-head RMSNorm weights of a layer's queries and keys (Qwen3, `qkNorm`). */
export type BlockHeadNormName = "qNorm" | "kNorm";

/** What the attention of one layer computes (besides causality and GQA), as {@link llamaBlock} asks for it. */
export interface BlockAttention {
  /** Layer index. */
  layer: number;
  /** Score scale: `1/sqrt(headSize)`, or `queryPreAttnScalar^−½` (Gemma 2). */
  scale: number;
  /** Score soft-cap `cap · tanh(s / cap)` before the softmax; 0: none (Gemma 2's `attnLogitSoftcap`). */
  cap: number;
  /** Sliding window: a query at position p sees keys `p − window + 1 .. p`; 0: every earlier position. */
  window: number;
}

/**
 * The operations a transformer block is written in, implemented once per way of running it:
 * Float32Array rows with the KV cache and the backend's kernels (inference, `forward.ts`), the same rows
 * for all calibration windows stacked (GPTQ's sequential calibration, `quantize-model.ts`), and autograd
 * tensors (training, `train-forward.ts`). `T` is the activation type. Weights are named parts of the
 * layer `L` (an implementation may look them up its own way, e.g. as frozen tensors); the block only calls
 * the ops for parts the layer has.
 *
 * An implementation may compute in place or into buffers it owns: {@link llamaBlock} never reads an
 * activation again after passing it to an op that returns a new one, except `x` (the residual stream,
 * read by `norm(x, L, "attnNorm")` and then by `residual(x, o)`) and the normed inputs (read by every
 * projection of their group).
 */
export interface BlockOps<T> {
  readonly config: LlamaConfig;
  /** Row-wise RMSNorm `x / sqrt(mean(x²) + normEps) · L[name]` over rows of width dim. */
  norm(x: T, L: LayerWeights, name: BlockNormName): T;
  /** `x · L[name]ᵀ` (named `layers.<layer>.<name>` in errors and hooks). */
  linear(x: T, L: LayerWeights, name: LinearName, layer: number): T;
  /** `y + L[name]` on every row. */
  bias(y: T, L: LayerWeights, name: BlockBiasName): T;
  /** RMSNorm of each of the `heads` head slices (width headSize) of every row, weight `L[name]`. */
  headNorm(t: T, L: LayerWeights, name: BlockHeadNormName, heads: number): T;
  /** RoPE of `heads` heads per row at the rows' positions (adjacent pairs, the config's frequencies). */
  rope(t: T, heads: number): T;
  /** Causal grouped-query attention of queries `q` over keys `k` and values `v` (after RoPE). */
  attention(q: T, k: T, v: T, at: BlockAttention): T;
  /** The FFN gate: `silu(a) ⊙ b` (SwiGLU) or `gelu_tanh(a) ⊙ b` (GeGLU). */
  gate(a: T, b: T, act: "silu" | "gelu_tanh"): T;
  /** The residual add `x + y`. */
  residual(x: T, y: T): T;
}

/** The attention score scale of `c`: `1/sqrt(queryPreAttnScalar)` when set, else `1/sqrt(headSize)`. */
export function attentionScale(c: LlamaConfig): number {
  return c.queryPreAttnScalar !== undefined
    ? 1 / Math.sqrt(c.queryPreAttnScalar)
    : 1 / Math.sqrt(headSize(c));
}

/**
 * One LLaMA-family transformer block (layer `l`, weights `L`) on the residual stream `x`: the one place
 * that says what a block computes, for inference, training and GPTQ calibration alike.
 * ```
 * h = rmsnorm(x, attnNorm)
 * q, k, v = h·Wqᵀ (+bq), h·Wkᵀ (+bk), h·Wvᵀ (+bv)         biases: Qwen2
 * q, k = headNorm(q, qNorm), headNorm(k, kNorm)           qkNorm: Qwen3
 * q, k = rope(q), rope(k)
 * o = attention(q, k, v; causal, GQA, scale, soft-cap, sliding window)·Woᵀ (+bo)
 * x = x + rmsnorm(o, postAttnNorm)                        post norms: Gemma 2
 * h = rmsnorm(x, ffnNorm)
 * x = x + rmsnorm(act(h·W1ᵀ) ⊙ h·W3ᵀ)·W2ᵀ, postFfnNorm)   act: silu, or gelu_tanh (Gemma)
 * ```
 * Llama, Mistral (sliding window), Phi-3 (after its fused projections are split), Qwen2/3 and Gemma 2
 * differ only in which of these parts their layers and config have.
 */
export function llamaBlock<T>(ops: BlockOps<T>, L: LayerWeights, l: number, x: T): T {
  const c = ops.config;
  const h = ops.norm(x, L, "attnNorm");
  let q = ops.linear(h, L, "wq", l);
  let k = ops.linear(h, L, "wk", l);
  let v = ops.linear(h, L, "wv", l);
  if (L.bq) q = ops.bias(q, L, "bq");
  if (L.bk) k = ops.bias(k, L, "bk");
  if (L.bv) v = ops.bias(v, L, "bv");
  if (L.qNorm) q = ops.headNorm(q, L, "qNorm", c.nHeads);
  if (L.kNorm) k = ops.headNorm(k, L, "kNorm", c.nKvHeads);
  q = ops.rope(q, c.nHeads);
  k = ops.rope(k, c.nKvHeads);
  const a = ops.attention(q, k, v, {
    layer: l,
    scale: attentionScale(c),
    cap: c.attnLogitSoftcap ?? 0,
    window: layerWindow(c, l),
  });
  let o = ops.linear(a, L, "wo", l);
  if (L.bo) o = ops.bias(o, L, "bo");
  if (L.postAttnNorm) o = ops.norm(o, L, "postAttnNorm");
  const x1 = ops.residual(x, o);
  const h2 = ops.norm(x1, L, "ffnNorm");
  const g = ops.linear(h2, L, "w1", l);
  const u = ops.linear(h2, L, "w3", l);
  let y = ops.linear(ops.gate(g, u, c.hiddenAct === "gelu_tanh" ? "gelu_tanh" : "silu"), L, "w2", l);
  if (L.postFfnNorm) y = ops.norm(y, L, "postFfnNorm");
  return ops.residual(x1, y);
}
