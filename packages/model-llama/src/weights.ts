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
  /** [dim × dim] — self_attn.q_proj */
  wq: Linear;
  /** [kvDim × dim] — self_attn.k_proj */
  wk: Linear;
  /** [kvDim × dim] — self_attn.v_proj */
  wv: Linear;
  /** [dim × dim] — self_attn.o_proj */
  wo: Linear;
  /** [dim] — post_attention_layernorm */
  ffnNorm: Float32Array;
  /** [hiddenDim × dim] — mlp.gate_proj */
  w1: Linear;
  /** [dim × hiddenDim] — mlp.down_proj */
  w2: Linear;
  /** [hiddenDim × dim] — mlp.up_proj */
  w3: Linear;
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

/** A projection name of {@link LayerWeights}. */
export type LinearName = keyof typeof LINEAR_NAMES;
