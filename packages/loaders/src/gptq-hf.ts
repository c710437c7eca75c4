// GPTQ checkpoints in the Hugging Face layout that transformers / optimum / GPTQModel load (AutoGPTQ's QuantLinear
// buffers): int21 packed records written as `qweight` / `qzeros` / `scales` / `g_idx` with a `gptq`
// `quantization_config`, and such folders read back into int21 packed records.
import { type Bits, packMatrix, unpackMatrix, unpackMatrixRow } from "@int21/bitpack";
import {
  type RawTensor,
  type SafetensorsWriteTensor,
  openSafetensors,
  openSafetensorsIndex,
} from "@int21/io";
import { isLoRALinear } from "@int21/lora";
import {
  type FormatBits,
  type Linear,
  type QuantizedLinear,
  createQuantizedLinear,
  f16BitsToF32,
  f32ToF16Bits,
  formatName,
  getFormat,
  groupCount,
  isF16Exact,
} from "@int21/quant-kernels";
import {
  type HfExportOptions,
  type HfExportReport,
  type HfFusedPart,
  type HfLinearWriter,
  exportHf,
} from "./export-hf";
import { hfConfigToLlama, hfTensorLocation, permuteHfRows, unpermuteHfRows } from "./load-hf";
import {
  headSize,
  llamaModules,
  linearParts,
  type LoadOptions,
  WeightAssembler,
  llamaTensorSpecs,
  type LlamaWeights,
} from "@int21/model-llama";

/**
 * How zero points are stored: `gptq` (AutoGPTQ's historical v1 layout, `checkpoint_format: "gptq"`, the one
 * transformers / optimum / GPTQModel and most hub checkpoints use) stores `zero − 1`; `gptq_v2` (GPTQModel's)
 * stores the zero itself.
 */
export type GptqCheckpointFormat = "gptq" | "gptq_v2";

/** The fields of a `gptq` `quantization_config` int21 reads and writes. */
export interface GptqConfig {
  bits: 2 | 3 | 4 | 8;
  /** Input columns per group, -1 for one group per output row. */
  groupSize: 32 | 64 | 128 | -1;
  /** Act-order (`desc_act`): `g_idx` maps columns to groups in any order. */
  descAct: boolean;
  /** Symmetric quantization (every zero point is 2^(bits−1)). */
  sym: boolean;
  checkpointFormat: GptqCheckpointFormat;
  /** `lm_head` is GPTQ too (GPTQModel's `lm_head: true`); default false. */
  lmHead?: boolean;
}

/** One projection in AutoGPTQ's layout (Hugging Face `[in, out]` orientation, rows in Hugging Face order). */
export interface GptqTensors {
  /** `[K / (32/bits), N]`: word `[r, n]` holds codes of columns `k = r·(32/bits) + j` at bits `j·bits`. */
  qweight: Int32Array;
  /** `[groups, N / (32/bits)]`: word `[g, c]` holds the stored zeros of rows `n = c·(32/bits) + j` at bits `j·bits`. */
  qzeros: Int32Array;
  /** `[groups, N]` f16 bit patterns. */
  scales: Uint16Array;
  /** `[K]` group of each input column. */
  gIdx: Int32Array;
}

/** Options of {@link exportGptqHf}. */
export interface GptqExportOptions extends Pick<HfExportOptions, "dtype" | "maxShardBytes"> {
  /**
   * `gptq` (AutoGPTQ's zero − 1 storage, what transformers expects by default), `gptq_v2`, or `auto` (the
   * default): `gptq` unless some group has a zero point of 0, which only `gptq_v2` stores ({@link gptqZeroGroups}).
   */
  checkpointFormat?: GptqCheckpointFormat | "auto";
  /** Write a packed, unshared classifier as a GPTQ `lm_head` too (`lm_head: true`); default false (float). */
  lmHead?: boolean;
}

const GPTQ_BITS = [2, 3, 4, 8] as const;

function gptqBits(bits: number, where: string): 2 | 3 | 4 | 8 {
  if (!(GPTQ_BITS as readonly number[]).includes(bits))
    throw new Error(`${where}: ${bits}-bit codes have no GPTQ layout (2, 3, 4 or 8 bits)`);
  return bits as 2 | 3 | 4 | 8;
}

/** The smallest count of `bits`-wide codes that fills whole int32 words: 16, 32 (3-bit: 3 words), 8, 4. */
function codesPerWords(bits: number): number {
  return bits === 3 ? 32 : 32 / bits;
}

/**
 * ORs code `v` into a little-endian bitstream of int32 words at bit `pos`: word `pos >> 5` of the stream is
 * `arr[base + (pos >> 5)·stride]`; a code that straddles two words (3-bit) spills into the next.
 */
