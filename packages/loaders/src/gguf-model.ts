// GGUF ↔ LLaMA: llama.cpp's `llama.*` metadata and `blk.N.*` tensor names mapped to LlamaConfig / LlamaWeights,
// ggml blocks mapped to int21 packed records where that is exact, the GGUF tokenizer to a Llama2cTokenizer.
//
// Row order of attn_q / attn_k: llama.cpp's convert_hf_to_gguf undoes Hugging Face's rotate-half permutation
// (its LlamaModel.permute reshapes each head to (2, hs/2) and swaps the axes), so a GGUF file holds q/k rows in
// Meta's / llama2.c's interleaved order — the order int21 uses. No permutation is applied either way.
import {
  GGML_GROUP_TYPES,
  GGML_TYPES,
  type GgmlTypeName,
  type GgufBytes,
  type GgufFile,
  type GgufTokenizer,
  type GgufValue,
  type GgufWriteTensor,
  ggmlToGroups,
  ggufNumber,
  ggufString,
  openGguf,
  parseGguf,
  readGgufTokenizer,
  serializeGguf,
  writeGguf,
} from "@int21/io";
import { type MergeReport, isLoRALinear, mergeAndUnload } from "@int21/lora";
import {
  type Linear,
  type QuantizedLinear,
  codeAt,
  createQuantLinear,
  createReferenceBackend,
  f32ToF16Bits,
  isF16Exact,
  type BlockFormatRecord,
  blockFormatOfGgmlType,
  getFormat,
  ggmlBlocksOf,
  isBlockFormat,
  packQuantizedLinear,
  quantizedFromGgmlBlocks,
  referenceDequantize,
} from "@int21/quant-kernels";
import { unpermuteHfRows } from "./load-hf";
import { Llama2cTokenizer } from "./tokenizer";
import { checkTensorCount } from "./validate-config";
import {
  type LlamaConfig,
  type ModelFamily,
  headSize,
  kvDim,
  qDim,
  validateConfig,
  isPackedEmbedding,
  isTiedClassifier,
  type LoadOptions,
  type TensorReader,
  WeightAssembler,
  llamaTensorSpecs,
  numel,
  linearParts,
  EXTRA_LAYER_TENSORS,
  LINEAR_NAMES,
  type LinearName,
  type LlamaWeights,
} from "@int21/model-llama";

/** llama.cpp's tensor names of the seven projections (`blk.{i}.<name>.weight`). */
export const GGUF_LINEAR_NAMES: Readonly<Record<LinearName, string>> = Object.freeze({
  wq: "attn_q",
  wk: "attn_k",
  wv: "attn_v",
  wo: "attn_output",
  w1: "ffn_gate",
  w2: "ffn_down",
  w3: "ffn_up",
});

/**
 * The GGUF (llama.cpp) tensor name of an int21 tensor name: `tokenEmbedding` → `token_embd.weight`,
 * `layers.3.wq` → `blk.3.attn_q.weight`, `layers.3.attnNorm` → `blk.3.attn_norm.weight`,
 * `finalNorm` → `output_norm.weight`, `classifier` → `output.weight`.
 */
export function ggufTensorName(name: string): string {
  if (name === "tokenEmbedding") return "token_embd.weight";
  if (name === "finalNorm") return "output_norm.weight";
  if (name === "classifier") return "output.weight";
  const m = /^layers\.(\d+)\.(\w+)$/.exec(name);
  if (m) {
    const [, l, field] = m;
    if (field === "attnNorm") return `blk.${l}.attn_norm.weight`;
    if (field === "ffnNorm") return `blk.${l}.ffn_norm.weight`;
    if (field in GGUF_LINEAR_NAMES) return `blk.${l}.${GGUF_LINEAR_NAMES[field as LinearName]}.weight`;
    if (field in GGUF_EXTRA_NAMES) return `blk.${l}.${GGUF_EXTRA_NAMES[field]}`;
  }
  throw new Error(`ggufTensorName: unknown tensor ${name}`);
}

/** llama.cpp's names of the extra per-layer tensors (biases, q/k norms, Gemma 2's post norms). */
const GGUF_EXTRA_NAMES: Readonly<Record<string, string>> = {
  bq: "attn_q.bias",
  bk: "attn_k.bias",
  bv: "attn_v.bias",
  bo: "attn_output.bias",
  qNorm: "attn_q_norm.weight",
  kNorm: "attn_k_norm.weight",
  postAttnNorm: "post_attention_norm.weight",
  postFfnNorm: "post_ffw_norm.weight",
};

/** The `general.architecture` values int21 reads, and their families. */
const GGUF_ARCHS: Readonly<Record<string, ModelFamily>> = {
  llama: "llama",
  qwen2: "qwen2",
  qwen3: "qwen3",
  phi3: "phi3",
  gemma2: "gemma2",
};

/**
 * Where an int21 tensor lives in a GGUF of `config`'s family: the tensor and, for Phi-3's fused
 * `attn_qkv` / `ffn_up` (gate then up), the rows `[rowStart, rowEnd)` of it.
 */
export function ggufTensorLocation(
  name: string,
  config: LlamaConfig,
): { tensor: string; rowStart?: number; rowEnd?: number } {
  const m = /^layers\.(\d+)\.(\w+)$/.exec(name);
  if (m && config.family === "phi3") {
    const [, l, field] = m;
    const qd = qDim(config);
    const kv = kvDim(config);
    const qkv = `blk.${l}.attn_qkv.weight`;
    const up = `blk.${l}.ffn_up.weight`;
    if (field === "wq") return { tensor: qkv, rowStart: 0, rowEnd: qd };
    if (field === "wk") return { tensor: qkv, rowStart: qd, rowEnd: qd + kv };
    if (field === "wv") return { tensor: qkv, rowStart: qd + kv, rowEnd: qd + 2 * kv };
    if (field === "w1") return { tensor: up, rowStart: 0, rowEnd: config.hiddenDim };
    if (field === "w3") return { tensor: up, rowStart: config.hiddenDim, rowEnd: 2 * config.hiddenDim };
  }
  return { tensor: ggufTensorName(name) };
}

type Metadata = Readonly<Record<string, GgufValue>>;

/**
 * Maps llama.cpp's metadata to a {@link LlamaConfig}. `general.architecture` is `llama`, `qwen2`, `qwen3`,
 * `phi3` or `gemma2`, and `<arch>.*` keys hold the shape: `<arch>.embedding_length`,
 * `<arch>.feed_forward_length`, `<arch>.block_count`, `<arch>.attention.head_count`, `<arch>.context_length`
 * are required; `<arch>.attention.head_count_kv` defaults to the head count, `<arch>.rope.freq_base` to
 * 10000, `<arch>.attention.layer_norm_rms_epsilon` to 1e-5 (1e-6 for gemma2), `<arch>.attention.key_length`
 * to hidden/heads. The vocabulary is `<arch>.vocab_size`, else the tokenizer's token count, else `vocabRows`
 * (token_embd's rows); the classifier is shared when the file has no `output.weight` (`hasOutput` false).
 * The family's fixed features follow from the architecture (Qwen2's q/k/v biases, Qwen3's q/k norms,
 * Gemma 2's norms, GeGLU, embedding scale, soft-caps from `gemma2.*_softcapping`, alternating
 * `gemma2.attention.sliding_window`; Phi-3's `phi3.attention.sliding_window`); linear RoPE scaling is
 * read, Llama 3's comes as the `rope_freqs.weight` tensor (see {@link loadGguf}). Refuses other scaling
 * types, experts, a value length other than the key length and a `rope.dimension_count` other than the
 * head size. Throws naming `file` and the key.
 */
