import { type SafetensorsInfo, openSafetensors, parseSafetensors } from "@int21/io";
import { type LlamaConfig, headSize, validateConfig } from "./config";
import { type LoadOptions, type TensorReader, assembleFromReader, llamaTensorSpecs } from "./load-assemble";
import { LINEAR_NAMES, type LinearName, type LlamaWeights } from "./weights";

/** Float dtypes a Hugging Face checkpoint may store weights in. */
const HF_FLOAT_DTYPES = new Set(["F32", "F16", "BF16"]);

/** Model types whose weights and maths are LLaMA's (no biases, RMSNorm, SwiGLU, RoPE). */
const LLAMA_FAMILY = new Set(["llama", "mistral"]);

/**
 * Maps a Hugging Face LLaMA `config.json` to a {@link LlamaConfig}. Defaults follow transformers'
 * `LlamaConfig`: `num_key_value_heads` = `num_attention_heads`, `rope_theta` 10000, `rms_norm_eps` 1e-6,
 * `max_position_embeddings` 2048, `tie_word_embeddings` false. Throws naming `source` on a
 * non-LLaMA `model_type`, biases, `rope_scaling`, a `head_dim` other than hidden/heads, or an invalid shape.
 */
export function hfConfigToLlama(json: Record<string, unknown>, source = "config.json"): LlamaConfig {
  const modelType = json.model_type;
  if (modelType !== undefined && !LLAMA_FAMILY.has(String(modelType))) {
    throw new Error(
      `${source}: model_type "${String(modelType)}" is not LLaMA-family (supported: llama, mistral)`,
    );
  }
  const num = (key: string, dflt?: number): number => {
    const v = json[key] ?? dflt;
    if (typeof v !== "number")
      throw new Error(`${source}: ${key} must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  if (json.attention_bias === true || json.mlp_bias === true) {
    throw new Error(
      `${source}: attention_bias / mlp_bias are not supported (LLaMA projections have no bias)`,
    );
  }
  if (json.rope_scaling !== undefined && json.rope_scaling !== null) {
    throw new Error(`${source}: rope_scaling ${JSON.stringify(json.rope_scaling)} is not supported`);
  }
  const nHeads = num("num_attention_heads");
  const dim = num("hidden_size");
  if (json.head_dim !== undefined && json.head_dim !== null && json.head_dim !== dim / nHeads) {
    throw new Error(
      `${source}: head_dim ${String(json.head_dim)} differs from hidden_size / num_attention_heads`,
    );
  }
  const config: LlamaConfig = {
    dim,
    hiddenDim: num("intermediate_size"),
    nLayers: num("num_hidden_layers"),
    nHeads,
    nKvHeads: num("num_key_value_heads", nHeads),
    vocabSize: num("vocab_size"),
    seqLen: num("max_position_embeddings", 2048),
    ropeTheta: num("rope_theta", 10000),
    normEps: num("rms_norm_eps", 1e-6),
    sharedClassifier: json.tie_word_embeddings === true,
  };
  return validateConfig(config, source);
}

/** The inverse of {@link hfConfigToLlama} (what a LLaMA `config.json` holds for `config`). */
export function llamaToHfConfig(config: LlamaConfig): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
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
    hidden_act: "silu",
  };
}

/** The Hugging Face tensor name of an int21 tensor name (`layers.3.wq` → `model.layers.3.self_attn.q_proj.weight`). */
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
    if (!index.weight_map || typeof index.weight_map !== "object") {
      throw new Error(`${src.label}/model.safetensors.index.json: no weight_map`);
    }
    for (const [t, f] of Object.entries(index.weight_map)) {
      if (typeof f !== "string")
        throw new Error(`${src.label}/model.safetensors.index.json: weight_map["${t}"] is not a file name`);
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
    const wanted = new Map<string, string>(); // hf name → int21 name
    for (const spec of llamaTensorSpecs(config)) {
      const hf = hfTensorName(spec.name);
      const s = byName.get(hf);
      if (!s) throw new Error(`${src.label}: missing tensor ${hf} (${spec.name} [${spec.shape.join("×")}])`);
      const info = s.info.tensors[hf];
      if (!HF_FLOAT_DTYPES.has(info.dtype)) {
        throw new Error(`${s.file}: tensor ${hf} has dtype ${info.dtype}; supported: F32, F16, BF16`);
      }
      if (info.shape.length !== spec.shape.length || info.shape.some((d, i) => d !== spec.shape[i])) {
        throw new Error(
          `${s.file}: tensor ${hf} has shape [${info.shape.join("×")}], the config needs [${spec.shape.join("×")}]`,
        );
      }
      wanted.set(hf, spec.name);
    }
    for (const t of byName.keys()) {
      if (wanted.has(t) || t.endsWith(".rotary_emb.inv_freq")) continue;
      if (t === "lm_head.weight" && config.sharedClassifier) continue; // tied: the embedding is the classifier
      throw new Error(`${byName.get(t)!.file}: unexpected tensor ${t} for a LLaMA model`);
    }

    // File order: shard by shard, tensor by tensor.
    const order: string[] = [];
    const fileOf = new Map<string, Shard>();
    for (const s of shards) {
      for (const t of s.info.names) {
        const name = wanted.get(t);
        if (name === undefined || byName.get(t) !== s) continue;
        order.push(name);
        fileOf.set(name, s);
      }
    }
    const hs = headSize(config);
    ok = true;
    return {
      config,
      source: src.label,
      order,
      fileOf: (name) => fileOf.get(name)?.file ?? src.label,
      async read(name) {
        const s = fileOf.get(name);
        if (!s) throw new Error(`${src.label}: no tensor ${name} in this model`);
        let data = await s.readF32(hfTensorName(name));
        if (/\.w[qk]$/.test(name)) {
          const rows = data.length / config.dim;
          data = unpermuteHfRows(data, rows / hs, rows, config.dim);
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
