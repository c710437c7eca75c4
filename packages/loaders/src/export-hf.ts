// Export a LLaMA as a Hugging Face directory (config.json + safetensors) that transformers and loadHf read:
// HF tensor names, HF's q/k row permutation, float weights (packed projections dequantized, LoRA merged in float).
import { type SafetensorsWriteTensor, writeFileAtomic, writeSafetensorsSharded } from "@int21/io";
import { isLoRALinear } from "@int21/lora";
import { type Linear, referenceDequantize } from "@int21/quant-kernels";
import { hfConfigJson, hfTensorLocation, llamaToHfConfig, permuteHfRows } from "./load-hf";
import {
  type LlamaConfig,
  headSize,
  kvDim,
  qDim,
  validateConfig,
  denseTokenEmbedding,
  isTiedClassifier,
  linearParts,
  EXTRA_LAYER_TENSORS,
  LINEAR_NAMES,
  type LinearName,
  type LlamaWeights,
} from "@int21/model-llama";

/** The float weight of one projection and where it came from. */
export interface FloatWeight {
  /** `[outFeatures × inFeatures]` row-major. */
  weight: Float32Array;
  /** `float`: stored float; `dequantized`: an int21 packed record expanded (exactly its dequantized values). */
  source: "float" | "dequantized";
  /** Names of the LoRA adapters folded in (`W + Σ scaling·B·A`, computed in float: no re-quantization). */
  adapters: string[];
}

/**
 * The float weight behind any projection: a float layer's weight, a packed layer's dequantized weight, and for a
 * LoRA-wrapped layer its base (either kind) plus every active adapter's `scaling·B·A`, added in float32 — the
 * merge is exact up to float32 rounding, unlike merging into a packed base. Throws naming `name` for anything
 * else (a biased layer). A fresh array unless the layer is a plain float layer (then its own weight).
 */
export function floatWeightOf(l: Linear, name: string): FloatWeight {
  if (isLoRALinear(l)) {
    const base = floatWeightOf(l.base, name);
    const weight = base.source === "float" ? base.weight.slice() : base.weight;
    const adapters: string[] = [];
    for (const a of l.adapters) {
      if (!a.active) continue;
      a.addDeltaTo(weight);
      adapters.push(a.name);
    }
    return { weight, source: base.source, adapters };
  }
  const p = linearParts(l, name);
  if (p.kind === "float") return { weight: p.weight, source: "float", adapters: [] };
  const weight = new Float32Array(p.q.outFeatures * p.q.inFeatures);
  referenceDequantize(p.q, weight);
  return { weight, source: "dequantized", adapters: [] };
}

/** Options of {@link exportHf}. */
export interface HfExportOptions {
  /** Storage dtype of every tensor. Default F32 (exact); F16/BF16 round to nearest even. */
  dtype?: "F32" | "F16" | "BF16";
  /** Shard when the tensors pass this many bytes (`model-0000i-of-0000N.safetensors` + index). Default 5 GB. */
  maxShardBytes?: number;
  /**
   * Fold active LoRA adapters into the exported weights (in float, exact). Default true; false refuses a
   * LoRA-wrapped projection (export the adapter with `savePeftAdapter` instead).
   */
  mergeLoRA?: boolean;
  /**
   * Writes projections in another layout than a float `weight` (the hook of the GPTQ export,
   * `exportGptqHf`): asked for every projection first; what it returns replaces the float weight.
   */
  linearWriter?: HfLinearWriter;
  /**
   * The tokenizer's special token ids written into config.json (`bos_token_id`, `eos_token_id` — a number or a
   * list —, `pad_token_id`), e.g. those of the source's `generation_config.json`. Ids not given are left out, so
   * transformers uses its config class's defaults (LLaMA's 1 / 2, Gemma's 2 / 1).
   */
  specialTokens?: HfSpecialTokens;
}

/** Special token ids of {@link HfExportOptions.specialTokens}. */
export interface HfSpecialTokens {
  bos_token_id?: number;
  eos_token_id?: number | number[];
  pad_token_id?: number;
}

/** Where a projection sits in a fused Hugging Face tensor (Phi-3's `qkv_proj` / `gate_up_proj`). */
export interface HfFusedPart {
  /** Rows `[rowStart, rowEnd)` of the fused tensor. */
  rowStart: number;
  rowEnd: number;
  /** Rows of the whole fused tensor. */
  rows: number;
}

/**
 * A writer of projections in a non-float Hugging Face layout (GPTQ's `qweight` / `qzeros` / `scales` /
 * `g_idx`), plugged into {@link hfExportTensors} through {@link HfExportOptions.linearWriter}.
 */