function putCode(arr: Int32Array, base: number, stride: number, pos: number, bits: number, v: number): void {
  const w = pos >>> 5;
  const sh = pos & 31;
  arr[base + w * stride] |= v << sh;
  if (sh + bits > 32) arr[base + (w + 1) * stride] |= v >>> (32 - sh);
}

/** The code of `bits` at bit `pos` of the bitstream {@link putCode} writes. */
function getCode(arr: Int32Array, base: number, stride: number, pos: number, bits: number): number {
  const w = pos >>> 5;
  const sh = pos & 31;
  let v = arr[base + w * stride] >>> sh;
  if (sh + bits > 32) v |= arr[base + (w + 1) * stride] << (32 - sh);
  return v & ((1 << bits) - 1);
}

/** The row order Hugging Face stores: `order[hfRow] = int21 row` (q/k get the rotate-half permutation). */
function hfRowOrder(N: number, permuteHeads: number): Int32Array | undefined {
  if (permuteHeads === 0) return undefined;
  const idx = Float32Array.from({ length: N }, (_, i) => i);
  return Int32Array.from(permuteHfRows(idx, permuteHeads, N, 1));
}

/**
 * Packs one int21 affine record (2, 3, 4 or 8 bits, f16-exact scales, integer zeros) into AutoGPTQ's buffers
 * (each column's codes, and each group row's zeros, a little-endian bitstream of int32 words: 3-bit codes straddle
 * words in AutoGPTQ's 32-codes-per-3-words layout).
 * `rowOrder[hfRow]` is the int21 row written at Hugging Face row `hfRow` (default: the same order). Throws naming
 * `name` for anything the layout cannot hold exactly: codebook formats, K or N that does not fill whole words
 * (a multiple of 16, 32, 8, 4 codes at 2, 3, 4, 8 bits), a scale that is not an f16 value, a zero that is not an integer, or (format `gptq`)
 * a zero of 0, which AutoGPTQ's zero − 1 storage cannot hold (use `gptq_v2`).
 */
export function packGptqLinear(
  q: QuantizedLinear,
  name: string,
  opts: { rowOrder?: Int32Array; checkpointFormat?: GptqCheckpointFormat } = {},
): GptqTensors {
  const f = getFormat(q.format);
  if ((f.decode ?? "affine") !== "affine")
    throw new Error(
      `${name}: format ${f.name} is a codebook format (${f.decode}); GPTQ stores affine codes scale·(q − zero)`,
    );
  const bits = gptqBits(f.bits, `${name} (${f.name})`);
  const unit = codesPerWords(bits);
  const N = q.outFeatures;
  const K = q.inFeatures;
  if (K % unit !== 0)
    throw new Error(
      `${name}: inFeatures ${K} is not a multiple of ${unit} (${bits}-bit codes fill whole int32 words of qweight only in ${unit}s), so AutoGPTQ's layout cannot hold it`,
    );
  if (N % unit !== 0)
    throw new Error(
      `${name}: outFeatures ${N} is not a multiple of ${unit} (${bits}-bit zeros fill whole int32 words of qzeros only in ${unit}s), so AutoGPTQ's layout cannot hold it`,
    );
  const zw = (N * bits) / 32;
  const v1 = (opts.checkpointFormat ?? "gptq") === "gptq";
  const nG = groupCount(f, K);
  const G = f.groupSize === -1 ? K : f.groupSize;
  const order = opts.rowOrder;
  const codes = new Uint8Array(N * K);
  unpackMatrix(q.qweight, codes);
  const qweight = new Int32Array(((K * bits) / 32) * N);
  const qzeros = new Int32Array(nG * zw);
  const scales = new Uint16Array(nG * N);
  const mask = (1 << bits) - 1;
  for (let hn = 0; hn < N; hn++) {
    const n = order ? order[hn] : hn;
    const row = n * K;
    for (let k = 0; k < K; k++) {
      putCode(qweight, hn, N, k * bits, bits, codes[row + k]);
    }
    for (let g = 0; g < nG; g++) {
      const s = q.scales[n * nG + g];
      if (!isF16Exact(s))
        throw new Error(
          `${name}: scale of row ${n}, group ${g} is ${s}, not an f16 value (GPTQ stores f16 scales); quantize with an f16-scale format`,
        );
      scales[g * N + hn] = f32ToF16Bits(s);
      const z = q.zeros[n * nG + g];
      if (!Number.isInteger(z) || z < 0 || z > mask)
        throw new Error(`${name}: zero of row ${n}, group ${g} is ${z}, not an integer code in [0, ${mask}]`);
      const stored = v1 ? z - 1 : z;
      if (stored < 0)
        throw new Error(
          `${name}: zero of row ${n}, group ${g} is 0, which checkpoint_format "gptq" (AutoGPTQ's zero − 1 storage) cannot hold; export with checkpoint format gptq_v2`,
        );
      putCode(qzeros, g * zw, 1, hn * bits, bits, stored & mask);
    }
  }
  const gIdx = q.gIdx ? Int32Array.from(q.gIdx) : Int32Array.from({ length: K }, (_, k) => Math.floor(k / G));
  return { qweight, qzeros, scales, gIdx };
}

