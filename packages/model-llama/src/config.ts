/**
 * LLaMA hyper-parameters, in llama2.c's names. One record for every source (llama2.c `.bin`,
 * Hugging Face `config.json`, GGUF metadata, int21 checkpoints).
 *
 * The optional fields describe the LLaMA-like families (Llama 3, Mistral, Qwen2/3, Phi-3, Gemma 2);
 * absent, each means plain LLaMA 2 maths, so configs written before they existed keep working.
 */
export interface LlamaConfig {
  /** Model width (hidden size). */
  dim: number;
  /** FFN inner width (intermediate size). */
  hiddenDim: number;
  nLayers: number;
  /** Query heads. */
  nHeads: number;
  /** Key/value heads (grouped-query attention when < nHeads). */
  nKvHeads: number;
  vocabSize: number;
  /** Maximum context length. */
  seqLen: number;
  /** RoPE base, 10000 for LLaMA 1/2 and llama2.c. */
  ropeTheta: number;
  /** RMSNorm epsilon, 1e-5 for llama2.c and LLaMA 2. */
  normEps: number;
  /** True when the classifier is the token-embedding matrix (llama2.c positive vocab, HF tie_word_embeddings). */
  sharedClassifier: boolean;
  /**
   * The family the checkpoint came from (Hugging Face `model_type`); it decides tensor names and the
   * config written on export, never the maths (the fields below do). Default `"llama"`.
   */
  family?: ModelFamily;
  /** Head size when it is not `dim / nHeads` (Qwen3, Gemma 2, Llama 3.2 can set it explicitly). */
  headDim?: number;
  /** RoPE frequency scaling (Llama 3.1's `rope_type: "llama3"`, or linear position interpolation). */
  ropeScaling?: RopeScaling;
  /**
   * Per-pair RoPE frequency divisors `[headSize/2]` (llama.cpp's `rope_freqs.weight`, how GGUF files carry
   * Llama 3.1's scaling): pair j rotates by `pos · invFreq[j] / ropeFreqFactors[j]`.
   */
  ropeFreqFactors?: number[];
  /** Attention window: position p attends to keys `p − slidingWindow < t ≤ p` on sliding layers. */
  slidingWindow?: number;
  /**
   * Which layers use {@link slidingWindow} (Gemma 2 alternates, HF `layer_types`); absent: every
   * layer when `slidingWindow` is set.
   */
  slidingLayers?: boolean[];
  /** q/k/v projections carry a bias (Qwen2, HF `attention_bias`). */
  qkvBias?: boolean;
  /** o projection carries a bias (HF `attention_bias` on LLaMA). */
  oBias?: boolean;
  /** Per-head RMSNorm of q and k before RoPE (Qwen3's `q_norm` / `k_norm`, weights `[headSize]`). */
  qkNorm?: boolean;
  /** Gate activation of the FFN: `silu` (default) or GeLU with the tanh approximation (Gemma). */
  hiddenAct?: "silu" | "gelu_tanh";
  /** Gemma 2's extra norms: RMSNorm of the attention output and of the FFN output before each residual add. */
  postNorms?: boolean;
  /** The token embedding is multiplied by this before the first layer (Gemma: `sqrt(dim)`). */
  embedScale?: number;
  /** Final logits become `cap · tanh(logits / cap)` (Gemma 2 `final_logit_softcapping`). */
  finalLogitSoftcap?: number;
  /** Attention scores become `cap · tanh(score / cap)` before the mask (Gemma 2 `attn_logit_softcapping`). */
  attnLogitSoftcap?: number;
  /** Scores are scaled by `queryPreAttnScalar^−½` instead of `headSize^−½` (Gemma 2). */
  queryPreAttnScalar?: number;
  /**
   * Checkpoints of this family store RMSNorm weights as `w` applied as `(normOffset + w)` (Gemma: 1).
   * Loaders fold it in (int21 norms are always the multiplier itself); exporters take it out again.
   */
  normOffset?: number;
}

/** The LLaMA-like families int21 loads (Hugging Face `model_type`). */
export type ModelFamily = "llama" | "mistral" | "qwen2" | "qwen3" | "phi3" | "gemma2";

/** RoPE frequency scaling, as transformers' `rope_scaling` / `rope_parameters`. */
export type RopeScaling =
  | {
      /** Llama 3.1: low frequencies divided by `factor`, high ones kept, a smooth ramp between. */
      type: "llama3";
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    }
  | {
      /** Linear position interpolation: every frequency divided by `factor`. */
      type: "linear";
      factor: number;
    };

/** Head size: `headDim` when given, else dim / nHeads. */
export function headSize(c: LlamaConfig): number {
  return c.headDim ?? c.dim / c.nHeads;
}

/** Width of K and V projections = nKvHeads * headSize. */
export function kvDim(c: LlamaConfig): number {
  return c.nKvHeads * headSize(c);
}

/** Width of the Q projection and of the attention output = nHeads * headSize (dim unless headDim is set). */
export function qDim(c: LlamaConfig): number {
  return c.nHeads * headSize(c);
}

/** The attention window of layer `l`: `slidingWindow` on a sliding layer, else 0 (full causal attention). */
export function layerWindow(c: LlamaConfig, l: number): number {
  if (c.slidingWindow === undefined) return 0;
  if (c.slidingLayers !== undefined && !c.slidingLayers[l]) return 0;
  return c.slidingWindow;
}

/**
 * RoPE inverse frequencies `[headSize/2]`: pair j rotates by `pos · invFreq[j]`, with
 * `invFreq[j] = ropeTheta^(−2j/headSize)`, then {@link LlamaConfig.ropeScaling} applied
 * (transformers' `_compute_llama3_parameters` / linear scaling).
 */