export function ggufConfigToLlama(
  metadata: Metadata,
  opts: { file?: string; vocabRows?: number; hasOutput?: boolean } = {},
): LlamaConfig {
  const file = opts.file ?? "<gguf>";
  const arch = ggufString(metadata, "general.architecture", file);
  const family = arch === undefined ? undefined : GGUF_ARCHS[arch];
  if (family === undefined) {
    throw new Error(
      `gguf: ${file}: general.architecture is ${arch === undefined ? "missing" : `"${arch}"`}; supported: ${Object.keys(GGUF_ARCHS).join(", ")} (llama first)`,
    );
  }
  const num = (key: string, dflt?: number): number => {
    const k = `${arch}.${key}`;
    const v = ggufNumber(metadata, k, file) ?? dflt;
    if (v === undefined) throw new Error(`gguf: ${file}: metadata "${k}" is missing`);
    return Object.hasOwn(metadata, k) && metadata[k].type === "f32" ? shortestF32Decimal(v) : v;
  };
  const opt = (key: string): number | undefined =>
    Object.hasOwn(metadata, `${arch}.${key}`) ? num(key) : undefined;
  const scaling = ggufString(metadata, `${arch}.rope.scaling.type`, file);
  if (scaling !== undefined && scaling !== "none" && scaling !== "linear")
    throw new Error(`gguf: ${file}: ${arch}.rope.scaling.type "${scaling}" is not supported`);
  const experts = ggufNumber(metadata, `${arch}.expert_count`, file) ?? 0;
  if (experts > 0)
    throw new Error(`gguf: ${file}: ${arch}.expert_count ${experts}: mixture-of-experts is not supported`);
  const tokens = metadata["tokenizer.ggml.tokens"];
  const tokenCount =
    tokens !== undefined && tokens.type === "array" ? (tokens.value as unknown[]).length : undefined;
  const nHeads = num("attention.head_count");
  const dim = num("embedding_length");
  const config: LlamaConfig = {
    dim,
    hiddenDim: num("feed_forward_length"),
    nLayers: num("block_count"),
    nHeads,
    nKvHeads: num("attention.head_count_kv", nHeads),
    vocabSize: num("vocab_size", tokenCount ?? opts.vocabRows),
    seqLen: num("context_length"),
    ropeTheta: num("rope.freq_base", 10000),
    normEps: num("attention.layer_norm_rms_epsilon", family === "gemma2" ? 1e-6 : 1e-5),
    sharedClassifier: opts.hasOutput === false,
  };
  if (family !== "llama") config.family = family;
  const keyLen = opt("attention.key_length");
  const valueLen = opt("attention.value_length");
  if (keyLen !== undefined && valueLen !== undefined && keyLen !== valueLen)
    throw new Error(
      `gguf: ${file}: ${arch}.attention.value_length ${valueLen} differs from key_length ${keyLen} (not supported)`,
    );
  if (keyLen !== undefined && keyLen * nHeads !== dim) config.headDim = keyLen;
  if (scaling === "linear") config.ropeScaling = { type: "linear", factor: num("rope.scaling.factor") };
  if (family === "qwen2") config.qkvBias = true;
  if (family === "qwen3") config.qkNorm = true;
  const window = opt("attention.sliding_window");
  // a Phi-3 window as long as the context is no window (written so by saveGguf: llama.cpp requires the key)
  if (family === "phi3" && window !== undefined && window > 0 && window < config.seqLen)
    config.slidingWindow = window;
  if (family === "gemma2") {
    if (window !== undefined && window > 0) {
      config.slidingWindow = window;
      config.slidingLayers = Array.from({ length: config.nLayers }, (_, l) => l % 2 === 0);
    }
    config.hiddenAct = "gelu_tanh";
    config.postNorms = true;
    config.embedScale = Math.sqrt(dim);
    config.normOffset = 1;
    // llama.cpp scales queries by 1/sqrt(head size), except Gemma 2 27B (46 layers): 1/sqrt(hidden/heads).
    config.queryPreAttnScalar = config.nLayers === 46 ? dim / nHeads : (config.headDim ?? dim / nHeads);
    const acap = opt("attn_logit_softcapping");
    if (acap !== undefined && acap > 0) config.attnLogitSoftcap = acap;
    const fcap = opt("final_logit_softcapping");
    if (fcap !== undefined && fcap > 0) config.finalLogitSoftcap = fcap;
  }
  validateConfig(config, file);
  const rotDim = ggufNumber(metadata, `${arch}.rope.dimension_count`, file);
  if (rotDim !== undefined && rotDim !== headSize(config)) {
    throw new Error(
      `gguf: ${file}: ${arch}.rope.dimension_count ${rotDim} differs from the head size ${headSize(config)} (partial RoPE is not supported)`,
    );
  }
  return config;
}

/**
 * The shortest decimal that rounds to the float32 `x` (as numpy prints a float32): llama.cpp stores
 * `layer_norm_rms_epsilon` and `freq_base` as f32, so 1e-5 is read back as 1e-5, not 9.99999974e-6.
 */
function shortestF32Decimal(x: number): number {
  for (let p = 1; p <= 9; p++) {
    const v = Number(x.toPrecision(p));
    if (Math.fround(v) === x) return v;
  }
  return x;
}

/** llama.cpp's `llama_ftype` of a file whose projections are mostly one ggml type (k-quants: the `_M` mix). */
const BLOCK_FILE_TYPES: Partial<Record<GgmlTypeName, number>> = {
  Q4_0: 2,
  Q4_1: 3,
  Q8_0: 7,
  Q5_0: 8,
  Q5_1: 9,
  Q2_K: 10,
  Q3_K: 12,
  Q4_K: 15,
  Q5_K: 17,
  Q6_K: 18,
  IQ4_NL: 25,
  IQ4_XS: 30,
};

/** llama.cpp's `general.file_type` (`LlamaFileType`) of a whole-model type. */
const FILE_TYPES: Record<GgufModelType, number> = {
  F32: 0,
  F16: 1,
  Q4_0: BLOCK_FILE_TYPES.Q4_0!,
  Q4_1: BLOCK_FILE_TYPES.Q4_1!,
  Q8_0: BLOCK_FILE_TYPES.Q8_0!,
};

/** The tensor types {@link saveGguf} writes the projections in. */
export type GgufModelType = "F32" | "F16" | "Q8_0" | "Q4_0" | "Q4_1";

/**
 * The GGUF metadata llama.cpp reads for a model of `config` (architecture keys, in its writer's order):
 * `general.architecture` (the family's, see {@link saveGguf}), `general.name`, `general.file_type`,
 * `<arch>.vocab_size`, `<arch>.context_length`, `<arch>.embedding_length`, `<arch>.block_count`,
 * `<arch>.feed_forward_length`, `<arch>.rope.dimension_count`, `<arch>.attention.head_count`,
 * `<arch>.attention.head_count_kv`, `<arch>.attention.layer_norm_rms_epsilon`, `<arch>.rope.freq_base`, then
 * when the config has them `<arch>.attention.key_length` / `value_length`, linear `<arch>.rope.scaling.*`,
 * `<arch>.attention.sliding_window`, Gemma 2's soft-caps, and `general.quantization_version` 2 for
 * quantized types.
 */