/** What {@link unpackGptqLinear} reads besides the tensors. */
export interface GptqUnpackSpec {
  /** int21 name for messages. */
  name: string;
  outFeatures: number;
  inFeatures: number;
  config: GptqConfig;
  /** `rowOrder[hfRow]` = int21 row (the inverse q/k permutation is applied); default the same order. */
  rowOrder?: Int32Array;
  /** Only Hugging Face rows `[rowStart, rowEnd)` (a part of a fused tensor); default all. */
  rowStart?: number;
  rowEnd?: number;
}

/**
 * Reads AutoGPTQ buffers back into an int21 packed record: codes and f16 scales exactly, zeros `stored + 1`
 * (`gptq`) or `stored` (`gptq_v2`), `g_idx` kept when it is not the plain `k / group_size` (act-order). The
 * format is `int{bits}-g{group}-{sym|asym}-f16`: symmetric when the config says so and every zero is
 * 2^(bits−1). `t.scales` are f16 bit patterns; `t.gIdx` may be absent (then the plain order). Throws naming
 * the tensor for a shape that does not match, and for a zero outside `[0, 2^bits − 1]` (AutoGPTQ's v1 packing
 * of a zero of 0 overflows to 2^bits, which no int21 format holds).
 */
export function unpackGptqLinear(
  t: { qweight: Int32Array; qzeros: Int32Array; scales: Uint16Array; gIdx?: Int32Array },
  spec: GptqUnpackSpec,
): QuantizedLinear {
  const { name, config } = spec;
  const bits = config.bits;
  const mask = (1 << bits) - 1;
  const K = spec.inFeatures;
  const rowStart = spec.rowStart ?? 0;
  const rowEnd = spec.rowEnd ?? rowStart + spec.outFeatures;
  const N = rowEnd - rowStart;
  if (N !== spec.outFeatures)
    throw new Error(`${name}: rows [${rowStart}, ${rowEnd}) are not ${spec.outFeatures}`);
  const kWords = (K * bits) / 32;
  const total = t.qweight.length / kWords;
  const G = config.groupSize === -1 ? K : config.groupSize;
  const nG = config.groupSize === -1 ? 1 : Math.ceil(K / G);
  if (!Number.isInteger(kWords) || !Number.isInteger(total) || total < rowEnd)
    throw new Error(
      `${name}: qweight has ${t.qweight.length} words, expected [${K}·${bits}/32 × ≥${rowEnd}] for ${bits}-bit codes`,
    );
  const zw = (total * bits) / 32;
  if (t.scales.length !== nG * total)
    throw new Error(`${name}: scales has ${t.scales.length} entries, expected [${nG} × ${total}]`);
  if (!Number.isInteger(zw) || t.qzeros.length !== nG * zw)
    throw new Error(`${name}: qzeros has ${t.qzeros.length} words, expected [${nG} × ${total}·${bits}/32]`);
  if (t.gIdx !== undefined && t.gIdx.length !== K)
    throw new Error(`${name}: g_idx has ${t.gIdx.length} entries, expected inFeatures = ${K}`);
  const v1 = config.checkpointFormat === "gptq";
  const codes = new Uint8Array(N * K);
  const scales = new Float32Array(N * nG);
  const zeros = new Float32Array(N * nG);
  const half = 1 << (bits - 1);
  let allHalf = true;
  for (let i = 0; i < N; i++) {
    const hn = rowStart + i;
    const n = spec.rowOrder ? spec.rowOrder[i] : i;
    for (let k = 0; k < K; k++) {
      codes[n * K + k] = getCode(t.qweight, hn, total, k * bits, bits);
    }
    for (let g = 0; g < nG; g++) {
      scales[n * nG + g] = f16BitsToF32(t.scales[g * total + hn]);
      const stored = getCode(t.qzeros, g * zw, 1, hn * bits, bits);
      const z = v1 ? stored + 1 : stored;
      if (z > mask)
        throw new Error(
          `${name}: row ${hn}, group ${g} stores zero ${stored}, i.e. zero point ${z} under checkpoint_format "gptq" (zero − 1 storage): outside [0, ${mask}], which no int21 format holds (AutoGPTQ's v1 packing of a zero of 0 overflows this way)`,
        );
      zeros[n * nG + g] = z;
      if (z !== half) allHalf = false;
    }
  }
  let gIdx: Int32Array | undefined;
  if (t.gIdx !== undefined) {
    for (let k = 0; k < K; k++) {
      if (t.gIdx[k] !== Math.floor(k / G)) {
        gIdx = Int32Array.from(t.gIdx);
        break;
      }
    }
  }
  const format = formatName({
    bits: bits as FormatBits,
    groupSize: config.groupSize,
    symmetric: config.sym && allHalf,
    scaleDtype: "f16",
  });
  try {
    return createQuantizedLinear({
      format,
      outFeatures: N,
      inFeatures: K,
      qweight: packMatrix(codes, N, K, bits as Bits),
      scales,
      zeros,
      ...(gIdx !== undefined ? { gIdx } : {}),
    });
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message}`);
  }
}

/** The GPTQ `quantization_config` of {@link GptqConfig}, as transformers / optimum / GPTQModel read it. */
export function gptqQuantizationConfig(c: GptqConfig): Record<string, unknown> {
  return {
    quant_method: "gptq",
    bits: c.bits,
    group_size: c.groupSize,
    desc_act: c.descAct,
    sym: c.sym,
    checkpoint_format: c.checkpointFormat,
    pack_dtype: "int32",
    lm_head: c.lmHead === true,
    static_groups: false,
    true_sequential: true,
  };
}

/**
 * `quantization_config` fields that do not change how the stored tensors decode (calibration settings,
 * kernel choices, bookkeeping); any other field is refused by name.
 */
const INERT_FIELDS = new Set([
  "damp_percent",
  "damp_auto_increment",
  "true_sequential",
  "static_groups",
  "model_name_or_path",
  "model_file_base_name",
  "use_exllama",
  "exllama_config",
  "use_cuda_fp16",
  "disable_exllama",
  "cache_block_outputs",
  "batch_size",
  "pad_token_id",
  "max_input_length",
  "tokenizer",
  "dataset",
  "meta",
  "backend",
  "use_marlin",
  "is_marlin_format",
  "mse",
  "v2",
  "v2_alpha",
  "act_group_aware",
  "block_name_to_quantize",
  "module_name_preceding_first_block",
  "quant_method",
  "bits",
  "group_size",
  "desc_act",
  "sym",
  "checkpoint_format",
  "format",
  "pack_dtype",
  "lm_head",
  "dynamic",
  "modules_in_block_to_quantize",
]);

/**
 * Parses a `quantization_config` of `quant_method: "gptq"` (`source` names it in errors). Refuses, naming the
 * field: another method, widths other than 2, 3, 4 and 8, a group size int21 has no format for (32, 64, 128, -1), a
 * checkpoint format other than `gptq` / `gptq_v2`, a pack dtype other than int32,
 * per-module `dynamic` overrides, and any field not known to be inert.
 */
export function parseGptqConfig(qc: unknown, source: string): GptqConfig {
  if (qc === null || typeof qc !== "object" || Array.isArray(qc))
    throw new Error(`${source}: quantization_config must be an object, got ${JSON.stringify(qc)}`);
  const o = qc as Record<string, unknown>;
  const where = (f: string) => `${source}: quantization_config.${f}`;
  if (o.quant_method !== "gptq")
    throw new Error(
      `${where("quant_method")} is ${JSON.stringify(o.quant_method)}; int21 reads "gptq" checkpoints (load the float model otherwise)`,
    );
  for (const k of Object.keys(o))
    if (!INERT_FIELDS.has(k)) throw new Error(`${where(k)} is not a field int21 understands`);
  if (typeof o.bits !== "number") throw new Error(`${where("bits")} must be a number`);
  const bits = gptqBits(o.bits, where("bits"));
  const gs = o.group_size ?? 128;
  if (gs !== 32 && gs !== 64 && gs !== 128 && gs !== -1)
    throw new Error(`${where("group_size")} ${JSON.stringify(gs)} has no int21 format (32, 64, 128 or -1)`);
  const bool = (f: string, dflt: boolean): boolean => {
    const v = o[f] ?? dflt;
    if (typeof v !== "boolean")
      throw new Error(`${where(f)} must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  const fmt = o.checkpoint_format ?? o.format ?? "gptq";
  if (fmt !== "gptq" && fmt !== "gptq_v2")
    throw new Error(`${where("checkpoint_format")} ${JSON.stringify(fmt)} is not supported (gptq, gptq_v2)`);
  if (o.pack_dtype !== undefined && o.pack_dtype !== "int32" && o.pack_dtype !== "torch.int32")
    throw new Error(`${where("pack_dtype")} ${JSON.stringify(o.pack_dtype)} is not supported (int32)`);
  const dyn = o.dynamic;
  if (dyn !== undefined && dyn !== null && (typeof dyn !== "object" || Object.keys(dyn).length > 0))
    throw new Error(`${where("dynamic")} sets per-module overrides, which int21 does not read`);
  return {
    bits,
    groupSize: gs,
    descAct: bool("desc_act", false),
    sym: bool("sym", true),
    checkpointFormat: fmt,
    lmHead: bool("lm_head", false),
  };
}