export interface HfLinearWriter {
  /**
   * The tensors of projection `name` (int21 name) under its Hugging Face module `module`
   * (`model.layers.0.self_attn.q_proj`), or undefined to write the float weight. `permuteHeads` is the head
   * count of Hugging Face's q/k row permutation ({@link permuteHfRows}) the rows must get, 0 for none.
   */
  tensors(
    name: string,
    module: string,
    l: Linear,
    permuteHeads: number,
    part?: HfFusedPart,
  ): Record<string, SafetensorsWriteTensor> | undefined;
  /** Fields added to config.json (e.g. `quantization_config`), asked after every projection was written. */
  config?(): Record<string, unknown>;
}

/** What {@link exportHf} wrote. */
export interface HfExportReport {
  /** Files written in the directory (config.json first). */
  files: string[];
  /** The config.json object. */
  config: Record<string, unknown>;
  /** Per projection (int21 name): float or dequantized, and the adapters merged into it. */
  linears: { name: string; source: FloatWeight["source"] | "packed"; adapters: string[] }[];
}

/** The special token ids given, each checked to be a token id of the model (`vocabSize` rows). */
function specialTokenIds(t: HfSpecialTokens | undefined, vocabSize: number): HfSpecialTokens {
  const out: HfSpecialTokens = {};
  for (const key of ["bos_token_id", "eos_token_id", "pad_token_id"] as const) {
    const v = t?.[key];
    if (v === undefined) continue;
    for (const id of Array.isArray(v) ? v : [v])
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
        throw new Error(
          `exportHf: specialTokens.${key} ${JSON.stringify(v)} is not a token id (the model has ${vocabSize})`,
        );
    (out as Record<string, unknown>)[key] = v;
  }
  return out;
}

const TORCH_DTYPES = { F32: "float32", F16: "float16", BF16: "bfloat16" } as const;

/**
 * The tensors and config.json object {@link exportHf} writes, without writing: `model.embed_tokens.weight`,
 * `model.layers.{i}.{input_layernorm, self_attn.{q,k,v,o}_proj, post_attention_layernorm,
 * mlp.{gate,up,down}_proj}.weight`, `model.norm.weight`, and `lm_head.weight` unless the classifier is the
 * embedding (`tie_word_embeddings`), plus the family's extra tensors (q/k/v biases, q/k norms, Gemma 2's
 * pre/post feed-forward norms; Phi-3's fused `qkv_proj` / `gate_up_proj`). q_proj / k_proj rows get Hugging Face's rotate-half permutation
 * ({@link permuteHfRows}, `nHeads` / `nKvHeads` heads), the inverse of what `loadHf` undoes.
 */
