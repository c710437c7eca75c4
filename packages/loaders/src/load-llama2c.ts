import { type ByteSource, assertLittleEndianHost, bytesSource, fileSource } from "./load-source";
import {
  type LlamaConfig,
  headSize,
  kvDim,
  validateConfig,
  type LoadOptions,
  type TensorReader,
  WeightAssembler,
  numel,
  type LlamaWeights,
} from "@int21/model-llama";

/** `"ak42"` read as a little-endian uint32: the magic of llama2.c version ≥ 1 files. */
export const LLAMA2C_MAGIC = 0x616b3432;

/** Bytes of the version-1 header (magic, version, 7 params, shared flag, zero padding). */
export const LLAMA2C_V1_HEADER_BYTES = 256;

/** Bytes of the legacy (version 0) header: 7 int32. */
export const LLAMA2C_LEGACY_HEADER_BYTES = 28;

/** One stored array of a llama2.c file: int21 tensor name (or `freqCisReal`/`freqCisImag`), shape, byte offset. */
export interface Llama2cEntry {
  name: string;
  shape: number[];
  offset: number;
}

/** A parsed llama2.c header and the byte layout it implies. */
export interface Llama2cLayout {
  /** 0 = legacy header, 1 = `ak42` version 1. */
  version: 0 | 1;
  config: LlamaConfig;
  /**
   * Every stored array in file order. Built on first access, one entry per stored array: check the file size
   * against {@link Llama2cLayout.totalBytes} first (a corrupt header can claim billions of layers).
   */
  readonly entries: Llama2cEntry[];
  /** Exact file size the header implies. */
  totalBytes: number;
}

const LINEARS_ATTN = ["wq", "wk", "wv", "wo"] as const;
const LINEARS_FFN = ["w1", "w2", "w3"] as const;

/** A run of arrays of one shape: one array, or one per layer (`layers` > 0) stored back to back. */
interface Llama2cSection {
  name: string;
  /** 0 for a single array, else the number of layers (entries `layers.{l}.<name>`). */
  layers: number;
  shape: number[];
  /** Byte offset of the first array. */
  offset: number;
  /** Bytes of one array. */
  bytes: number;
}

/**
 * Reads a llama2.c header (legacy or version 1) from its first bytes and computes the layout.
 * Throws naming `name` on a wrong magic, an unsupported version or an invalid shape. Takes time independent of
 * the sizes the header claims (the entry list is built only when asked for).
 *
 * Legacy: `i32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (< 0: separate classifier), seq_len`,
 * then f32 token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq_cis_real,
 * freq_cis_imag, [wcls]. Version 1: `u32 0x616b3432, i32 1`, the 7 params, `u8 shared_classifier`, zeros to
 * byte 256, then f32 rms_att, rms_ffn, rms_final, token_embedding, wq, wk, wv, wo, w1, w2, w3, [wcls]
 * (no RoPE tables). Per-layer arrays are stored all layers of one kind together.
 */
export function parseLlama2cHeader(head: Uint8Array, name: string): Llama2cLayout {
  if (head.byteLength < LLAMA2C_LEGACY_HEADER_BYTES) {
    throw new Error(
      `${name}: ${head.byteLength} bytes is too short for a llama2.c header (28 bytes at least)`,
    );
  }
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const i32 = (off: number) => dv.getInt32(off, true);
  let version: 0 | 1 = 0;
  let base = 0;
  let shared: boolean;
  if (dv.getUint32(0, true) === LLAMA2C_MAGIC) {
    if (head.byteLength < LLAMA2C_V1_HEADER_BYTES) {
      throw new Error(`${name}: truncated llama2.c version-1 header (${head.byteLength} of 256 bytes)`);
    }
    const v = i32(4);
    if (v !== 1) {
      throw new Error(
        `${name}: llama2.c version ${v} is not supported (only legacy and version 1 float32 files; version 2 is Q8_0)`,
      );
    }
    version = 1;
    base = 8;
    const flag = head[36];
    if (flag !== 0 && flag !== 1)
      throw new Error(`${name}: llama2.c shared_classifier flag is ${flag}, expected 0 or 1`);
    shared = flag === 1;
  } else {
    shared = i32(20) > 0;
  }
  const vocab = i32(base + 20);
  const config: LlamaConfig = {
    dim: i32(base),
    hiddenDim: i32(base + 4),
    nLayers: i32(base + 8),
    nHeads: i32(base + 12),
    nKvHeads: i32(base + 16),
    vocabSize: version === 0 ? Math.abs(vocab) : vocab,
    seqLen: i32(base + 24),
    ropeTheta: 10000,
    normEps: 1e-5,
    sharedClassifier: shared,
  };
  validateConfig(config, `${name} (llama2.c header)`);
  const { sections, total } = llama2cSections(config, version, name);
  let entries: Llama2cEntry[] | undefined;
  return {
    version,
    config,
    totalBytes: total,
    get entries() {
      entries ??= expandSections(sections);
      return entries;
    },
  };
}