/** One part of a fused projection waiting for the others. */
interface FusedPiece {
  name: string;
  q: QuantizedLinear;
  /** `rowOrder[hfRow]` = row of `q` (q/k permutation), or the same order. */
  rowOrder: Int32Array | undefined;
  rowStart: number;
}

/**
 * The parts of a fused tensor as one record of `rows` rows in Hugging Face order: one format and one act-order
 * `g_idx` for all (a GPTQ tensor has one), else throws naming the part.
 */
function fuseRows(parts: FusedPiece[], rows: number, where: string): QuantizedLinear {
  const first = parts[0].q;
  const K = first.inFeatures;
  const f = getFormat(first.format);
  const nG = groupCount(f, K);
  const codes = new Uint8Array(rows * K);
  const scales = new Float32Array(rows * nG);
  const zeros = new Float32Array(rows * nG);
  const row = new Uint8Array(K);
  for (const p of parts) {
    if (p.q.format.name !== f.name || p.q.inFeatures !== K)
      throw new Error(
        `${where}: ${p.name} is ${p.q.format.name}, ${parts[0].name} is ${f.name}; a fused GPTQ tensor has one format`,
      );
    const a = p.q.gIdx;
    const b = first.gIdx;
    if ((a === undefined) !== (b === undefined) || (a && b && a.some((g, k) => g !== b[k])))
      throw new Error(
        `${where}: ${p.name} and ${parts[0].name} have different act-order g_idx; a fused GPTQ tensor has one`,
      );
    for (let i = 0; i < p.q.outFeatures; i++) {
      const src = p.rowOrder ? p.rowOrder[i] : i;
      const dst = p.rowStart + i;
      unpackMatrixRow(p.q.qweight, src, row);
      codes.set(row, dst * K);
      scales.set(p.q.scales.subarray(src * nG, (src + 1) * nG), dst * nG);
      zeros.set(p.q.zeros.subarray(src * nG, (src + 1) * nG), dst * nG);
    }
  }
  return createQuantizedLinear({
    format: f,
    outFeatures: rows,
    inFeatures: K,
    qweight: packMatrix(codes, rows, K, f.bits),
    scales,
    zeros,
    ...(first.gIdx ? { gIdx: first.gIdx } : {}),
  });
}

