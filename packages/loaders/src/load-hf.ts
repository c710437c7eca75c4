import { type SafetensorsInfo, openSafetensors, parseSafetensors } from "@int21/io";
import { isGptqConfig, loadGptqHf } from "./gptq-hf";
import { checkTensorCount } from "./validate-config";
import {
  type LlamaConfig,
  type ModelFamily,
  type RopeScaling,
  headSize,
  kvDim,
  layerWindow,
  qDim,
  validateConfig,
  type LoadOptions,
  type TensorReader,
  assembleFromReader,
  llamaTensorSpecs,
  LINEAR_NAMES,
  type LinearName,
  type LlamaWeights,
} from "@int21/model-llama";

/** Float dtypes a Hugging Face checkpoint may store weights in. */
const HF_FLOAT_DTYPES = new Set(["F32", "F16", "BF16"]);

/** The `model_type`s int21 loads, and the family each maps to. */
const FAMILIES: Record<string, ModelFamily> = {
  llama: "llama",
  mistral: "mistral",
  qwen2: "qwen2",
  qwen3: "qwen3",
  phi3: "phi3",
  gemma2: "gemma2",
};

/** Why a known, not supported `model_type` is out of reach. */
const OUT_OF_REACH: Record<string, string> = {
  mixtral: "mixture-of-experts FFN",
  qwen2_moe: "mixture-of-experts FFN",
  qwen3_moe: "mixture-of-experts FFN",
  gemma: "Gemma 1 (not wired up; Gemma 2 is)",
  gemma3: "Gemma 3's (1+w) q/k norms and per-layer-type RoPE bases",
  gemma3_text: "Gemma 3's (1+w) q/k norms and per-layer-type RoPE bases",
  phi: "LayerNorm with biases and partial rotary embedding",
  phimoe: "mixture-of-experts FFN",
  falcon: "parallel attention/FFN with LayerNorm",
  gpt2: "LayerNorm, learned positions",
  granite: "embedding/residual/attention/logit multipliers",
  olmo2: "q/k norms over the whole projection and post-norms",
  cohere: "LayerNorm and parallel blocks",
  llama4: "mixture-of-experts FFN, chunked attention and q/k norms without weights",
  smollm3: "layers without RoPE (no_rope_layers)",
  granitemoe: "mixture-of-experts FFN and multipliers",
  deepseek_v3: "multi-head latent attention and mixture-of-experts FFN",
};

/** transformers' defaults that differ between families. */
const FAMILY_DEFAULTS: Record<ModelFamily, { eps: number; tied: boolean; ctx: number }> = {
  llama: { eps: 1e-6, tied: false, ctx: 2048 },
  mistral: { eps: 1e-6, tied: false, ctx: 4096 * 32 },
  qwen2: { eps: 1e-6, tied: false, ctx: 32768 },
  qwen3: { eps: 1e-6, tied: false, ctx: 32768 },
  phi3: { eps: 1e-5, tied: false, ctx: 4096 },
  gemma2: { eps: 1e-6, tied: true, ctx: 8192 },
};

/**
 * Maps a Hugging Face `config.json` of a LLaMA-like family (`model_type` llama, mistral, qwen2, qwen3,
 * phi3, gemma2) to a {@link LlamaConfig}. Both layouts are read: the hub's top-level `rope_theta` /
 * `rope_scaling` and transformers ≥ 5's `rope_parameters`. Defaults follow transformers' config
 * classes (`num_key_value_heads` = heads, `rope_theta` 10000, the family's `rms_norm_eps`,
 * `max_position_embeddings` and `tie_word_embeddings`).
 *
 * Read: `head_dim`, RoPE scaling (`llama3`, `linear`), `sliding_window` (with `use_sliding_window` /
 * `max_window_layers` / `layer_types`), `attention_bias` (and Qwen2's built-in q/k/v biases), Qwen3's
 * q/k norms, and Gemma 2's `hidden_activation`, sandwich norms, embedding scale, `query_pre_attn_scalar`
 * and soft-capping. Throws naming `source` and the field on anything that would change the maths
 * and is not implemented (another `model_type`, `mlp_bias`, `partial_rotary_factor` ≠ 1, another
 * `rope_type` or activation, bidirectional attention, `quantization_config`), or on an invalid shape.
 */