export function hfExportTensors(
  weights: LlamaWeights,
  opts: HfExportOptions = {},
): {
  config: Record<string, unknown>;
  tensors: Record<string, SafetensorsWriteTensor>;
  linears: HfExportReport["linears"];
} {
  const dtype = opts.dtype ?? "F32";
  if (!(dtype in TORCH_DTYPES))
    throw new Error(`exportHf: dtype ${String(dtype)} is not one of F32, F16, BF16`);
  const config: LlamaConfig = validateConfig(weights.config, "exportHf");
  const mergeLoRA = opts.mergeLoRA ?? true;
  const tensors: Record<string, SafetensorsWriteTensor> = {};
  const linears: HfExportReport["linears"] = [];
  const { dim } = config;
  const offset = config.normOffset ?? 0;
  // Phi-3's fused projections are assembled from their parts (q|k|v, gate|up) as the parts arrive.
  const fused = new Map<string, Float32Array>();
  const put = (name: string, shape: number[], data: Float32Array) => {
    const loc = hfTensorLocation(name, config);
    if (loc.rowStart === undefined) {
      tensors[loc.tensor] = { dtype, shape, data };
      return;
    }
    const cols = shape[1];
    const rows = /\.w[qkv]$/.test(name) ? qDim(config) + 2 * kvDim(config) : 2 * config.hiddenDim;
    let buf = fused.get(loc.tensor);
    if (!buf) {
      buf = new Float32Array(rows * cols);
      fused.set(loc.tensor, buf);
      tensors[loc.tensor] = { dtype, shape: [rows, cols], data: buf };
    }
    buf.set(data, loc.rowStart * cols);
  };
  /** A norm weight as the family stores it (Gemma: `w − 1`, int21 keeps the multiplier). */
  const norm = (w: Float32Array) => (offset === 0 ? w : w.map((v) => v - offset));
  const linear = (name: string, l: Linear): Float32Array => {
    if (!mergeLoRA && isLoRALinear(l)) {
      throw new Error(
        `exportHf: ${name} is LoRA-wrapped and mergeLoRA is false; export the base and save the adapter with savePeftAdapter`,
      );
    }
    const f = floatWeightOf(l, name);
    linears.push({ name, source: f.source, adapters: f.adapters });
    return f.weight;
  };
  /** Whether the linear writer wrote projection `name` (its tensors added, its report line pushed). */
  const written = (name: string, l: Linear, permuteHeads: number): boolean => {
    const writer = opts.linearWriter;
    if (writer === undefined) return false;
    const loc = hfTensorLocation(name, config);
    // a part of a fused tensor: the writer returns the fused tensors with its last part ({} before)
    const part =
      loc.rowStart !== undefined
        ? {
            rowStart: loc.rowStart,
            rowEnd: loc.rowEnd!,
            rows: /\.w[qkv]$/.test(name) ? qDim(config) + 2 * kvDim(config) : 2 * config.hiddenDim,
          }
        : undefined;
    const t = writer.tensors(name, loc.tensor.replace(/\.weight$/, ""), l, permuteHeads, part);
    if (t === undefined) return false;
    Object.assign(tensors, t);
    linears.push({ name, source: "packed", adapters: [] });
    return true;
  };
  // A packed token embedding is written dequantized (like a packed projection): HF tensors are float.
  put("tokenEmbedding", [config.vocabSize, dim], denseTokenEmbedding(weights.tokenEmbedding));
  const hs = headSize(config);
  weights.layers.forEach((L, i) => {
    put(`layers.${i}.attnNorm`, [dim], norm(L.attnNorm));
    for (const n of Object.keys(LINEAR_NAMES) as LinearName[]) {
      const lin = L[n];
      if (written(`layers.${i}.${n}`, lin, n === "wq" || n === "wk" ? lin.outFeatures / hs : 0)) continue;
      let w = linear(`layers.${i}.${n}`, lin);
      if (n === "wq" || n === "wk") w = permuteHfRows(w, lin.outFeatures / hs, lin.outFeatures, dim);
      put(`layers.${i}.${n}`, [lin.outFeatures, lin.inFeatures], w);
    }
    put(`layers.${i}.ffnNorm`, [dim], norm(L.ffnNorm));
    for (const n of EXTRA_LAYER_TENSORS) {
      let v = L[n];
      if (!v) continue;
      if (n === "bq" || n === "bk" || n === "qNorm" || n === "kNorm")
        v = permuteHfRows(v, v.length / hs, v.length, 1);
      if (n === "qNorm" || n === "kNorm" || n === "postAttnNorm" || n === "postFfnNorm") v = norm(v);
      put(`layers.${i}.${n}`, [v.length], v);
    }
  });
  put("finalNorm", [dim], norm(weights.finalNorm));
  const cls = weights.classifier;
  const tied = config.sharedClassifier && !isLoRALinear(cls) && isTiedClassifier(cls, weights.tokenEmbedding);
  if (!tied && !written("classifier", cls, 0))
    put("classifier", [config.vocabSize, dim], linear("classifier", cls));
  const json: Record<string, unknown> = {
    ...llamaToHfConfig({ ...config, sharedClassifier: tied }),
    ...specialTokenIds(opts.specialTokens, config.vocabSize),
    torch_dtype: TORCH_DTYPES[dtype],
    ...opts.linearWriter?.config?.(),
  };
  return { config: json, tensors, linears };
}

/**
 * Writes `weights` as a Hugging Face directory `dir` (created if needed) of the model's family:
 * `config.json` (`LlamaForCausalLM`, `Qwen2ForCausalLM`, … from {@link llamaToHfConfig}, with `torch_dtype`;
 * Phi-3 keeps its own layout with re-fused `qkv_proj` / `gate_up_proj`, Gemma 2 its `w − 1` norms) and `model.safetensors` — or
 * `model-0000i-of-0000N.safetensors` shards with `model.safetensors.index.json` past `maxShardBytes` — holding
 * float weights ({@link hfExportTensors}): packed projections are dequantized and LoRA adapters merged in float.
 * `loadHf(dir)` reads it back to the same weights (F32: bit for bit).
 */
export async function exportHf(
  dir: string,
  weights: LlamaWeights,
  opts: HfExportOptions = {},
): Promise<HfExportReport> {
  const { config, tensors, linears } = hfExportTensors(weights, opts);
  const { mkdir } = await import("node:fs/promises");
  const { join } = await import("node:path");
  await mkdir(dir, { recursive: true });
  const files = await writeSafetensorsSharded(dir, tensors, {
    metadata: { format: "pt" },
    ...(opts.maxShardBytes !== undefined ? { maxShardBytes: opts.maxShardBytes } : {}),
  });
  await writeFileAtomic(join(dir, "config.json"), hfConfigJson(config));
  return { files: ["config.json", ...files], config, linears };
}