/**
 * The {@link HfLinearWriter} of the GPTQ export: every layer projection must be an int21 affine record of one
 * bit width (2, 3, 4 or 8) and group size with f16 scales; a float or LoRA-wrapped projection is refused (write
 * the adapters as PEFT folders beside it). Phi-3's q/k/v and gate/up parts are written as one fused tensor (one
 * format and act-order `g_idx` for the parts). The classifier stays float (`lm_head: false`; a packed one is written
 * dequantized) unless `lmHead`: then an unshared classifier packed in the same bit width and group size is GPTQ
 * too (`lm_head: true`, GPTQModel's quantized head). `config()` gives the `quantization_config`: `sym` when every record is symmetric, `desc_act`
 * when any has act-order `g_idx`.
 */
export function gptqLinearWriter(
  opts: { checkpointFormat?: GptqCheckpointFormat; lmHead?: boolean } = {},
): HfLinearWriter {
  const checkpointFormat = opts.checkpointFormat ?? "gptq";
  if (checkpointFormat !== "gptq" && checkpointFormat !== "gptq_v2")
    throw new Error(`exportGptqHf: checkpointFormat ${String(checkpointFormat)} is not gptq or gptq_v2`);
  let first: { name: string; bits: number; groupSize: number } | undefined;
  let sym = true;
  let descAct = false;
  let lmHead = false;
  const fused = new Map<string, FusedPiece[]>();
  return {
    tensors(name: string, module: string, l: Linear, permuteHeads: number, part?: HfFusedPart) {
      if (name === "classifier") {
        if (opts.lmHead !== true) return undefined;
        const c = isLoRALinear(l) ? undefined : linearParts(l, name);
        if (c?.kind !== "quant")
          throw new Error(
            `exportGptqHf: lmHead is set but the classifier is ${c === undefined ? "LoRA-wrapped" : "float"}; quantize it (quantizeModel's classifier option) or drop lmHead`,
          );
        lmHead = true;
      }
      if (isLoRALinear(l))
        throw new Error(
          `exportGptqHf: ${name} is LoRA-wrapped; folding an adapter into GPTQ codes would re-quantize it. Export the base and write the adapter as a PEFT folder (int21 export hf --gptq does)`,
        );
      const p = linearParts(l, name);
      if (p.kind !== "quant")
        throw new Error(
          `exportGptqHf: ${name} is a float projection; a GPTQ checkpoint needs every layer projection packed (int21 quantize --format int4-g128-asym-f16 first)`,
        );
      const f = getFormat(p.q.format);
      gptqBits(f.bits, `exportGptqHf: ${name} (${f.name})`);
      if (first === undefined) first = { name, bits: f.bits, groupSize: f.groupSize };
      else if (first.bits !== f.bits || first.groupSize !== f.groupSize)
        throw new Error(
          `exportGptqHf: ${name} is ${f.name} but ${first.name} is ${f.bits}-bit with group ${first.groupSize}; one GPTQ config holds one bit width and group size`,
        );
      if (!f.symmetric) sym = false;
      if (p.q.gIdx !== undefined) descAct = true;
      let rowOrder = hfRowOrder(p.q.outFeatures, permuteHeads);
      let q = p.q;
      if (part !== undefined) {
        // Phi-3: gather q|k|v (gate|up) in Hugging Face row order, write the fused record with the last part
        const got = fused.get(module) ?? [];
        got.push({ name, q, rowOrder, rowStart: part.rowStart });
        fused.set(module, got);
        if (got.reduce((a, g) => a + g.q.outFeatures, 0) < part.rows) return {};
        fused.delete(module);
        q = fuseRows(got, part.rows, `exportGptqHf: ${module}`);
        rowOrder = undefined;
      }
      const t = packGptqLinear(q, `exportGptqHf: ${name}`, {
        checkpointFormat,
        ...(rowOrder ? { rowOrder } : {}),
      });
      const N = q.outFeatures;
      const K = q.inFeatures;
      const nG = t.scales.length / N;
      const out: Record<string, SafetensorsWriteTensor> = {
        [`${module}.qweight`]: { dtype: "I32", shape: [(K * f.bits) / 32, N], data: t.qweight },
        [`${module}.qzeros`]: { dtype: "I32", shape: [nG, (N * f.bits) / 32], data: t.qzeros },
        [`${module}.scales`]: { dtype: "F16", shape: [nG, N], data: t.scales },
        [`${module}.g_idx`]: { dtype: "I32", shape: [K], data: t.gIdx },
      };
      return out;
    },
    config() {
      if (first === undefined) throw new Error("exportGptqHf: the model has no layer projections");
      return {
        quantization_config: gptqQuantizationConfig({
          bits: first.bits as 2 | 3 | 4 | 8,
          groupSize: first.groupSize as GptqConfig["groupSize"],
          descAct,
          sym,
          checkpointFormat,
          lmHead,
        }),
      };
    },
  };
}