function llama2cSections(
  c: LlamaConfig,
  version: 0 | 1,
  file: string,
): { sections: Llama2cSection[]; total: number } {
  const { dim, hiddenDim: h, nLayers: L, vocabSize: V, seqLen } = c;
  const kv = kvDim(c);
  const shapeOf: Record<string, number[]> = {
    wq: [dim, dim],
    wk: [kv, dim],
    wv: [kv, dim],
    wo: [dim, dim],
    w1: [h, dim],
    w2: [dim, h],
    w3: [h, dim],
    attnNorm: [dim],
    ffnNorm: [dim],
  };
  const sections: Llama2cSection[] = [];
  let off = version === 0 ? LLAMA2C_LEGACY_HEADER_BYTES : LLAMA2C_V1_HEADER_BYTES;
  const add = (name: string, shape: number[], layers = 0) => {
    const bytes = numel(shape) * 4;
    sections.push({ name, layers, shape, offset: off, bytes });
    off += Math.max(1, layers) * bytes;
  };
  const perLayer = (field: string) => add(field, shapeOf[field], L);
  if (version === 0) {
    add("tokenEmbedding", [V, dim]);
    perLayer("attnNorm");
    for (const f of LINEARS_ATTN) perLayer(f);
    perLayer("ffnNorm");
    for (const f of LINEARS_FFN) perLayer(f);
    add("finalNorm", [dim]);
    add("freqCisReal", [seqLen, headSize(c) / 2]);
    add("freqCisImag", [seqLen, headSize(c) / 2]);
  } else {
    perLayer("attnNorm");
    perLayer("ffnNorm");
    add("finalNorm", [dim]);
    add("tokenEmbedding", [V, dim]);
    for (const f of LINEARS_ATTN) perLayer(f);
    for (const f of LINEARS_FFN) perLayer(f);
  }
  if (!c.sharedClassifier) add("classifier", [V, dim]);
  if (!Number.isSafeInteger(off)) {
    throw new Error(
      `${file}: the llama2.c header claims a model of about ${off.toExponential(2)} bytes, larger than any file (corrupt header?)`,
    );
  }
  return { sections, total: off };
}

function expandSections(sections: readonly Llama2cSection[]): Llama2cEntry[] {
  const entries: Llama2cEntry[] = [];
  for (const s of sections) {
    if (s.layers === 0) entries.push({ name: s.name, shape: s.shape, offset: s.offset });
    else
      for (let l = 0; l < s.layers; l++)
        entries.push({ name: `layers.${l}.${s.name}`, shape: s.shape, offset: s.offset + l * s.bytes });
  }
  return entries;
}

/** The first stored array that does not fit in `size` bytes (`size` < the layout's total), in O(sections). */
function firstCut(c: LlamaConfig, version: 0 | 1, size: number, file: string): Llama2cEntry {
  for (const s of llama2cSections(c, version, file).sections) {
    const end = s.offset + Math.max(1, s.layers) * s.bytes;
    if (end <= size) continue;
    if (s.layers === 0) return { name: s.name, shape: s.shape, offset: s.offset };
    const l = Math.min(s.layers - 1, Math.floor(Math.max(0, size - s.offset) / s.bytes));
    return { name: `layers.${l}.${s.name}`, shape: s.shape, offset: s.offset + l * s.bytes };
  }
  throw new Error(`${file}: internal: no array is cut at ${size} bytes`);
}

/** Checks the exact size of a llama2.c source against its header; returns the layout. */
function checkedLayout(src: ByteSource): Llama2cLayout {
  assertLittleEndianHost(src.name);
  const head = src.read(0, Math.min(src.size, LLAMA2C_V1_HEADER_BYTES));
  const layout = parseLlama2cHeader(head, src.name);
  if (src.size !== layout.totalBytes) {
    if (src.size < layout.totalBytes) {
      const cut = firstCut(layout.config, layout.version, src.size, src.name);
      throw new Error(
        `${src.name}: truncated llama2.c file: ${src.size} bytes, the header needs ${layout.totalBytes}; ` +
          `tensor ${cut.name} [${cut.shape.join("×")}] at byte ${cut.offset} does not fit`,
      );
    }
    throw new Error(
      `${src.name}: llama2.c file is ${src.size} bytes but its header implies ${layout.totalBytes} ` +
        `(${src.size - layout.totalBytes} unexpected trailing bytes; wrong header or shared-classifier flag?)`,
    );
  }
  return layout;
}

/**
 * Opens a llama2.c file (size checked against the header) as a {@link TensorReader} that reads one
 * tensor at a time; GPTQ streams a model layer by layer with it.
 */