export function llamaToGgufMetadata(
  config: LlamaConfig,
  opts: { type?: GgufModelType; name?: string } = {},
): Record<string, GgufValue> {
  const type = opts.type ?? "F32";
  const arch = ggufArch(config);
  const u32 = (value: number): GgufValue => ({ type: "u32", value });
  const f32 = (value: number): GgufValue => ({ type: "f32", value });
  const md: Record<string, GgufValue> = {
    "general.architecture": { type: "string", value: arch },
    "general.name": { type: "string", value: opts.name ?? "int21-llama" },
    "general.file_type": u32(FILE_TYPES[type]),
    [`${arch}.vocab_size`]: u32(config.vocabSize),
    [`${arch}.context_length`]: u32(config.seqLen),
    [`${arch}.embedding_length`]: u32(config.dim),
    [`${arch}.block_count`]: u32(config.nLayers),
    [`${arch}.feed_forward_length`]: u32(config.hiddenDim),
    [`${arch}.rope.dimension_count`]: u32(headSize(config)),
    [`${arch}.attention.head_count`]: u32(config.nHeads),
    [`${arch}.attention.head_count_kv`]: u32(config.nKvHeads),
    [`${arch}.attention.layer_norm_rms_epsilon`]: f32(config.normEps),
    [`${arch}.rope.freq_base`]: f32(config.ropeTheta),
  };
  if (config.headDim !== undefined) {
    md[`${arch}.attention.key_length`] = u32(config.headDim);
    md[`${arch}.attention.value_length`] = u32(config.headDim);
  }
  if (config.ropeScaling?.type === "linear") {
    md[`${arch}.rope.scaling.type`] = { type: "string", value: "linear" };
    md[`${arch}.rope.scaling.factor`] = f32(config.ropeScaling.factor);
  }
  if (config.slidingWindow !== undefined) md[`${arch}.attention.sliding_window`] = u32(config.slidingWindow);
  // llama.cpp refuses a phi3 GGUF without a window; one as long as the context changes nothing
  else if (arch === "phi3") md["phi3.attention.sliding_window"] = u32(config.seqLen);
  if (arch === "gemma2") {
    if (config.attnLogitSoftcap !== undefined)
      md["gemma2.attn_logit_softcapping"] = f32(config.attnLogitSoftcap);
    if (config.finalLogitSoftcap !== undefined)
      md["gemma2.final_logit_softcapping"] = f32(config.finalLogitSoftcap);
  }
  if (type !== "F32" && type !== "F16") md["general.quantization_version"] = u32(2);
  return md;
}

/** llama.cpp's architecture of `config`: its family, `llama` for LLaMA and Mistral. */
function ggufArch(c: LlamaConfig): string {
  return c.family === undefined || c.family === "llama" || c.family === "mistral" ? "llama" : c.family;
}

/**
 * llama.cpp's `rope_freqs.weight` of a Llama 3 scaling (its converter's formula: 1 for high frequencies,
 * `factor` for low ones, `1 / ((1 − s)/factor + s)` between), or the config's own `ropeFreqFactors`.
 */