export function hfConfigToLlama(json: Record<string, unknown>, source = "config.json"): LlamaConfig {
  const modelType = json.model_type === undefined ? "llama" : String(json.model_type);
  const family = FAMILIES[modelType];
  if (family === undefined) {
    const why = OUT_OF_REACH[modelType];
    throw new Error(
      `${source}: model_type "${modelType}" is not supported${why ? ` (${why})` : ""}; supported: ${Object.keys(FAMILIES).join(", ")}`,
    );
  }
  const bad = (field: string, why: string): Error =>
    new Error(`${source}: ${field} ${why} (model_type ${modelType})`);
  const present = (v: unknown) => v !== undefined && v !== null;
  const num = (key: string, dflt?: number): number => {
    const v = json[key] ?? dflt;
    if (typeof v !== "number")
      throw new Error(`${source}: ${key} must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const optNum = (key: string, obj: Record<string, unknown> = json, where = key): number | undefined => {
    const v = obj[key];
    if (!present(v)) return undefined;
    if (typeof v !== "number")
      throw new Error(`${source}: ${where} must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const defaults = FAMILY_DEFAULTS[family];

  if (present(json.quantization_config))
    throw bad(
      "quantization_config",
      "is set: pre-quantized checkpoints other than GPTQ are not supported (GPTQ folders load with loadHf / loadGptqHf)",
    );
  if (json.mlp_bias === true) throw bad("mlp_bias", "is true: FFN biases are not supported");
  if (json.use_bidirectional_attention === true)
    throw bad("use_bidirectional_attention", "is true: only causal attention is supported");

  // RoPE: transformers 5 `rope_parameters`, else the hub's `rope_theta` / `rope_scaling`.
  const rp = json.rope_parameters;
  let ropeTheta = optNum("rope_theta") ?? 10000;
  let scalingField = "rope_scaling";
  let scaling = json.rope_scaling as Record<string, unknown> | null | undefined;
  if (present(rp)) {
    if (typeof rp !== "object" || Array.isArray(rp)) throw bad("rope_parameters", "is not an object");
    const r = rp as Record<string, unknown>;
    if (!("rope_theta" in r) && !("rope_type" in r))
      throw bad("rope_parameters", `${JSON.stringify(rp)} is per layer type (not supported)`);
    ropeTheta = optNum("rope_theta", r, "rope_parameters.rope_theta") ?? ropeTheta;
    scaling = r;
    scalingField = "rope_parameters";
  }
  let ropeScaling: RopeScaling | undefined;
  if (present(scaling)) {
    if (typeof scaling !== "object") throw bad(scalingField, `${JSON.stringify(scaling)} is not an object`);
    const sc = scaling as Record<string, unknown>;
    const type = String(sc.rope_type ?? sc.type ?? "default");
    const need = (k: string): number => {
      const v = optNum(k, sc, `${scalingField}.${k}`);
      if (v === undefined) throw bad(`${scalingField}.${k}`, `is missing (rope_type ${type})`);
      return v;
    };
    if (type === "llama3") {
      ropeScaling = {
        type: "llama3",
        factor: need("factor"),
        lowFreqFactor: need("low_freq_factor"),
        highFreqFactor: need("high_freq_factor"),
        originalMaxPositionEmbeddings: need("original_max_position_embeddings"),
      };
    } else if (type === "linear") {
      ropeScaling = { type: "linear", factor: need("factor") };
    } else if (type !== "default") {
      throw bad(
        `${scalingField}.rope_type`,
        `"${type}" is not supported (supported: default, linear, llama3)`,
      );
    }
    const prf = optNum("partial_rotary_factor", sc, `${scalingField}.partial_rotary_factor`);
    if (prf !== undefined && prf !== 1)
      throw bad(`${scalingField}.partial_rotary_factor`, `${prf} is not supported (partial RoPE)`);
  }
  const prf = optNum("partial_rotary_factor");
  if (prf !== undefined && prf !== 1)
    throw bad("partial_rotary_factor", `${prf} is not supported (partial RoPE)`);

  const nHeads = num("num_attention_heads");
  const dim = num("hidden_size");
  const nLayers = num("num_hidden_layers");
  const headDim = optNum("head_dim");
  const config: LlamaConfig = {
    dim,
    hiddenDim: num("intermediate_size"),
    nLayers,
    nHeads,
    nKvHeads: num("num_key_value_heads", nHeads),
    vocabSize: num("vocab_size"),
    seqLen: num("max_position_embeddings", defaults.ctx),
    ropeTheta,
    normEps: num("rms_norm_eps", defaults.eps),
    sharedClassifier: (json.tie_word_embeddings ?? defaults.tied) === true,
  };
  if (family !== "llama") config.family = family;
  if (headDim !== undefined && headDim * nHeads !== dim) config.headDim = headDim;
  if (ropeScaling) config.ropeScaling = ropeScaling;

  // The FFN activation.
  if (family === "gemma2") {
    const act = String(json.hidden_activation ?? json.hidden_act ?? "gelu_pytorch_tanh");
    if (act !== "gelu_pytorch_tanh" && act !== "gelu_tanh")
      throw bad("hidden_activation", `"${act}" is not supported (supported: gelu_pytorch_tanh)`);
    config.hiddenAct = "gelu_tanh";
  } else if (present(json.hidden_act) && json.hidden_act !== "silu") {
    throw bad("hidden_act", `"${String(json.hidden_act)}" is not supported (supported: silu)`);
  }

  // Biases and q/k norms.
  const attnBias = json.attention_bias === true;
  if (family === "qwen2") config.qkvBias = true;
  else if (attnBias) {
    if (family === "mistral" || family === "phi3")
      throw bad("attention_bias", "is true but this family's attention has no bias");
    config.qkvBias = true;
    config.oBias = true;
  }
  if (family === "qwen3") config.qkNorm = true;

  // Sliding windows.
  const usesWindow =
    family === "mistral" ||
    family === "phi3" ||
    family === "gemma2" ||
    ((family === "qwen2" || family === "qwen3") && json.use_sliding_window === true);
  const window = usesWindow ? optNum("sliding_window") : undefined;
  const layerTypes = json.layer_types;
  let sliding: boolean[] | undefined;
  if (present(layerTypes)) {
    if (!Array.isArray(layerTypes) || layerTypes.length !== nLayers)
      throw bad(
        "layer_types",
        `must list one type per layer (${nLayers}), got ${JSON.stringify(layerTypes)}`,
      );
    sliding = layerTypes.map((t, i) => {
      if (t !== "full_attention" && t !== "sliding_attention")
        throw bad(`layer_types[${i}]`, `"${String(t)}" is not supported (full_attention, sliding_attention)`);
      return t === "sliding_attention";
    });
  } else if (family === "gemma2") {
    sliding = Array.from({ length: nLayers }, (_, i) => i % 2 === 0);
  } else if (family === "qwen2" || family === "qwen3") {
    const from = optNum("max_window_layers") ?? nLayers;
    sliding = Array.from({ length: nLayers }, (_, i) => i >= from);
  }
  if (window !== undefined && (sliding === undefined || sliding.some((b) => b))) {
    config.slidingWindow = window;
    if (sliding !== undefined && !sliding.every((b) => b)) config.slidingLayers = sliding;
  }

  if (family === "gemma2") {
    config.postNorms = true;
    config.embedScale = Math.sqrt(dim);
    config.normOffset = 1;
    config.queryPreAttnScalar = optNum("query_pre_attn_scalar") ?? 256;
    const fcap = optNum("final_logit_softcapping");
    if (fcap !== undefined) config.finalLogitSoftcap = fcap;
    const acap = optNum("attn_logit_softcapping");
    if (acap !== undefined) config.attnLogitSoftcap = acap;
  }
  return validateConfig(config, source);
}

/**
 * The inverse of {@link hfConfigToLlama}: the `config.json` of `config`'s family (hub layout:
 * top-level `rope_theta` / `rope_scaling`). Phi-3 is written as its own family (fused tensors).
 */
export function llamaToHfConfig(config: LlamaConfig): Record<string, unknown> {
  const family = config.family ?? "llama";
  if (config.ropeFreqFactors)
    throw new Error(
      "llamaToHfConfig: ropeFreqFactors (a GGUF rope_freqs table) have no Hugging Face config field; set ropeScaling instead",
    );
  const arch: Record<ModelFamily, string> = {
    llama: "LlamaForCausalLM",
    mistral: "MistralForCausalLM",
    qwen2: "Qwen2ForCausalLM",
    qwen3: "Qwen3ForCausalLM",
    phi3: "Phi3ForCausalLM",
    gemma2: "Gemma2ForCausalLM",
  };
  const out: Record<string, unknown> = {
    architectures: [arch[family]],
    model_type: family,
    hidden_size: config.dim,
    intermediate_size: config.hiddenDim,
    num_hidden_layers: config.nLayers,
    num_attention_heads: config.nHeads,
    num_key_value_heads: config.nKvHeads,
    vocab_size: config.vocabSize,
    max_position_embeddings: config.seqLen,
    rope_theta: config.ropeTheta,
    rms_norm_eps: config.normEps,
    tie_word_embeddings: config.sharedClassifier,
  };
  if (family === "gemma2") out.hidden_activation = "gelu_pytorch_tanh";
  else out.hidden_act = "silu";
  // Llama, Mistral, Qwen3 and Gemma 2's config classes default head_dim to a constant (Qwen3 128, Gemma 2 256),
  // not hidden / heads: write it always for them
  if (config.headDim !== undefined || (family !== "qwen2" && family !== "phi3"))
    out.head_dim = headSize(config);
  const s = config.ropeScaling;
  if (s?.type === "llama3") {
    out.rope_scaling = {
      rope_type: "llama3",
      factor: s.factor,
      low_freq_factor: s.lowFreqFactor,
      high_freq_factor: s.highFreqFactor,
      original_max_position_embeddings: s.originalMaxPositionEmbeddings,
    };
  } else if (s?.type === "linear") out.rope_scaling = { rope_type: "linear", factor: s.factor };
  if (family !== "qwen2" && (config.qkvBias || config.oBias)) out.attention_bias = true;
  if (config.slidingWindow !== undefined) {
    out.sliding_window = config.slidingWindow;
    if (family === "qwen2" || family === "qwen3") out.use_sliding_window = true;
    if (config.slidingLayers || family === "qwen2" || family === "qwen3" || family === "gemma2") {
      out.layer_types = Array.from({ length: config.nLayers }, (_, l) =>
        layerWindow(config, l) > 0 ? "sliding_attention" : "full_attention",
      );
    }
    if (family === "qwen2" || family === "qwen3") out.max_window_layers = 0;
  } else if (family === "gemma2") {
    out.layer_types = Array.from({ length: config.nLayers }, () => "full_attention");
  } else if (family === "mistral" || family === "phi3") {
    out.sliding_window = null; // MistralConfig defaults to a 4096 window
  }
  if (family === "gemma2") {
    out.query_pre_attn_scalar = config.queryPreAttnScalar ?? headSize(config);
    out.final_logit_softcapping = config.finalLogitSoftcap ?? null;
    out.attn_logit_softcapping = config.attnLogitSoftcap ?? null;
  }
  return out;
}

/**
 * Fields that transformers' config classes (Llama, Mistral, Qwen2, Qwen3, Phi3, Gemma2 and their `rope_scaling`)
 * declare `float`: {@link hfConfigJson} writes them with a decimal point (`30.0`), as Python's json does — the
 * strict config classes of transformers ≥ 5 refuse an integer there.
 */
export const HF_FLOAT_FIELDS: ReadonlySet<string> = new Set([
  "rope_theta",
  "rms_norm_eps",
  "attention_dropout",
  "initializer_range",
  "final_logit_softcapping",
  "attn_logit_softcapping",
  "embd_pdrop",
  "resid_pdrop",
  "partial_rotary_factor",
  "factor",
  "low_freq_factor",
  "high_freq_factor",
  "attention_factor",
  "beta_fast",
  "beta_slow",
  "mscale",
  "mscale_all_dim",
]);

/** Fields those config classes declare `int` (a fraction there is refused by {@link hfConfigJson}). */
export const HF_INT_FIELDS: ReadonlySet<string> = new Set([
  "hidden_size",
  "intermediate_size",
  "num_hidden_layers",
  "num_attention_heads",
  "num_key_value_heads",
  "head_dim",
  "vocab_size",
  "max_position_embeddings",
  "original_max_position_embeddings",
  "sliding_window",
  "max_window_layers",
  "query_pre_attn_scalar",
  "bos_token_id",
  "eos_token_id",
  "pad_token_id",
]);

/**
 * `config.json` text of a Hugging Face config object (2-space indented, trailing newline) with JSON number kinds
 * as transformers writes them: fields of {@link HF_FLOAT_FIELDS} (at any depth, e.g. `rope_scaling.factor`) as
 * floats (`30.0`, `10000.0`), fields of {@link HF_INT_FIELDS} as integers. Throws naming the field for a
 * non-finite number (JSON has none) or a fraction in an integer field.
 */
export function hfConfigJson(config: Record<string, unknown>): string {
  const MARK = "__int21_hf_float__";
  const text = JSON.stringify(
    config,
    function (this: unknown, key: string, value: unknown) {
      if (typeof value !== "number") return value;
      if (!Number.isFinite(value))
        throw new Error(`hfConfigJson: config.json field ${key} is ${value}, which JSON cannot hold`);
      if (HF_INT_FIELDS.has(key) && !Number.isInteger(value))
        throw new Error(`hfConfigJson: config.json field ${key} must be an integer, got ${value}`);
      // an integral float: a marker string, turned into `n.0` below (String(n) has no exponent below 1e21)
      if (HF_FLOAT_FIELDS.has(key) && Number.isInteger(value) && Math.abs(value) < 1e21)
        return `${MARK}${value}`;
      return value;
    },
    2,
  );
  return `${text.replace(new RegExp(`"${MARK}(-?\\d+)"`, "g"), "$1.0")}\n`;
}

/**
 * Where an int21 tensor lives in a Hugging Face checkpoint of `config`'s family: the tensor name, and
 * for Phi-3's fused `qkv_proj` / `gate_up_proj` the rows `[rowStart, rowEnd)` of it.
 */
export interface HfTensorLocation {
  tensor: string;
  rowStart?: number;
  rowEnd?: number;
}

/** {@link HfTensorLocation} of an int21 tensor name for `config`'s family (default: LLaMA names). */
export function hfTensorLocation(name: string, config?: LlamaConfig): HfTensorLocation {
  const family = config?.family ?? "llama";
  const m = /^layers\.(\d+)\.(\w+)$/.exec(name);
  if (m && family === "phi3" && config) {
    const [, l, field] = m;
    const qd = qDim(config);
    const kv = kvDim(config);
    const p = `model.layers.${l}.`;
    const qkv = `${p}self_attn.qkv_proj.weight`;
    const gateUp = `${p}mlp.gate_up_proj.weight`;
    if (field === "wq") return { tensor: qkv, rowStart: 0, rowEnd: qd };
    if (field === "wk") return { tensor: qkv, rowStart: qd, rowEnd: qd + kv };
    if (field === "wv") return { tensor: qkv, rowStart: qd + kv, rowEnd: qd + 2 * kv };
    if (field === "w1") return { tensor: gateUp, rowStart: 0, rowEnd: config.hiddenDim };
    if (field === "w3") return { tensor: gateUp, rowStart: config.hiddenDim, rowEnd: 2 * config.hiddenDim };
  }
  if (m && family === "gemma2") {
    const [, l, field] = m;
    const p = `model.layers.${l}.`;
    if (field === "ffnNorm") return { tensor: `${p}pre_feedforward_layernorm.weight` };
    if (field === "postAttnNorm") return { tensor: `${p}post_attention_layernorm.weight` };
    if (field === "postFfnNorm") return { tensor: `${p}post_feedforward_layernorm.weight` };
  }
  return { tensor: hfTensorName(name) };
}

const EXTRA_HF: Record<string, string> = {
  bq: "self_attn.q_proj.bias",
  bk: "self_attn.k_proj.bias",
  bv: "self_attn.v_proj.bias",
  bo: "self_attn.o_proj.bias",
  qNorm: "self_attn.q_norm.weight",
  kNorm: "self_attn.k_norm.weight",
  postAttnNorm: "post_attention_layernorm.weight",
  postFfnNorm: "post_feedforward_layernorm.weight",
};

/**
 * The Hugging Face tensor name of an int21 tensor name in LLaMA's layout (`layers.3.wq` →
 * `model.layers.3.self_attn.q_proj.weight`, `layers.3.bq` → `….q_proj.bias`); see
 * {@link hfTensorLocation} for Gemma 2's norms and Phi-3's fused projections.
 */
export function hfTensorName(name: string): string {
  if (name === "tokenEmbedding") return "model.embed_tokens.weight";
  if (name === "finalNorm") return "model.norm.weight";
  if (name === "classifier") return "lm_head.weight";
  const m = /^layers\.(\d+)\.(\w+)$/.exec(name);
  if (m) {
    const [, l, field] = m;
    if (field === "attnNorm") return `model.layers.${l}.input_layernorm.weight`;
    if (field === "ffnNorm") return `model.layers.${l}.post_attention_layernorm.weight`;
    if (field in LINEAR_NAMES) return `model.layers.${l}.${LINEAR_NAMES[field as LinearName]}.weight`;
    if (field in EXTRA_HF) return `model.layers.${l}.${EXTRA_HF[field]}`;
  }
  throw new Error(`hfTensorName: unknown tensor ${name}`);
}

/**
 * Hugging Face's q/k row permutation (transformers' `convert_llama_weights_to_hf`): inside each head of
 * `hs` rows, llama2.c's interleaved RoPE pairs (rows 2i, 2i+1) become the two halves HF's
 * "rotate half" expects: `hf[h·hs + j·hs/2 + i] = orig[h·hs + 2i + j]` for j ∈ {0,1}, i < hs/2.
 * `w` is `[rows × cols]` row-major with `rows = nHeads · hs`; returns a new array.
 */
export function permuteHfRows(w: Float32Array, nHeads: number, rows: number, cols: number): Float32Array {
  return moveRows(w, nHeads, rows, cols, true);
}

/** Undoes {@link permuteHfRows}: `orig[h·hs + 2i + j] = hf[h·hs + j·hs/2 + i]`. */
export function unpermuteHfRows(w: Float32Array, nHeads: number, rows: number, cols: number): Float32Array {
  return moveRows(w, nHeads, rows, cols, false);
}

function moveRows(w: Float32Array, nHeads: number, rows: number, cols: number, toHf: boolean): Float32Array {
  const hs = rows / nHeads;
  if (!Number.isInteger(hs) || hs % 2 !== 0 || w.length !== rows * cols) {
    throw new Error(
      `q/k permutation: ${rows}×${cols} (${w.length} values) does not split into ${nHeads} even heads`,
    );
  }
  const out = new Float32Array(w.length);
  const half = hs / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < half; i++) {
        const orig = h * hs + 2 * i + j;
        const hf = h * hs + j * half + i;
        const [src, dst] = toHf ? [orig, hf] : [hf, orig];
        out.set(w.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

/** One opened shard: its validated header and a float reader. */
interface Shard {
  /** Path for messages. */
  file: string;
  /** Name relative to the model directory, as the index lists it. */
  rel: string;
  info: SafetensorsInfo;
  readF32(name: string): Promise<Float32Array> | Float32Array;
  close(): Promise<void> | void;
}

/** Where a Hugging Face checkpoint's pieces come from: a directory on disk, or bytes in memory. */
interface HfSource {
  label: string;
  has(file: string): Promise<boolean>;
  readText(file: string): Promise<string | undefined>;
  openShard(file: string): Promise<Shard>;
}

/**
 * Loads a Hugging Face LLaMA-family directory: `config.json` and either `model.safetensors` or
 * `model.safetensors.index.json` with its shards; F32, F16 or BF16 tensors; GQA; tied or separate
 * `lm_head`. Every shard header is validated (names, dtypes, shapes against the config, offsets against
 * the file size) before any weight is read; then weights stream shard by shard, tensor by tensor,
 * the q/k rows are un-permuted to llama2.c's interleaved RoPE layout, and with `opts.quantize` each
 * projection is quantized at once and its float copy dropped (a 7B model never exists in float).
 */
export async function loadHf(dir: string, opts: LoadOptions = {}): Promise<LlamaWeights> {
  // A GPTQ checkpoint (quantization_config.quant_method "gptq") loads as packed records.
  const { readFile } = await import("node:fs/promises");
  const { join } = await import("node:path");
  const cfg = await readFile(join(dir, "config.json"), "utf8").catch(() => undefined);
  if (cfg !== undefined && /"quant_method"\s*:\s*"gptq"/.test(cfg)) {
    if (isGptqConfig(JSON.parse(cfg))) return loadGptqHf(dir, opts);
  }
  // an older AutoGPTQ folder: quantize_config.json beside a config.json without quantization_config
  if (cfg !== undefined && !cfg.includes('"quantization_config"')) {
    const legacy = await readFile(join(dir, "quantize_config.json"), "utf8").catch(() => undefined);
    if (legacy !== undefined) return loadGptqHf(dir, opts);
  }
  return assembleFromReader(await openHfReader(dir), opts);
}

/**
 * Opens and validates a Hugging Face directory (as {@link loadHf} does) without reading any weight:
 * a {@link TensorReader} that reads one tensor at a time (GPTQ streams a model layer by layer with it).
 */
export async function openHfReader(dir: string): Promise<TensorReader> {
  const { access, readFile } = await import("node:fs/promises");
  const { join } = await import("node:path");
  return openHfReaderFrom({
    label: dir,
    async has(file) {
      try {
        await access(join(dir, file));
        return true;
      } catch {
        return false;
      }
    },
    async readText(file) {
      try {
        return await readFile(join(dir, file), "utf8");
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw new Error(`${join(dir, file)}: cannot read (${(e as Error).message})`);
      }
    },
    async openShard(file) {
      const f = await openSafetensors(join(dir, file));
      return {
        file: join(dir, file),
        rel: file,
        info: f,
        readF32: (n) => f.readF32(n),
        close: () => f.close(),
      };
    },
  });
}

/**
 * {@link loadHf} over files already in memory (browsers): `files` maps file names (`config.json`,
 * `model.safetensors`, `model.safetensors.index.json`, shard names) to their bytes.
 */
export async function loadHfBytes(
  files: Record<string, Uint8Array>,
  opts: LoadOptions = {},
): Promise<LlamaWeights> {
  const dec = new TextDecoder();
  const reader = await openHfReaderFrom({
    label: "<hf bytes>",
    async has(file) {
      return Object.hasOwn(files, file);
    },
    async readText(file) {
      return Object.hasOwn(files, file) ? dec.decode(files[file]) : undefined;
    },
    async openShard(file) {
      if (!Object.hasOwn(files, file)) throw new Error(`<hf bytes>: shard ${file} is missing`);
      const f = parseSafetensors(files[file], file);
      return { file, rel: file, info: f, readF32: (n) => f.readF32(n), close() {} };
    },
  });
  return assembleFromReader(reader, opts);
}

async function openHfReaderFrom(src: HfSource): Promise<TensorReader> {
  const cfgText = await src.readText("config.json");
  if (cfgText === undefined)
    throw new Error(`${src.label}: no config.json (not a Hugging Face model directory)`);
  let cfgJson: Record<string, unknown>;
  try {
    cfgJson = JSON.parse(cfgText);
  } catch (e) {
    throw new Error(`${src.label}/config.json: invalid JSON (${(e as Error).message})`);
  }
  if (cfgJson === null || typeof cfgJson !== "object" || Array.isArray(cfgJson))
    throw new Error(`${src.label}/config.json: must be a JSON object, got ${JSON.stringify(cfgJson)}`);
  const config = hfConfigToLlama(cfgJson, `${src.label}/config.json`);

  // Which shard holds which tensor.
  const weightMap = new Map<string, string>();
  const indexText = await src.readText("model.safetensors.index.json");
  let shardFiles: string[];
  if (indexText !== undefined) {
    let index: { weight_map?: Record<string, unknown> };
    try {
      index = JSON.parse(indexText);
    } catch (e) {
      throw new Error(`${src.label}/model.safetensors.index.json: invalid JSON (${(e as Error).message})`);
    }
    if (
      index === null ||
      typeof index !== "object" ||
      !index.weight_map ||
      typeof index.weight_map !== "object"
    ) {
      throw new Error(`${src.label}/model.safetensors.index.json: no weight_map`);
    }
    for (const [t, f] of Object.entries(index.weight_map)) {
      if (typeof f !== "string")
        throw new Error(`${src.label}/model.safetensors.index.json: weight_map["${t}"] is not a file name`);
      if (f === "" || f.startsWith("/") || f.split(/[\\/]/).includes(".."))
        throw new Error(
          `${src.label}/model.safetensors.index.json: weight_map["${t}"] = ${JSON.stringify(f)} is not a file inside the model directory`,
        );
      weightMap.set(t, f);
    }
    shardFiles = [...new Set(weightMap.values())].sort();
  } else if (await src.has("model.safetensors")) {
    shardFiles = ["model.safetensors"];
  } else {
    throw new Error(`${src.label}: neither model.safetensors nor model.safetensors.index.json`);
  }

  // Open and validate every shard header before reading any weight.
  const shards: Shard[] = [];
  let ok = false;
  try {
    for (const f of shardFiles) shards.push(await src.openShard(f));
    const byName = new Map<string, Shard>();
    for (const s of shards) {
      for (const t of s.info.names) {
        if (indexText !== undefined && weightMap.get(t) !== s.rel) {
          if (weightMap.get(t) === undefined && !t.endsWith(".rotary_emb.inv_freq")) {
            throw new Error(`${s.file}: tensor ${t} is not listed in the index's weight_map`);
          }
          continue; // listed under another shard: that one is authoritative
        }
        byName.set(t, s);
      }
    }
    for (const [t, f] of weightMap) {
      if (!byName.has(t))
        throw new Error(
          `${src.label}: tensor ${t} is listed in the index under ${f} but ${f} does not hold it`,
        );
    }
    const wanted = new Map<string, string[]>(); // hf name → int21 name(s) (several for a fused tensor)
    const locs = new Map<string, HfTensorLocation>();
    checkTensorCount(config, byName.size, src.label);
    for (const spec of llamaTensorSpecs(config)) {
      const loc = hfTensorLocation(spec.name, config);
      const hf = loc.tensor;
      const s = byName.get(hf);
      if (!s) throw new Error(`${src.label}: missing tensor ${hf} (${spec.name} [${spec.shape.join("×")}])`);
      const info = s.info.tensors[hf];
      if (!HF_FLOAT_DTYPES.has(info.dtype)) {
        throw new Error(`${s.file}: tensor ${hf} has dtype ${info.dtype}; supported: F32, F16, BF16`);
      }
      const fused = loc.rowStart !== undefined;
      if (fused) {
        // The fused tensor's rows must be exactly its parts' (q|k|v or gate|up).
        const total = /\.w[qkv]$/.test(spec.name) ? qDim(config) + 2 * kvDim(config) : 2 * config.hiddenDim;
        if (info.shape.length !== 2 || info.shape[0] !== total || info.shape[1] !== spec.shape[1])
          throw new Error(
            `${s.file}: tensor ${hf} has shape [${info.shape.join("×")}], the config needs [${total}×${spec.shape[1]}]`,
          );
      } else if (info.shape.length !== spec.shape.length || info.shape.some((d, i) => d !== spec.shape[i])) {
        throw new Error(
          `${s.file}: tensor ${hf} has shape [${info.shape.join("×")}], the config needs [${spec.shape.join("×")}]`,
        );
      }
      const list = wanted.get(hf) ?? [];
      list.push(spec.name);
      wanted.set(hf, list);
      locs.set(spec.name, loc);
    }
    for (const t of byName.keys()) {
      if (wanted.has(t) || t.endsWith(".rotary_emb.inv_freq")) continue;
      if (t === "lm_head.weight" && config.sharedClassifier) continue; // tied: the embedding is the classifier
      throw new Error(
        `${byName.get(t)!.file}: unexpected tensor ${t} for a ${config.family ?? "llama"} model (a feature int21 does not implement?)`,
      );
    }

    // File order: shard by shard, tensor by tensor.
    const order: string[] = [];
    const fileOf = new Map<string, Shard>();
    for (const s of shards) {
      for (const t of s.info.names) {
        const names = wanted.get(t);
        if (names === undefined || byName.get(t) !== s) continue;
        for (const name of names) {
          order.push(name);
          fileOf.set(name, s);
        }
      }
    }
    const hs = headSize(config);
    const offset = config.normOffset ?? 0;
    // One fused tensor (Phi-3 qkv_proj / gate_up_proj) is kept while its parts are read.
    let fusedName = "";
    let fusedData: Float32Array | undefined;
    ok = true;
    return {
      config,
      source: src.label,
      order,
      fileOf: (name) => fileOf.get(name)?.file ?? src.label,
      async read(name) {
        const s = fileOf.get(name);
        const loc = locs.get(name);
        if (!s || !loc) throw new Error(`${src.label}: no tensor ${name} in this model`);
        let data: Float32Array;
        if (loc.rowStart !== undefined) {
          if (fusedName !== loc.tensor || !fusedData) {
            fusedData = await s.readF32(loc.tensor);
            fusedName = loc.tensor;
          }
          const cols = s.info.tensors[loc.tensor].shape[1];
          data = fusedData.slice(loc.rowStart * cols, loc.rowEnd! * cols);
        } else {
          data = await s.readF32(loc.tensor);
        }
        const field = name.slice(name.lastIndexOf(".") + 1);
        if (field === "wq" || field === "wk") {
          const rows = data.length / config.dim;
          data = unpermuteHfRows(data, rows / hs, rows, config.dim);
        } else if (field === "bq" || field === "bk" || field === "qNorm" || field === "kNorm") {
          data = unpermuteHfRows(data, data.length / hs, data.length, 1);
        }
        if (
          offset !== 0 &&
          /^(finalNorm|attnNorm|ffnNorm|postAttnNorm|postFfnNorm|qNorm|kNorm)$/.test(field)
        ) {
          for (let i = 0; i < data.length; i++) data[i] += offset;
        }
        return data;
      },
      async close() {
        for (const s of shards) await s.close();
      },
    };
  } finally {
    if (!ok) for (const s of shards) await s.close();
  }
}