export function ropeInvFreq(c: LlamaConfig): Float64Array {
  const hs = headSize(c);
  const half = hs / 2;
  const f = new Float64Array(half);
  for (let j = 0; j < half; j++) f[j] = c.ropeTheta ** (-(2 * j) / hs);
  const s = c.ropeScaling;
  if (s?.type === "linear") {
    for (let j = 0; j < half; j++) f[j] /= s.factor;
  } else if (s?.type === "llama3") {
    const old = s.originalMaxPositionEmbeddings;
    const lowWavelen = old / s.lowFreqFactor;
    const highWavelen = old / s.highFreqFactor;
    for (let j = 0; j < half; j++) {
      const wavelen = (2 * Math.PI) / f[j];
      if (wavelen > lowWavelen) f[j] /= s.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (old / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        f[j] = ((1 - smooth) * f[j]) / s.factor + smooth * f[j];
      }
    }
  }
  if (c.ropeFreqFactors) for (let j = 0; j < half; j++) f[j] /= c.ropeFreqFactors[j];
  return f;
}

/** The {@link LlamaConfig} fields that are positive integers in every config. */
export const CONFIG_INT_FIELDS = [
  "dim",
  "hiddenDim",
  "nLayers",
  "nHeads",
  "nKvHeads",
  "vocabSize",
  "seqLen",
] as const satisfies readonly (keyof LlamaConfig)[];

/** The numeric {@link LlamaConfig} fields every config holds: {@link CONFIG_INT_FIELDS}, RoPE θ and the norm ε. */
export const CONFIG_NUMBER_FIELDS = [
  ...CONFIG_INT_FIELDS,
  "ropeTheta",
  "normEps",
] as const satisfies readonly (keyof LlamaConfig)[];

/**
 * Throws an Error naming the offending field when the config is not a valid LLaMA shape
 * (`source` names the file or object it came from).
 */
export function validateConfig(c: LlamaConfig, source = "config"): LlamaConfig {
  for (const k of CONFIG_INT_FIELDS) {
    const v = c[k] as number;
    if (!Number.isSafeInteger(v) || v <= 0)
      throw new Error(`${source}: ${k} must be a positive integer, got ${String(v)}`);
  }
  if (c.headDim !== undefined) {
    if (!Number.isSafeInteger(c.headDim) || c.headDim <= 0)
      throw new Error(`${source}: headDim must be a positive integer, got ${String(c.headDim)}`);
  } else if (c.dim % c.nHeads !== 0)
    throw new Error(`${source}: dim ${c.dim} is not divisible by nHeads ${c.nHeads}`);
  if (c.nHeads % c.nKvHeads !== 0)
    throw new Error(`${source}: nHeads ${c.nHeads} is not a multiple of nKvHeads ${c.nKvHeads}`);
  if (headSize(c) % 2 !== 0) throw new Error(`${source}: head size ${headSize(c)} must be even for RoPE`);
  if (!(c.ropeTheta > 0)) throw new Error(`${source}: ropeTheta must be > 0, got ${String(c.ropeTheta)}`);
  if (!(c.normEps > 0)) throw new Error(`${source}: normEps must be > 0, got ${String(c.normEps)}`);
  const positive = (k: keyof LlamaConfig, int = false) => {
    const v = c[k];
    if (v === undefined) return;
    if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v) || (int && !Number.isSafeInteger(v)))
      throw new Error(`${source}: ${k} must be a positive ${int ? "integer" : "number"}, got ${String(v)}`);
  };
  positive("slidingWindow", true);
  positive("embedScale");
  positive("finalLogitSoftcap");
  positive("attnLogitSoftcap");
  positive("queryPreAttnScalar");
  if (c.slidingLayers !== undefined && c.slidingLayers.length !== c.nLayers)
    throw new Error(`${source}: slidingLayers has ${c.slidingLayers.length} entries for ${c.nLayers} layers`);
  if (c.hiddenAct !== undefined && c.hiddenAct !== "silu" && c.hiddenAct !== "gelu_tanh")
    throw new Error(`${source}: hiddenAct must be "silu" or "gelu_tanh", got ${String(c.hiddenAct)}`);
  const ff = c.ropeFreqFactors;
  if (ff !== undefined) {
    if (ff.length !== headSize(c) / 2 || !ff.every((v) => v > 0 && Number.isFinite(v)))
      throw new Error(
        `${source}: ropeFreqFactors must be ${headSize(c) / 2} positive numbers (headSize/2), got ${ff.length} values`,
      );
  }
  const s = c.ropeScaling;
  if (s !== undefined) {
    if (!(s.factor > 0))
      throw new Error(`${source}: ropeScaling.factor must be > 0, got ${String(s.factor)}`);
    if (s.type === "llama3") {
      if (!(s.lowFreqFactor > 0) || !(s.highFreqFactor > s.lowFreqFactor))
        throw new Error(
          `${source}: ropeScaling needs 0 < lowFreqFactor < highFreqFactor, got ${String(s.lowFreqFactor)}, ${String(s.highFreqFactor)}`,
        );
      if (!(s.originalMaxPositionEmbeddings > 0))
        throw new Error(
          `${source}: ropeScaling.originalMaxPositionEmbeddings must be > 0, got ${String(s.originalMaxPositionEmbeddings)}`,
        );
    } else if (s.type !== "linear") {
      throw new Error(
        `${source}: ropeScaling type ${String((s as { type: unknown }).type)} is not supported`,
      );
    }
  }
  return c;
}