export function openLlama2cReader(path: string): TensorReader {
  const src = fileSource(path);
  let layout: Llama2cLayout;
  try {
    layout = checkedLayout(src);
  } catch (e) {
    src.close();
    throw e;
  }
  const byName = new Map(layout.entries.map((e) => [e.name, e]));
  return {
    config: layout.config,
    source: path,
    order: layout.entries.filter((e) => !e.name.startsWith("freqCis")).map((e) => e.name),
    fileOf: () => path,
    async read(name) {
      const e = byName.get(name);
      if (!e || name.startsWith("freqCis")) throw new Error(`${path}: no tensor ${name} in this model`);
      const bytes = src.read(e.offset, numel(e.shape) * 4);
      return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    },
    async close() {
      src.close();
    },
  };
}

/**
 * Loads a llama2.c checkpoint from a {@link ByteSource}, tensor by tensor. The exact file size is
 * checked against the header before any weight is read (a truncated file names the first tensor that
 * does not fit); each weight is checked to be finite. With `opts.quantize` each projection is quantized
 * as soon as it is read, so the float model is never held whole.
 */
export function loadLlama2cFrom(src: ByteSource, opts: LoadOptions = {}): LlamaWeights {
  const layout = checkedLayout(src);
  const asm = new WeightAssembler(layout.config, src.name, opts);
  for (const e of layout.entries) {
    if (e.name.startsWith("freqCis")) continue; // RoPE tables: recomputed at run time
    const bytes = src.read(e.offset, numel(e.shape) * 4);
    asm.put(e.name, new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4));
  }
  return asm.finish();
}

/**
 * Loads a llama2.c `.bin` (legacy or version 1, shared or separate classifier) from a file, streaming
 * tensor by tensor with positional reads.
 *
 * ```ts
 * const w = loadLlama2c("stories260K.bin");              // FloatLinear projections
 * const q = loadLlama2c("stories110M.bin", { quantize: { format: "int4-g128-asym-f16" } });
 * ```
 */
export function loadLlama2c(path: string, opts: LoadOptions = {}): LlamaWeights {
  const src = fileSource(path);
  try {
    return loadLlama2cFrom(src, opts);
  } finally {
    src.close();
  }
}

/** Loads a llama2.c checkpoint already in memory (browsers: the bytes of a `fetch`). */
export function loadLlama2cBytes(
  bytes: Uint8Array,
  opts: LoadOptions & { name?: string } = {},
): LlamaWeights {
  return loadLlama2cFrom(bytesSource(bytes, opts.name ?? "<llama2.c bytes>"), opts);
}

/**
 * Serialises float tensors (int21 names, see `llamaTensorSpecs`) as a llama2.c file: `version` 0
 * (legacy, with RoPE tables computed from `config.ropeTheta`) or 1 (`ak42` header). Tests and exporters use it.
 */
export function encodeLlama2c(
  config: LlamaConfig,
  tensors: Map<string, Float32Array>,
  version: 0 | 1,
): Uint8Array {
  validateConfig(config);
  const head = new Uint8Array(LLAMA2C_V1_HEADER_BYTES);
  const dv = new DataView(head.buffer);
  const base = version === 0 ? 0 : 8;
  if (version === 1) {
    dv.setUint32(0, LLAMA2C_MAGIC, true);
    dv.setInt32(4, 1, true);
    head[36] = config.sharedClassifier ? 1 : 0;
  }
  const params = [config.dim, config.hiddenDim, config.nLayers, config.nHeads, config.nKvHeads];
  for (const [i, v] of params.entries()) dv.setInt32(base + 4 * i, v, true);
  const vocab = version === 0 && !config.sharedClassifier ? -config.vocabSize : config.vocabSize;
  dv.setInt32(base + 20, vocab, true);
  dv.setInt32(base + 24, config.seqLen, true);
  const layout = parseLlama2cHeader(head, "encodeLlama2c");
  const out = new Uint8Array(layout.totalBytes);
  out.set(head.subarray(0, version === 0 ? LLAMA2C_LEGACY_HEADER_BYTES : LLAMA2C_V1_HEADER_BYTES));
  const hs2 = headSize(config) / 2;
  for (const e of layout.entries) {
    let data = tensors.get(e.name);
    if (e.name.startsWith("freqCis")) {
      data = new Float32Array(config.seqLen * hs2);
      for (let p = 0; p < config.seqLen; p++) {
        for (let i = 0; i < hs2; i++) {
          const angle = p * config.ropeTheta ** (-(2 * i) / (2 * hs2));
          data[p * hs2 + i] = e.name === "freqCisReal" ? Math.cos(angle) : Math.sin(angle);
        }
      }
    }
    if (!data || data.length !== numel(e.shape)) {
      throw new Error(
        `encodeLlama2c: tensor ${e.name} [${e.shape.join("×")}] is missing or has the wrong length`,
      );
    }
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), e.offset);
  }
  return out;
}