/**
 * Writes `weights` as a GPTQ Hugging Face folder that transformers (with optimum / GPTQModel) loads without int21:
 * `config.json` with a `gptq` `quantization_config` and safetensors holding, per layer projection, AutoGPTQ's
 * `qweight` / `qzeros` / `scales` / `g_idx` ({@link packGptqLinear}; q/k rows in Hugging Face's order), every
 * other tensor float (`opts.dtype`, default F32). Codes and scales are int21's own, bit for bit:
 * {@link loadGptqHf} reads the folder back to the same records. See {@link gptqLinearWriter} for what is refused.
 */
export async function exportGptqHf(
  dir: string,
  weights: LlamaWeights,
  opts: GptqExportOptions = {},
): Promise<HfExportReport> {
  let checkpointFormat = opts.checkpointFormat ?? "auto";
  if (checkpointFormat === "auto")
    checkpointFormat = gptqZeroGroups(weights, opts.lmHead === true) > 0 ? "gptq_v2" : "gptq";
  return exportHf(dir, weights, {
    ...(opts.dtype !== undefined ? { dtype: opts.dtype } : {}),
    ...(opts.maxShardBytes !== undefined ? { maxShardBytes: opts.maxShardBytes } : {}),
    mergeLoRA: false,
    linearWriter: gptqLinearWriter({ checkpointFormat, ...(opts.lmHead ? { lmHead: true } : {}) }),
  });
}

/**
 * How many groups of the packed layer projections of `weights` (and of the classifier with `lmHead`) have a zero
 * point of 0 — what AutoGPTQ's
 * `checkpoint_format: "gptq"` (zero − 1 storage) cannot hold, so `exportGptqHf`'s `auto` writes `gptq_v2`
 * (asymmetric round-to-nearest gives a group zero 0 when its values are all ≥ −scale/2).
 */