function ropeFreqsTensor(c: LlamaConfig): Float32Array | undefined {
  if (c.ropeFreqFactors) return Float32Array.from(c.ropeFreqFactors);
  const s = c.ropeScaling;
  if (s?.type !== "llama3") return undefined;
  const hs = headSize(c);
  const out = new Float32Array(hs / 2);
  const old = s.originalMaxPositionEmbeddings;
  for (let j = 0; j < hs / 2; j++) {
    const wavelen = (2 * Math.PI) / c.ropeTheta ** (-(2 * j) / hs);
    if (wavelen < old / s.highFreqFactor) out[j] = 1;
    else if (wavelen > old / s.lowFreqFactor) out[j] = s.factor;
    else {
      const smooth = (old / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      out[j] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Tokenizer

const SPACE = "\u2581"; // SentencePiece's "▁"
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const BYTE_TOKEN = /^<0x[0-9A-Fa-f]{2}>$/;

/**
 * The `tokenizer.ggml.*` metadata of a llama2.c tokenizer, as llama.cpp's SentencePiece ("llama") vocabulary:
 * pieces with spaces as `▁`, `<unk>` / `<s>` / `</s>` for ids 0 / 1 / 2 (llama2.c stores BOS and EOS as
 * `"\n<s>\n"` / `"\n</s>\n"`), scores, token types (1 normal, 2 unknown, 3 control, 6 byte), BOS/EOS/UNK ids,
 * `add_bos_token` true, `add_eos_token` false.
 */
export function llama2cTokenizerToGguf(tok: Llama2cTokenizer): Record<string, GgufValue> {
  const tokens: string[] = [];
  const types = new Int32Array(tok.vocabSize);
  for (let i = 0; i < tok.vocabSize; i++) {
    let s: string;
    try {
      s = decoder.decode(tok.pieces[i]);
    } catch {
      throw new Error(`gguf tokenizer: piece ${i} is not valid UTF-8 (GGUF stores tokens as UTF-8 strings)`);
    }
    if (i === 0) {
      tokens.push("<unk>");
      types[i] = 2;
    } else if (i === tok.bosId) {
      tokens.push("<s>");
      types[i] = 3;
    } else if (i === tok.eosId) {
      tokens.push("</s>");
      types[i] = 3;
    } else {
      tokens.push(s.replaceAll(" ", SPACE));
      types[i] = BYTE_TOKEN.test(s) ? 6 : 1;
    }
  }
  return {
    "tokenizer.ggml.model": { type: "string", value: "llama" },
    "tokenizer.ggml.tokens": { type: "array", itemType: "string", value: tokens },
    "tokenizer.ggml.scores": { type: "array", itemType: "f32", value: Float32Array.from(tok.scores) },
    "tokenizer.ggml.token_type": { type: "array", itemType: "i32", value: types },
    "tokenizer.ggml.bos_token_id": { type: "u32", value: tok.bosId },
    "tokenizer.ggml.eos_token_id": { type: "u32", value: tok.eosId },
    "tokenizer.ggml.unknown_token_id": { type: "u32", value: 0 },
    "tokenizer.ggml.add_bos_token": { type: "bool", value: true },
    "tokenizer.ggml.add_eos_token": { type: "bool", value: false },
  };
}

/**
 * A {@link Llama2cTokenizer} from a GGUF SentencePiece vocabulary (`tokenizer.ggml.model` = `llama`): pieces
 * with `▁` turned back into spaces, control tokens `<s>` / `</s>` written as llama2.c's `"\n<s>\n"` /
 * `"\n</s>\n"`, scores as stored. llama2.c's encoder fixes BOS = 1, EOS = 2 and byte pieces `<0x00>`..`<0xFF>`
 * at ids 3..258: a vocabulary laid out otherwise (or without scores, or a BPE "gpt2" model) is refused,
 * naming `file`.
 */
export function ggufTokenizerToLlama2c(tok: GgufTokenizer, file = "<gguf>"): Llama2cTokenizer {
  if (tok.model !== "llama") {
    throw new Error(
      `gguf: ${file}: tokenizer.ggml.model "${tok.model}" is not a SentencePiece ("llama") vocabulary; only those convert to a llama2.c tokenizer`,
    );
  }
  if (tok.scores === undefined) throw new Error(`gguf: ${file}: tokenizer.ggml.scores is missing`);
  if ((tok.bosId ?? 1) !== 1 || (tok.eosId ?? 2) !== 2) {
    throw new Error(
      `gguf: ${file}: BOS ${tok.bosId} / EOS ${tok.eosId}: a llama2.c tokenizer needs BOS 1 and EOS 2`,
    );
  }
  const enc = new TextEncoder();
  const pieces = tok.tokens.map((t, i) => {
    const control = tok.tokenTypes !== undefined ? tok.tokenTypes[i] === 3 : i === 1 || i === 2;
    if (control && (t === "<s>" || t === "</s>")) return enc.encode(`\n${t}\n`);
    return enc.encode(t.replaceAll(SPACE, " "));
  });
  let maxLen = 1;
  let size = 4;
  for (const p of pieces) {
    maxLen = Math.max(maxLen, p.length);
    size += 8 + p.length;
  }
  const bytes = new Uint8Array(size);
  const dv = new DataView(bytes.buffer);
  dv.setInt32(0, maxLen, true);
  let off = 4;
  pieces.forEach((p, i) => {
    dv.setFloat32(off, tok.scores![i], true);
    dv.setInt32(off + 4, p.length, true);
    bytes.set(p, off + 8);
    off += 8 + p.length;
  });
  try {
    return Llama2cTokenizer.fromBytes(bytes, `${file} (tokenizer.ggml.*)`);
  } catch (e) {
    throw new Error(`gguf: ${file}: the tokenizer does not fit llama2.c's layout: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// ggml blocks ↔ int21 packed records

/** int21 bit widths, smallest first. */
const INT21_BITS = [2, 3, 4, 8] as const;

/** Smallest normal f16, the scale given to an all-zero group (its codes equal its zero point). */
const ZERO_GROUP_SCALE = 2 ** -14;

/** The result of {@link ggmlToQuantized}. */
export type GgmlPackResult =
  | {
      q: QuantizedLinear;
      /** True when every dequantized weight equals ggml's dequantized value bit for bit. */
      exact: boolean;
    }
  | { q?: undefined; reason: string };

/**
 * Maps a GGUF weight `[N × K]` of ggml `type` (its raw blocks) to an int21 {@link QuantizedLinear} without
 * re-quantizing, when int21 has a format for it:
 * - symmetric ggml types with groups of 32 (Q8_0 → 8-bit, Q4_0 → 4-bit, Q5_0 → 8-bit codes): **exact**.
 *   `w = d·(c − 2^(b−1))`; with every block scale `d ≥ 0` the record is `int{B}-g32-sym-f16` (codes shifted
 *   to the int21 zero `2^(B−1)`); when some `d < 0` (ggml's Q4_0 quantizer makes half of them negative) it is
 *   `int{B}-g32-asym-f16`, those groups stored as `|d|·(c' − z')` with mirrored codes `c' = 2^(B−1) − 1 − v`,
 *   `z' = 2^(B−1) − 1`. An all-zero block gets scale 2^-14 and codes equal to its zero.
 * - per-group-minimum types with groups of 32 (Q4_1, Q4_K → 4-bit, Q5_1, Q5_K → 8-bit codes):
 *   `int{B}-g32-asym-f32` with the float zero `−min/d` — equal to ggml's value up to float32 rounding
 *   (`exact: false`), and only when every zero lies in `[0, 2^B − 1]`.
 * - anything else (F32/F16/BF16, groups of 16: Q2_K, Q3_K, Q6_K; a row length that is not a multiple of
 *   32): `{ reason }`, and the caller dequantizes to float.
 */
export function ggmlToQuantized(type: GgmlTypeName, raw: Uint8Array, N: number, K: number): GgmlPackResult {
  if (!GGML_GROUP_TYPES.includes(type)) return { reason: `${type} is not a block-quantized type` };
  if (K % 32 !== 0) return { reason: `row length ${K} is not a multiple of 32` };
  const g = ggmlToGroups(type, raw, N * K);
  if (g.groupSize !== 32)
    return { reason: `${type} has groups of ${g.groupSize}; int21 has no format with that group size` };
  const B = INT21_BITS.find((b) => b >= g.bits)!;
  const H = 1 << (B - 1);
  const count = N * K;
  const nG = count / 32;
  const codes = new Uint8Array(count);
  const scales = new Float32Array(nG);
  const zeros = new Float32Array(nG);
  if (g.exact) {
    const zb = 1 << (g.bits - 1);
    let anyNegative = false;
    for (let j = 0; j < nG; j++) if (g.scales[j] < 0) anyNegative = true;
    for (let j = 0; j < nG; j++) {
      const d = g.scales[j];
      const o = j * 32;
      if (d > 0) {
        scales[j] = d;
        zeros[j] = H;
        for (let i = o; i < o + 32; i++) codes[i] = g.q[i] - zb + H;
      } else if (d < 0) {
        scales[j] = -d;
        zeros[j] = H - 1;
        for (let i = o; i < o + 32; i++) codes[i] = H - 1 - (g.q[i] - zb);
      } else {
        scales[j] = ZERO_GROUP_SCALE;
        zeros[j] = H;
        codes.fill(H, o, o + 32);
      }
    }
    const format = `int${B}-g32-${anyNegative ? "asym" : "sym"}-f16`;
    return {
      q: packQuantizedLinear(format, N, K, codes, scales, anyNegative ? zeros : undefined),
      exact: true,
    };
  }
  const qmaxSrc = (1 << g.bits) - 1;
  const qmax = (1 << B) - 1;
  for (let j = 0; j < nG; j++) {
    let s = g.scales[j];
    let z = g.zeros[j];
    const o = j * 32;
    if (s < 0) {
      s = -s;
      z = qmaxSrc - z;
      for (let i = o; i < o + 32; i++) codes[i] = qmaxSrc - g.q[i];
    } else if (s === 0) {
      s = ZERO_GROUP_SCALE;
      z = 0;
      codes.fill(0, o, o + 32);
    } else {
      codes.set(g.q.subarray(o, o + 32), o);
    }
    if (!(z >= 0 && z <= qmax) || !Number.isFinite(s)) {
      return { reason: `block ${j}: zero point ${z} is outside int${B}'s code range [0, ${qmax}]` };
    }
    scales[j] = s;
    zeros[j] = z;
  }
  return { q: packQuantizedLinear(`int${B}-g32-asym-f32`, N, K, codes, scales, zeros), exact: false };
}

function putF16(out: Uint8Array, o: number, x: number): void {
  const h = f32ToF16Bits(x);
  out[o] = h & 255;
  out[o + 1] = h >> 8;
}

/**
 * Encodes an int21 packed record straight into ggml blocks of `type` (Q8_0, Q4_0 or Q4_1) from its codes,
 * scales and zeros — no float round trip — when its layout allows: groups of 32 along rows, no act-order,
 * K a multiple of 32, and
 * - Q8_0 / Q4_0: f16-exact scales, integer zeros, and every `c − z` in [−128, 127] / [−8, 7]
 *   (`int{2,3,4}-g32-sym`, RTN's `int{2,3}-g32-asym` into Q4_0; every `-g32-` format with integer zeros
 *   up to 8 bits sym into Q8_0): `d = s`, `q = c − z` — **exact**.
 * - Q4_1: codes of at most 4 bits: `d = f16(s)`, `m = f16(−s·z)`, `q = c` — exact when `s` and `s·z` are f16
 *   values (every `int4-g32-sym-f16`), else within f16 rounding of `d` and `m`.
 * Returns undefined otherwise, and for codebook formats (NF4, IQ4_NL): the caller dequantizes and re-quantizes.
 */
export function quantizedToGgml(q: QuantizedLinear, type: "Q8_0" | "Q4_0" | "Q4_1"): Uint8Array | undefined {
  const N = q.outFeatures;
  const K = q.inFeatures;
  if (q.format.groupSize !== 32 || q.gIdx !== undefined || K % 32 !== 0) return undefined;
  if ((q.format.decode ?? "affine") !== "affine") return undefined; // codebook formats: no affine block
  const nG = K / 32;
  const blockBytes = GGML_TYPES[type].blockBytes;
  const out = new Uint8Array(N * nG * blockBytes);
  const [lo, hi] = type === "Q8_0" ? [-128, 127] : [-8, 7];
  if (type === "Q4_1" && q.format.bits > 4) return undefined;
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < nG; j++) {
      const p = n * nG + j;
      const s = q.scales[p];
      const z = q.zeros[p];
      const o = p * blockBytes;
      const k0 = j * 32;
      if (type === "Q4_1") {
        putF16(out, o, s);
        putF16(out, o + 2, -s * z);
        for (let i = 0; i < 16; i++) out[o + 4 + i] = codeAt(q, n, k0 + i) | (codeAt(q, n, k0 + i + 16) << 4);
        continue;
      }
      if (!isF16Exact(s) || !Number.isInteger(z)) return undefined;
      putF16(out, o, s);
      for (let i = 0; i < 32; i++) {
        const v = codeAt(q, n, k0 + i) - z;
        if (v < lo || v > hi) return undefined;
        if (type === "Q8_0") out[o + 2 + i] = v & 255;
        else if (i < 16) out[o + 2 + i] = v + 8;
        else out[o + 2 + i - 16] |= (v + 8) << 4;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Loading

/** Options of {@link loadGguf}. */
export interface GgufLoadOptions extends LoadOptions {
  /**
   * Keep block-quantized projections, `output` and `token_embd` packed. A ggml block type (Q2_K … Q6_K,
   * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, IQ4_XS) becomes quant-kernels' block format of the same name
   * (`q4_k`, `iq4_nl-ggml`, …) whose packed words ARE the file's blocks: no float round trip, exact
   * (NEOX q/k rows and Phi-3's fused parts are whole ggml rows moved / sliced); a row length that is not a
   * whole number of blocks falls back to {@link ggmlToQuantized}, then to float (RTN-quantized when
   * `quantize` is given). A packed `token_embd` is a packed `TokenEmbedding` (rows dequantized on lookup, a
   * tied classifier over the same record). Default false here: every tensor is dequantized to float
   * (`loadModel` keeps them packed unless asked to quantize).
   */
  keepPacked?: boolean;
}

/** How one GGUF tensor was loaded. */
export interface GgufTensorLoad {
  /** GGUF name. */
  gguf: string;
  /** int21 name (`layers.0.wq`…). */
  name: string;
  type: GgmlTypeName;
  /** `packed`: kept as an int21 record (see `format`); `float`: dequantized (then RTN'd with `quantize`). */
  loadedAs: "packed" | "float";
  format?: string;
  /** Packed: whether the record reproduces ggml's values exactly; otherwise `maxAbsError` says by how much. */
  exact?: boolean;
  /** Packed, not exact: `max |int21 − ggml|` over the tensor. */
  maxAbsError?: number;
  /** Why a block-quantized projection was not kept packed. */
  reason?: string;
}

/** What {@link loadGguf} returns. */
export interface GgufModel {
  weights: LlamaWeights;
  /** The GGUF tokenizer as a llama2.c tokenizer, when the file has a SentencePiece vocabulary llama2.c can run. */
  tokenizer?: Llama2cTokenizer;
  /** The file's tokenizer data as stored (any model), when present. */
  ggufTokenizer?: GgufTokenizer;
  /** Why `tokenizer` is absent although the file has a tokenizer. */
  tokenizerError?: string;
  /** One entry per tensor, in file order. */
  tensors: GgufTensorLoad[];
}

/** One int21 tensor of a GGUF file: its name and shape, and its rows when it is part of a fused tensor. */
interface GgufPart {
  name: string;
  shape: number[];
  rowStart?: number;
  rowEnd?: number;
}

/** An opened, validated GGUF LLaMA: the file, its config, and the int21 tensors each GGUF tensor holds. */
interface OpenedGguf {
  file: GgufFile | GgufBytes;
  config: LlamaConfig;
  byGguf: Map<string, GgufPart[]>;
  /** The float32 values of an int21 tensor in int21's layout (fused parts sliced, q/k rows un-permuted). */
  readPart(gguf: string, part: GgufPart): Promise<Float32Array>;
  /** The same rows as stored bytes (`rowBytes` per row): whole ggml rows moved, no decoding. */
  readPartRaw(gguf: string, part: GgufPart, rowBytes: number): Promise<Uint8Array>;
}

/**
 * Whole rows of `rowBytes` bytes moved between int21's interleaved q/k order and Hugging Face's rotate-half
 * order, head by head of `hs` rows: `hf[h·hs + j·hs/2 + i] = orig[h·hs + 2i + j]` (`toHf`), or back.
 */
export function moveRowBytes(
  raw: Uint8Array,
  rows: number,
  rowBytes: number,
  hs: number,
  toHf: boolean,
): Uint8Array {
  if (rows % hs !== 0 || hs % 2 !== 0 || raw.length !== rows * rowBytes)
    throw new Error(`q/k rows: ${rows} rows of ${rowBytes} bytes do not split into heads of ${hs}`);
  const out = new Uint8Array(raw.length);
  const half = hs / 2;
  for (let h = 0; h < rows / hs; h++)
    for (let j = 0; j < 2; j++)
      for (let i = 0; i < half; i++) {
        const orig = h * hs + 2 * i + j;
        const hf = h * hs + j * half + i;
        const [from, to] = toHf ? [orig, hf] : [hf, orig];
        out.set(raw.subarray(from * rowBytes, (from + 1) * rowBytes), to * rowBytes);
      }
  return out;
}

/** Whether a part needs more than a plain read (a slice of a fused tensor, or NEOX q/k rows to un-permute). */
function needsTransform(config: LlamaConfig, part: GgufPart): boolean {
  if (part.rowStart !== undefined) return true;
  return (config.family ?? "llama") !== "llama" && /\.(wq|wk|bq|bk|qNorm|kNorm)$/.test(part.name);
}

/**
 * Opens `src` and checks, before any data is read: config from the metadata, every tensor a known name of the
 * family with the config's shape and a type int21 dequantizes, none missing. Llama 3's `rope_freqs.weight`
 * (`[headSize/2]`) is read into the config's `ropeFreqFactors`. Closes the file on failure.
 *
 * Row order of attn_q / attn_k: llama.cpp permutes them to interleaved pairs for `llama` only (its NORM RoPE);
 * qwen2, qwen3, phi3 and gemma2 use NEOX RoPE and keep Hugging Face's rotate-half rows, which are
 * un-permuted here (with their biases and q/k norms) as `loadHf` does.
 */
async function openLlamaGguf(src: string | Uint8Array): Promise<OpenedGguf> {
  const file: GgufFile | GgufBytes = typeof src === "string" ? await openGguf(src) : parseGguf(src);
  const label = file.path;
  try {
    const emb = file.tensors["token_embd.weight"];
    if (emb === undefined) throw new Error(`gguf: ${label}: no token_embd.weight tensor`);
    const config = ggufConfigToLlama(file.metadata, {
      file: label,
      vocabRows: emb.shape[0],
      hasOutput: Object.hasOwn(file.tensors, "output.weight"),
    });
    checkTensorCount(config, file.names.length, `gguf: ${label}`);
    const freqs = file.tensors["rope_freqs.weight"];
    if (freqs !== undefined) {
      const half = headSize(config) / 2;
      if ((config.family ?? "llama") !== "llama" || freqs.shape.length !== 1 || freqs.shape[0] !== half)
        throw new Error(
          `gguf: ${label}: tensor "rope_freqs.weight" [${freqs.shape.join("×")}] is not a llama [${half}] frequency table`,
        );
      const f = Array.from(await file.readTensorF32("rope_freqs.weight"));
      if (!f.every((v) => v > 0 && Number.isFinite(v)))
        throw new Error(
          `gguf: ${label}: tensor "rope_freqs.weight" holds a value that is not positive and finite`,
        );
      config.ropeFreqFactors = f;
      validateConfig(config, label);
    }
    const byGguf = new Map<string, GgufPart[]>();
    const fusedRows = new Map<string, number>();
    for (const s of llamaTensorSpecs(config)) {
      const loc = ggufTensorLocation(s.name, config);
      const list = byGguf.get(loc.tensor) ?? [];
      list.push({
        ...s,
        ...(loc.rowStart !== undefined ? { rowStart: loc.rowStart, rowEnd: loc.rowEnd } : {}),
      });
      byGguf.set(loc.tensor, list);
      if (loc.rowEnd !== undefined)
        fusedRows.set(loc.tensor, Math.max(fusedRows.get(loc.tensor) ?? 0, loc.rowEnd));
    }
    for (const n of file.names) {
      if (n === "rope_freqs.weight") continue;
      const parts = byGguf.get(n);
      if (parts === undefined)
        throw new Error(
          `gguf: ${label}: unexpected tensor "${n}" for a ${config.family ?? "llama"} model (a feature int21 does not implement?)`,
        );
      const info = file.tensors[n];
      const want = fusedRows.has(n) ? [fusedRows.get(n)!, parts[0].shape[1]] : parts[0].shape;
      if (info.shape.length !== want.length || info.shape.some((d, i) => d !== want[i])) {
        throw new Error(
          `gguf: ${label}: tensor "${n}" has shape [${info.shape.join("×")}], the config needs [${want.join("×")}]`,
        );
      }
      if (GGML_TYPES[info.type].dequantize === undefined)
        throw new Error(`gguf: ${label}: tensor "${n}" has type ${info.type}, which int21 cannot read`);
    }
    for (const [g, parts] of byGguf) {
      if (!Object.hasOwn(file.tensors, g))
        throw new Error(
          `gguf: ${label}: missing tensor "${g}" (${parts.map((p) => `${p.name} [${p.shape.join("×")}]`).join(", ")})`,
        );
    }
    const hs = headSize(config);
    let fusedName = "";
    let fusedData: Float32Array | undefined;
    const readPart = async (g: string, part: GgufPart): Promise<Float32Array> => {
      let data: Float32Array;
      if (part.rowStart !== undefined) {
        if (fusedName !== g || !fusedData) {
          fusedData = await file.readTensorF32(g);
          fusedName = g;
        }
        const cols = part.shape[1];
        data = fusedData.slice(part.rowStart * cols, part.rowEnd! * cols);
      } else {
        data = await file.readTensorF32(g);
      }
      if (needsTransform(config, part) && /\.(wq|wk|bq|bk|qNorm|kNorm)$/.test(part.name)) {
        const cols = part.shape.length === 2 ? part.shape[1] : 1;
        const rows = data.length / cols;
        data = unpermuteHfRows(data, rows / hs, rows, cols);
      }
      return data;
    };
    let rawName = "";
    let rawData: Uint8Array | undefined;
    const readPartRaw = async (g: string, part: GgufPart, rowBytes: number): Promise<Uint8Array> => {
      let data: Uint8Array;
      if (part.rowStart !== undefined) {
        if (rawName !== g || !rawData) {
          rawData = await file.readTensorRaw(g);
          rawName = g;
        }
        data = rawData.slice(part.rowStart * rowBytes, part.rowEnd! * rowBytes);
      } else data = await file.readTensorRaw(g);
      if (needsTransform(config, part) && /\.(wq|wk)$/.test(part.name))
        data = moveRowBytes(data, data.length / rowBytes, rowBytes, hs, false);
      return data;
    };
    return { file, config, byGguf, readPart, readPartRaw };
  } catch (e) {
    if ("close" in file) await file.close();
    throw e;
  }
}

/**
 * Opens and validates a GGUF model as {@link loadGguf} does, without reading any weight: a
 * {@link TensorReader} giving each tensor dequantized to float32 under its int21 name, in file order
 * (`quantizeCheckpoint`-style streaming, one tensor at a time).
 */
export async function openGgufReader(src: string | Uint8Array): Promise<TensorReader> {
  const { file, config, byGguf, readPart } = await openLlamaGguf(src);
  const toGguf = new Map<string, [string, GgufPart]>();
  for (const [g, parts] of byGguf) for (const p of parts) toGguf.set(p.name, [g, p]);
  return {
    config,
    source: file.path,
    order: file.names.flatMap((n) => (byGguf.get(n) ?? []).map((p) => p.name)),
    fileOf: () => file.path,
    async read(name) {
      const hit = toGguf.get(name);
      if (hit === undefined) throw new Error(`gguf: ${file.path}: no tensor ${name} in this model`);
      return readPart(hit[0], hit[1]);
    },
    async close() {
      if ("close" in file) await file.close();
    },
  };
}

/**
 * Loads a llama.cpp GGUF LLaMA (a path, streamed with positioned reads, or the file's bytes): config from
 * `llama.*` metadata ({@link ggufConfigToLlama}), tensors by llama.cpp's names (`token_embd`, `blk.N.attn_q` …
 * `ffn_up`, `attn_norm`, `ffn_norm`, `output_norm`, `output` — absent when tied), any type `@int21/io`
 * dequantizes (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K … Q6_K), and the tokenizer. The header is
 * validated by `@int21/io` against the file length (truncation fails naming the file and tensor), then every
 * tensor name, type and shape is checked against the config before any data is read; values are checked finite.
 */
export async function loadGguf(src: string | Uint8Array, opts: GgufLoadOptions = {}): Promise<GgufModel> {
  const { file, config, byGguf, readPart, readPartRaw } = await openLlamaGguf(src);
  const label = file.path;
  const md = file.metadata;
  try {
    const asm = new WeightAssembler(config, label, opts);
    const report: GgufTensorLoad[] = [];
    for (const n of file.names) {
      const parts = byGguf.get(n);
      if (parts === undefined) continue; // rope_freqs.weight: already in the config
      const info = file.tensors[n];
      for (const part of parts) {
        const { name, shape } = part;
        const entry: GgufTensorLoad = { gguf: n, name, type: info.type, loadedAs: "float" };
        // projections, the classifier and the token embedding (rows dequantized on lookup; a tied
        // classifier runs the packed linear over the same record)
        const packable = WeightAssembler.isLinear(name) || name === "tokenEmbedding";
        const block = blockFormatOfGgmlType(info.type);
        if (opts.keepPacked && packable && block !== undefined && shape[1] % block.block.blockSize === 0) {
          // a ggml block type is kept as its own int21 block format: the bytes ARE the packed words
          const raw = await readPartRaw(n, part, (shape[1] / block.block.blockSize) * block.block.blockBytes);
          let q: QuantizedLinear;
          try {
            q = quantizedFromGgmlBlocks(block, raw, shape[0], shape[1], { copy: !(typeof src === "string") });
          } catch (e) {
            throw new Error(`gguf: ${label}: tensor "${n}": ${(e as Error).message}`);
          }
          Object.assign(entry, { loadedAs: "packed", format: q.format.name, exact: true });
          asm.putQuantized(name, q);
          report.push(entry);
          continue;
        }
        if (
          opts.keepPacked &&
          packable &&
          GGML_GROUP_TYPES.includes(info.type) &&
          !needsTransform(config, part)
        ) {
          const packed = ggmlToQuantized(info.type, await file.readTensorRaw(n), shape[0], shape[1]);
          if (packed.q !== undefined) {
            entry.loadedAs = "packed";
            entry.format = packed.q.format.name;
            entry.exact = packed.exact;
            if (!packed.exact) {
              const want = await file.readTensorF32(n);
              const got = new Float32Array(want.length);
              referenceDequantize(packed.q, got);
              entry.maxAbsError = maxAbsDiff(want, got);
            }
            asm.putQuantized(name, packed.q);
            report.push(entry);
            continue;
          }
          entry.reason = packed.reason;
        } else if (opts.keepPacked && packable && GGML_GROUP_TYPES.includes(info.type)) {
          entry.reason = "part of a fused tensor or rotate-half q/k rows: read as float";
        }
        asm.put(name, await readPart(n, part), label);
        report.push(entry);
      }
    }
    const weights = asm.finish();
    const out: GgufModel = { weights, tensors: report };
    if (Object.hasOwn(md, "tokenizer.ggml.model")) {
      out.ggufTokenizer = readGgufTokenizer(md, label);
      try {
        out.tokenizer = ggufTokenizerToLlama2c(out.ggufTokenizer, label);
      } catch (e) {
        out.tokenizerError = (e as Error).message;
      }
    }
    return out;
  } finally {
    if ("close" in file) await file.close();
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > m || Number.isNaN(d)) m = d;
  }
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// Saving

/** Options of {@link saveGguf}. */
export interface GgufSaveOptions {
  /** Type of the 2-D tensors (projections, embedding, classifier). Norms are always F32. Default F32. */
  type?: GgufModelType;
  /** Type of `token_embd` (default `type`). */
  embeddingType?: GgufModelType;
  /** Written as `tokenizer.ggml.*` (see {@link llama2cTokenizerToGguf}). */
  tokenizer?: Llama2cTokenizer;
  /** `general.name`. */
  name?: string;
  /**
   * Fold LoRA-wrapped projections (LREC / EMEF adapters) into their base with `@int21/lora`'s
   * `mergeAndUnload` before writing (a packed base is re-quantized in its own format: see `merges`). The
   * weights passed in are left unchanged. Without it a LoRA-wrapped projection is refused: save the
   * base and the adapter ({@link saveGgufLora}) separately.
   */
  mergeLoRA?: boolean;
}

/** How one tensor was written. */
export interface GgufTensorSave {
  gguf: string;
  name: string;
  /** The ggml type written (a 2-D tensor whose row length is not a multiple of 32 falls back to F32/F16). */
  type: GgmlTypeName;
  /** What the model held: a float array or an int21 packed record. */
  source: "float" | "quant";
  /**
   * `exact`: the file reproduces the model's weight bit for bit; `direct`: an int21 record's codes written
   * as ggml blocks with f16-rounded parameters; `quantized`: floats rounded to `type` by ggml's reference
   * quantizer; `requantized`: an int21 record dequantized, then quantized again by ggml's quantizer.
   */
  mode: "exact" | "direct" | "quantized" | "requantized";
  /** `max |written − model|` over the tensor (0 for exact). */
  maxAbsError: number;
  /** RMS of `written − model`. */
  rmsError: number;
}

/** What {@link saveGguf} / {@link serializeGgufModel} report. */
export interface GgufSaveReport {
  tensors: GgufTensorSave[];
  /** `@int21/lora` merge reports of LoRA-wrapped projections folded in (`mergeLoRA`). */
  merges: MergeReport[];
}

/**
 * The GGUF tensors and metadata of `weights` (see {@link saveGguf}), with the report, without writing.
 */
export function ggufModelTensors(
  weights: LlamaWeights,
  opts: GgufSaveOptions = {},
): { metadata: Record<string, GgufValue>; tensors: GgufWriteTensor[]; report: GgufSaveReport } {
  const type = opts.type ?? "F32";
  if (!(type in FILE_TYPES))
    throw new Error(`saveGguf: type ${String(type)} is not one of F32, F16, Q8_0, Q4_0, Q4_1`);
  const config = validateConfig(weights.config, "saveGguf");
  const feature = ggufWriterUnsupported(config);
  if (feature !== undefined)
    throw new Error(
      `saveGguf: the model has ${feature}, which a GGUF of llama.cpp's "${ggufArch(config)}" architecture cannot carry (export it with exportHf)`,
    );
  const metadata = llamaToGgufMetadata(config, { type, name: opts.name });
  if (opts.tokenizer) {
    if (opts.tokenizer.vocabSize !== config.vocabSize) {
      throw new Error(
        `saveGguf: the tokenizer has ${opts.tokenizer.vocabSize} tokens, the model's vocabSize is ${config.vocabSize}`,
      );
    }
    Object.assign(metadata, llama2cTokenizerToGguf(opts.tokenizer));
  }
  const tensors: GgufWriteTensor[] = [];
  const report: GgufSaveReport = { tensors: [], merges: [] };
  const arch = ggufArch(config);
  const neox = arch !== "llama";
  const hs = headSize(config);
  const specs = new Map(llamaTensorSpecs(config).map((t) => [t.name, t.shape]));
  /** Rows moved to Hugging Face's rotate-half order, block by block (ggml rows are independent). */
  const toNeox = (t: GgufWriteTensor): GgufWriteTensor => {
    const rows = t.shape[0];
    const raw = t.raw!;
    const rb = raw.length / rows;
    const out = new Uint8Array(raw.length);
    const half = hs / 2;
    for (let h = 0; h < rows / hs; h++)
      for (let j = 0; j < 2; j++)
        for (let i = 0; i < half; i++) {
          const orig = h * hs + 2 * i + j;
          out.set(raw.subarray(orig * rb, (orig + 1) * rb), (h * hs + j * half + i) * rb);
        }
    return { ...t, raw: out };
  };
  // Phi-3's attn_qkv (q|k|v) and ffn_up (gate|up) are written once their last part is encoded.
  const pending = new Map<string, GgufWriteTensor[]>();
  const add = (name: string, shape: number[], t: GgufModelType, src: Float32Array | Linear) => {
    const loc = ggufTensorLocation(name, config);
    const r = encodeTensor(name, loc.tensor, shape, t, src, opts, report.merges);
    report.tensors.push(r.report);
    let tensor = r.tensor;
    if (neox && /\.(wq|wk|bq|bk|qNorm|kNorm)$/.test(name)) tensor = toNeox(tensor);
    if (loc.rowStart === undefined) {
      tensors.push(tensor);
      return;
    }
    const parts = [...(pending.get(loc.tensor) ?? []), tensor];
    pending.set(loc.tensor, parts);
    const last = /\.wv$/.test(name) || /\.w3$/.test(name);
    if (!last) return;
    if (parts.some((p) => p.type !== parts[0].type))
      throw new Error(`saveGguf: the parts of ${loc.tensor} were encoded as different types`);
    const raw = new Uint8Array(parts.reduce((n, p) => n + p.raw!.length, 0));
    let o = 0;
    for (const p of parts) {
      raw.set(p.raw!, o);
      o += p.raw!.length;
    }
    tensors.push({
      name: loc.tensor,
      type: parts[0].type,
      shape: [parts.reduce((n, p) => n + p.shape[0], 0), shape[1]],
      raw,
    });
    pending.delete(loc.tensor);
  };
  const { dim } = config;
  const emb = weights.tokenEmbedding;
  // A packed embedding goes through the packed-linear path: copied straight into Q8_0/Q4_0/Q4_1 when
  // its format maps onto the GGML type, else dequantized (and re-quantized for a quantized type).
  const embSrc = isPackedEmbedding(emb)
    ? createQuantLinear({ q: emb, backend: createReferenceBackend() })
    : emb;
  add("tokenEmbedding", [config.vocabSize, dim], opts.embeddingType ?? type, embSrc);
  add("finalNorm", [dim], "F32", weights.finalNorm);
  const freqs = arch === "llama" ? ropeFreqsTensor(config) : undefined;
  if (freqs) {
    const r = encodeTensor(
      "ropeFreqs",
      "rope_freqs.weight",
      [freqs.length],
      "F32",
      freqs,
      opts,
      report.merges,
    );
    tensors.push(r.tensor);
    report.tensors.push(r.report);
  }
  const cls = weights.classifier;
  const tied = config.sharedClassifier && isTiedClassifier(cls, emb) && !isLoRALinear(cls);
  if (!tied) add("classifier", [config.vocabSize, dim], type, cls);
  weights.layers.forEach((L, i) => {
    add(`layers.${i}.attnNorm`, [dim], "F32", L.attnNorm);
    for (const n of Object.keys(LINEAR_NAMES) as LinearName[]) {
      add(`layers.${i}.${n}`, specs.get(`layers.${i}.${n}`)!, type, L[n]);
      if (n === "wo") add(`layers.${i}.ffnNorm`, [dim], "F32", L.ffnNorm);
    }
    for (const n of EXTRA_LAYER_TENSORS) {
      const v = L[n];
      if (v) add(`layers.${i}.${n}`, [v.length], "F32", v);
    }
  });
  // block-format projections written verbatim: general.file_type says what most of the file is, as
  // llama-quantize's ftype does (the "_M" mixes for the k-quants)
  const projTypes = new Set(report.tensors.filter((t) => /^layers\.\d+\.w/.test(t.name)).map((t) => t.type));
  const only = projTypes.size === 1 ? [...projTypes][0] : undefined;
  if (only !== undefined && only !== type && only in BLOCK_FILE_TYPES)
    metadata["general.file_type"] = { type: "u32", value: BLOCK_FILE_TYPES[only]! };
  return { metadata, tensors, report };
}

/**
 * The first feature of `config` that llama.cpp's GGUF of its architecture cannot carry (so a reader would
 * rebuild a different model), or undefined.
 */
function ggufWriterUnsupported(c: LlamaConfig): string | undefined {
  const arch = ggufArch(c);
  const hs = headSize(c);
  if (c.oBias) return "an o bias";
  if (c.qkvBias && arch !== "qwen2") return "q/k/v biases";
  if (c.qkNorm && arch !== "qwen3") return "q/k norms";
  if (c.ropeScaling?.type === "llama3" && arch !== "llama") return "Llama 3 RoPE scaling";
  if (c.ropeFreqFactors && arch !== "llama") return "RoPE frequency factors";
  if (c.slidingWindow !== undefined) {
    const alternating = c.slidingLayers?.every((b, l) => b === (l % 2 === 0)) ?? false;
    if (!(arch === "phi3" && c.slidingLayers === undefined) && !(arch === "gemma2" && alternating))
      return "a sliding window (llama.cpp reads one for phi3 on every layer, gemma2 on even layers)";
  }
  if (arch === "gemma2") {
    if (!c.postNorms || c.hiddenAct !== "gelu_tanh" || c.embedScale !== Math.sqrt(c.dim))
      return "a gemma2 family without Gemma 2's norms, GeGLU and embedding scale";
    const implied = c.nLayers === 46 ? c.dim / c.nHeads : hs;
    if (c.queryPreAttnScalar !== undefined && c.queryPreAttnScalar !== implied)
      return `queryPreAttnScalar ${c.queryPreAttnScalar} (GGUF has no such key: llama.cpp uses ${implied})`;
  } else {
    const gemma: [keyof LlamaConfig, string][] = [
      ["postNorms", "post norms"],
      ["embedScale", "an embedding scale"],
      ["finalLogitSoftcap", "logit soft-capping"],
      ["attnLogitSoftcap", "attention soft-capping"],
      ["queryPreAttnScalar", "a query pre-attention scalar"],
      ["normOffset", "a norm offset"],
    ];
    for (const [k, what] of gemma) if (c[k] !== undefined && c[k] !== false) return what;
    if (c.hiddenAct !== undefined && c.hiddenAct !== "silu") return `hidden activation ${c.hiddenAct}`;
  }
  return undefined;
}

function encodeTensor(
  name: string,
  gguf: string,
  shape: number[],
  wanted: GgufModelType,
  src: Float32Array | Linear,
  opts: GgufSaveOptions,
  merges: MergeReport[],
): { tensor: GgufWriteTensor; report: GgufTensorSave } {
  let weight: Float32Array;
  let q: QuantizedLinear | undefined;
  if (src instanceof Float32Array) {
    weight = src;
  } else {
    let lin = src;
    if (isLoRALinear(lin)) {
      if (!opts.mergeLoRA) {
        throw new Error(
          `saveGguf: ${name} is LoRA-wrapped; pass mergeLoRA: true to fold the adapters in, or save the base and the adapter (saveGgufLora) separately`,
        );
      }
      const m = mergeAndUnload(lin);
      merges.push({ module: name, ...m.report });
      lin = m.linear;
    }
    const parts = linearParts(lin, name);
    if (parts.kind === "quant" && isBlockFormat(getFormat(parts.q.format))) {
      // a ggml block format is written as its own ggml type, its bytes verbatim (bit-identical re-export)
      const type = (getFormat(parts.q.format) as BlockFormatRecord).block.ggmlType;
      if (parts.q.outFeatures * parts.q.inFeatures !== numel(shape))
        throw new Error(
          `saveGguf: ${name} is ${parts.q.outFeatures}×${parts.q.inFeatures}, expected [${shape.join("×")}]`,
        );
      return {
        tensor: { name: gguf, type, shape, raw: ggmlBlocksOf(parts.q) },
        report: { gguf, name, type, source: "quant", mode: "exact", maxAbsError: 0, rmsError: 0 },
      };
    }
    if (parts.kind === "float") {
      weight = parts.weight;
    } else {
      q = parts.q;
      weight = new Float32Array(q.outFeatures * q.inFeatures);
      referenceDequantize(q, weight);
    }
  }
  if (weight.length !== numel(shape))
    throw new Error(`saveGguf: ${name} has ${weight.length} values, expected [${shape.join("×")}]`);
  let type: GgmlTypeName = wanted;
  const blockSize = GGML_TYPES[type].blockSize;
  if (shape[shape.length - 1] % blockSize !== 0) type = wanted === "F16" ? "F16" : "F32";
  const t = GGML_TYPES[type];
  let raw: Uint8Array | undefined;
  let mode: GgufTensorSave["mode"];
  if (q !== undefined && (type === "Q8_0" || type === "Q4_0" || type === "Q4_1")) {
    raw = quantizedToGgml(q, type);
    mode = raw !== undefined ? "direct" : "requantized";
  } else {
    mode = q !== undefined ? "requantized" : "quantized";
  }
  if (raw === undefined) {
    raw = new Uint8Array((weight.length / t.blockSize) * t.blockBytes);
    try {
      t.quantize!(weight, raw);
    } catch (e) {
      throw new Error(`saveGguf: ${name} → ${type}: ${(e as Error).message}`);
    }
  }
  const back = t.dequantize!(raw, new Float32Array(weight.length), weight.length);
  let max = 0;
  let sq = 0;
  for (let i = 0; i < weight.length; i++) {
    if (!Number.isFinite(weight[i]))
      throw new Error(`saveGguf: ${name} holds a non-finite value (${weight[i]}) at element ${i}`);
    const d = back[i] - weight[i];
    sq += d * d;
    if (Math.abs(d) > max || Number.isNaN(d)) max = Math.abs(d);
  }
  if (!Number.isFinite(max))
    throw new Error(`saveGguf: ${name} does not fit ${type} (a block scale overflows f16)`);
  if (max === 0) mode = "exact";
  return {
    tensor: { name: gguf, type, shape, raw },
    report: {
      gguf,
      name,
      type,
      source: q !== undefined ? "quant" : "float",
      mode,
      maxAbsError: max,
      rmsError: Math.sqrt(sq / Math.max(1, weight.length)),
    },
  };
}

/**
 * Writes `weights` as a llama.cpp GGUF file (version 3): LLaMA metadata ({@link llamaToGgufMetadata}), the
 * tokenizer when given, norms in F32 and every 2-D tensor in `opts.type` (F32, F16, Q8_0, Q4_0 or Q4_1; a row
 * length that is not a multiple of 32 falls back to F32 — F16 for `type: "F16"` — as llama.cpp's converter
 * falls back). Float weights are quantized with ggml's reference quantizer; int21 packed projections are
 * written straight from their codes when {@link quantizedToGgml} can (exact for `int4-g32-sym` → Q4_0 /
 * Q4_1 and integer-zero g32 records → Q8_0), else dequantized and re-quantized. The architecture is the
 * family's (`llama` for LLaMA/Mistral, `qwen2`, `qwen3`, `phi3`, `gemma2`) in llama.cpp's layout: `llama`
 * q/k rows stay in int21's interleaved order, the NEOX families' rows (and q/k biases and norms) are moved
 * back to rotate-half order block row by block row, Phi-3's q|k|v and gate|up are fused, Llama 3's scaling
 * becomes `rope_freqs.weight`. A feature llama.cpp's GGUF cannot carry is refused, naming it (a Mistral
 * window, Gemma 2's `query_pre_attn_scalar` other than llama.cpp's implied one, biases outside Qwen2…).
 * The report gives, per tensor, the type written and the error added.
 */
export async function saveGguf(
  path: string,
  weights: LlamaWeights,
  opts: GgufSaveOptions = {},
): Promise<GgufSaveReport> {
  const { metadata, tensors, report } = ggufModelTensors(weights, opts);
  await writeGguf(path, { metadata, tensors });
  return report;
}

/** {@link saveGguf} into bytes in memory. */
export function serializeGgufModel(
  weights: LlamaWeights,
  opts: GgufSaveOptions = {},
): { bytes: Uint8Array; report: GgufSaveReport } {
  const { metadata, tensors, report } = ggufModelTensors(weights, opts);
  return { bytes: serializeGguf({ metadata, tensors }), report };
}
