import type { Linear } from "@int21/quant-kernels";
import type { LlamaConfig } from "./config";
import type { TokenEmbedding } from "./embedding";

/**
 * One transformer layer. Every projection goes through the one `Linear` interface
 * (float, quantized or LoRA-wrapped); norms stay float32.
 * Names follow llama2.c; the Hugging Face / PEFT names are given beside each.
 */
export interface LayerWeights {
  /** [dim] — input_layernorm */
  attnNorm: Float32Array;
  /** [qDim × dim] — self_attn.q_proj (qDim = nHeads·headSize, dim unless headDim is set) */
  wq: Linear;
  /** [kvDim × dim] — self_attn.k_proj */
  wk: Linear;
  /** [kvDim × dim] — self_attn.v_proj */
  wv: Linear;
  /** [dim × qDim] — self_attn.o_proj */
  wo: Linear;
  /** [dim] — post_attention_layernorm */
  ffnNorm: Float32Array;
  /** [hiddenDim × dim] — mlp.gate_proj */
  w1: Linear;
  /** [dim × hiddenDim] — mlp.down_proj */
  w2: Linear;
  /** [hiddenDim × dim] — mlp.up_proj */
  w3: Linear;
  /** [qDim] — self_attn.q_proj.bias (config `qkvBias`; in llama2.c's interleaved RoPE order like wq's rows). */
  bq?: Float32Array;
  /** [kvDim] — self_attn.k_proj.bias (config `qkvBias`). */
  bk?: Float32Array;
  /** [kvDim] — self_attn.v_proj.bias (config `qkvBias`). */
  bv?: Float32Array;
  /** [dim] — self_attn.o_proj.bias (config `oBias`). */
  bo?: Float32Array;
  /** [headSize] — self_attn.q_norm (config `qkNorm`), interleaved RoPE order. */
  qNorm?: Float32Array;
  /** [headSize] — self_attn.k_norm (config `qkNorm`). */
  kNorm?: Float32Array;
  /** [dim] — Gemma 2 post_attention_layernorm (config `postNorms`; `ffnNorm` is then pre_feedforward_layernorm). */
  postAttnNorm?: Float32Array;
  /** [dim] — Gemma 2 post_feedforward_layernorm (config `postNorms`). */
  postFfnNorm?: Float32Array;
}

/** A whole model: config, embeddings, layers, final norm, classifier. */
export interface LlamaWeights {
  config: LlamaConfig;
  /**
   * [vocabSize × dim] — model.embed_tokens: float32, or a packed `QuantizedLinear` (rows = tokens);
   * only gathered rows are ever read ({@link embeddingRows}).
   */
  tokenEmbedding: TokenEmbedding;
  layers: LayerWeights[];
  /** [dim] — model.norm */
  finalNorm: Float32Array;
  /**
   * [vocabSize × dim] — lm_head. With `sharedClassifier`: a FloatLinear over a float tokenEmbedding,
   * or a QuantLinear over the same packed record ({@link tiedClassifier}).
   */
  classifier: Linear;
}

/** The projection names of a layer, llama2.c style, and their Hugging Face module names. */
export const LINEAR_NAMES = {
  wq: "self_attn.q_proj",
  wk: "self_attn.k_proj",
  wv: "self_attn.v_proj",
  wo: "self_attn.o_proj",
  w1: "mlp.gate_proj",
  w2: "mlp.down_proj",
  w3: "mlp.up_proj",
} as const;

/**
 * The non-projection float vectors a layer may carry beyond its two norms, present when the config
 * asks for them (`qkvBias`, `oBias`, `qkNorm`, `postNorms`). They are frozen in training (LoRA adapts
 * the projections only) and stay float32 when a model is quantized.
 */
export const EXTRA_LAYER_TENSORS = [
  "bq",
  "bk",
  "bv",
  "bo",
  "qNorm",
  "kNorm",
  "postAttnNorm",
  "postFfnNorm",
] as const;

/** A name of {@link EXTRA_LAYER_TENSORS}. */
export type ExtraLayerTensor = (typeof EXTRA_LAYER_TENSORS)[number];

/** A projection name of {@link LayerWeights}. */
export type LinearName = keyof typeof LINEAR_NAMES;