export function gptqZeroGroups(weights: LlamaWeights, lmHead = false): number {
  let n = 0;
  for (const [name, l] of llamaModules(weights)) {
    if ((name === "lm_head" && !lmHead) || isLoRALinear(l)) continue;
    const p = linearParts(l, name);
    if (p.kind !== "quant") continue;
    for (const z of p.q.zeros) if (z === 0) n++;
  }
  return n;
}

/** Whether a parsed config.json object describes a GPTQ checkpoint (`quantization_config.quant_method` "gptq"). */
export function isGptqConfig(json: unknown): boolean {
  const qc = (json as { quantization_config?: { quant_method?: unknown } } | null)?.quantization_config;
  return qc !== null && typeof qc === "object" && qc.quant_method === "gptq";
}

interface RawSource {
  names(): string[];
  info(name: string): { dtype: string; shape: readonly number[] } | undefined;
  readRaw(name: string): Promise<RawTensor>;
  readF32(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

async function openRawSource(dir: string, fileBase = "model"): Promise<RawSource> {
  const { access } = await import("node:fs/promises");
  const { join } = await import("node:path");
  const exists = async (f: string) =>
    access(join(dir, f)).then(
      () => true,
      () => false,
    );
  if (await exists("model.safetensors.index.json")) {
    const idx = await openSafetensorsIndex(dir);
    return {
      names: () => Object.keys(idx.tensors),
      info: (n) => idx.tensors[n],
      readRaw: (n) => idx.readRaw(n),
      readF32: (n) => idx.readF32(n),
      close: () => idx.close(),
    };
  }
  const file = (await exists(`${fileBase}.safetensors`)) ? `${fileBase}.safetensors` : "model.safetensors";
  if (!(await exists(file)))
    throw new Error(`${dir}: neither ${fileBase}.safetensors nor model.safetensors.index.json`);
  const f = await openSafetensors(join(dir, file));
  return {
    names: () => [...f.names],
    info: (n) => (Object.hasOwn(f.tensors, n) ? f.tensors[n] : undefined),
    readRaw: (n) => f.readRaw(n),
    readF32: (n) => f.readF32(n),
    close: () => f.close(),
  };
}

/**
 * Loads a GPTQ Hugging Face folder (`quantization_config.quant_method: "gptq"`, AutoGPTQ / GPTQModel layout,
 * `checkpoint_format` gptq or gptq_v2; one file or shards with an index; older AutoGPTQ folders with a
 * `quantize_config.json` instead, whose `model_file_base_name` names the weights file) into int21 weights whose layer
 * projections are packed records ({@link unpackGptqLinear}: the stored codes, f16 scales, zeros and act-order
 * `g_idx`, so they decode to exactly the values AutoGPTQ's `scale · (q − zero)` gives); the other tensors are
 * read as {@link loadHf} reads them. Phi-3's fused `qkv_proj` / `gate_up_proj` are split by rows. Throws naming
 * the file and tensor for a missing, misshapen or mistyped tensor and for any tensor the model does not use.
 */
export async function loadGptqHf(dir: string, opts: LoadOptions = {}): Promise<LlamaWeights> {
  const { readFile } = await import("node:fs/promises");
  const { join } = await import("node:path");
  const cfgPath = join(dir, "config.json");
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await readFile(cfgPath, "utf8"));
  } catch (e) {
    throw new Error(`${cfgPath}: cannot read the config (${(e as Error).message})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json))
    throw new Error(`${cfgPath}: must be a JSON object`);
  // Older AutoGPTQ folders keep the settings in quantize_config.json (without quant_method) beside config.json.
  let qc = json.quantization_config;
  let qcPath = cfgPath;
  let fileBase = "model";
  if (qc === undefined || qc === null) {
    qcPath = join(dir, "quantize_config.json");
    let legacy: Record<string, unknown>;
    try {
      legacy = JSON.parse(await readFile(qcPath, "utf8"));
    } catch (e) {
      throw new Error(
        `${dir}: config.json has no quantization_config and ${qcPath} cannot be read (${(e as Error).message})`,
      );
    }
    if (legacy === null || typeof legacy !== "object" || Array.isArray(legacy))
      throw new Error(`${qcPath}: must be a JSON object`);
    const { model_file_base_name: base, ...fields } = legacy;
    if (typeof base === "string" && base !== "") fileBase = base;
    qc = { quant_method: "gptq", ...fields };
  }
  const gc = parseGptqConfig(qc, qcPath);
  const { quantization_config: _qc, ...rest } = json;
  const config = hfConfigToLlama(rest, cfgPath);
  if (opts.quantize !== undefined)
    throw new Error(`${dir}: a GPTQ checkpoint is already quantized; load it without a quantize option`);
  const src = await openRawSource(dir, fileBase);
  try {
    const asm = new WeightAssembler(config, dir, opts);
    const used = new Set<string>();
    const raw = async (t: string, dtype: string): Promise<RawTensor | undefined> => {
      const info = src.info(t);
      if (info === undefined) return undefined;
      if (info.dtype !== dtype)
        throw new Error(`${dir}: tensor ${t} has dtype ${info.dtype}, GPTQ stores ${dtype}`);
      used.add(t);
      return src.readRaw(t);
    };
    const need = async (t: string, dtype: string, what: string): Promise<RawTensor> => {
      const r = await raw(t, dtype);
      if (r === undefined) throw new Error(`${dir}: missing tensor ${t} (${what})`);
      return r;
    };
    const hs = headSize(config);
    const offset = config.normOffset ?? 0;
    for (const spec of llamaTensorSpecs(config)) {
      const loc = hfTensorLocation(spec.name, config);
      const field = spec.name.slice(spec.name.lastIndexOf(".") + 1);
      const gptqHead =
        spec.name === "classifier" && gc.lmHead === true && src.info("lm_head.qweight") !== undefined;
      if (WeightAssembler.isLinear(spec.name) && (spec.name !== "classifier" || gptqHead)) {
        const m = loc.tensor.replace(/\.weight$/, "");
        if (src.info(loc.tensor) !== undefined)
          throw new Error(
            `${dir}: ${loc.tensor} is float but quantization_config says every layer projection is GPTQ (mixed checkpoints are not read)`,
          );
        const [N, K] = spec.shape;
        const qweight = await need(`${m}.qweight`, "I32", `${spec.name} [${N}×${K}]`);
        if (qweight.shape.length !== 2 || qweight.shape[0] * 32 !== K * gc.bits)
          throw new Error(
            `${dir}: tensor ${m}.qweight has shape [${qweight.shape.join("×")}], ${spec.name} needs [${(K * gc.bits) / 32}×…] (${gc.bits}-bit, K ${K})`,
          );
        const qzeros = await need(`${m}.qzeros`, "I32", spec.name);
        const scales = await need(`${m}.scales`, "F16", spec.name);
        const gIdx = await raw(`${m}.g_idx`, "I32");
        const order = hfRowOrder(N, field === "wq" || field === "wk" ? N / hs : 0);
        const q = unpackGptqLinear(
          {
            qweight: qweight.data as Int32Array,
            qzeros: qzeros.data as Int32Array,
            scales: scales.data as Uint16Array,
            ...(gIdx !== undefined ? { gIdx: gIdx.data as Int32Array } : {}),
          },
          {
            name: `${dir}: ${m}`,
            outFeatures: N,
            inFeatures: K,
            config: gc,
            ...(order ? { rowOrder: order } : {}),
            ...(loc.rowStart !== undefined ? { rowStart: loc.rowStart, rowEnd: loc.rowEnd } : {}),
          },
        );
        asm.putQuantized(spec.name, q);
        continue;
      }
      const info = src.info(loc.tensor);
      if (info === undefined) throw new Error(`${dir}: missing tensor ${loc.tensor} (${spec.name})`);
      if (info.dtype !== "F32" && info.dtype !== "F16" && info.dtype !== "BF16")
        throw new Error(`${dir}: tensor ${loc.tensor} has dtype ${info.dtype}; supported: F32, F16, BF16`);
      if (info.shape.length !== spec.shape.length || info.shape.some((d, i) => d !== spec.shape[i]))
        throw new Error(
          `${dir}: tensor ${loc.tensor} has shape [${info.shape.join("×")}], the config needs [${spec.shape.join("×")}]`,
        );
      used.add(loc.tensor);
      let data = await src.readF32(loc.tensor);
      if (field === "bq" || field === "bk" || field === "qNorm" || field === "kNorm")
        data = unpermuteHfRows(data, data.length / hs, data.length, 1);
      if (offset !== 0 && /^(finalNorm|attnNorm|ffnNorm|postAttnNorm|postFfnNorm|qNorm|kNorm)$/.test(field))
        for (let i = 0; i < data.length; i++) data[i] += offset;
      asm.put(spec.name, data, dir);
    }
    for (const t of src.names()) {
      if (used.has(t) || t.endsWith(".rotary_emb.inv_freq")) continue;
      if (t === "lm_head.weight" && config.sharedClassifier) continue;
      // AutoGPTQ's QuantLinear keeps a bias buffer even where the float layer had none; all-zero ones are inert.
      if (t.endsWith("_proj.bias") && (await src.readF32(t)).every((v) => v === 0)) continue;
      throw new Error(`${dir}: unexpected tensor ${t} for a GPTQ ${config.family ?? "llama"} model`);
    }
    return asm.finish();
  } finally {
    await src.close();
  }
}
