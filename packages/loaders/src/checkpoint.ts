import {
  type FileProblem,
  nonFiniteProblem,
  type SafetensorsInfo,
  type SafetensorsTypedArray,
  type SafetensorsWriteTensor,
  bf16ToF32,
  f16ToF32,
  openSafetensors,
  parseSafetensors,
  serializeSafetensors,
  writeSafetensors,
} from "@int21/io";
import { packedMatrixView } from "@int21/bitpack";
import {
  type Linear,
  type QuantizedLinear,
  createQuantizedLinear,
  getFormat,
  groupCount,
  isBlockFormat,
  roundToF16,
} from "@int21/quant-kernels";
import { checkConfigObject, checkTensorCount, problemOf } from "./validate-config";
import {
  type LlamaConfig,
  validateConfig,
  checkTokenEmbedding,
  isPackedEmbedding,
  type LoadOptions,
  WeightAssembler,
  assertFinite,
  llamaTensorSpecs,
  numel,
  linearParts,
  type LlamaWeights,
} from "@int21/model-llama";

/** Bytes of one row of `K` weights in a ggml block format. */
function blockRowBytes(f: { block: { blockSize: number; blockBytes: number } }, K: number): number {
  return (K / f.block.blockSize) * f.block.blockBytes;
}

/** `__metadata__.format` of an int21 checkpoint. */
export const INT21_CHECKPOINT_FORMAT = "int21-llama";

/** Version of the checkpoint layout written by this package (bumped on incompatible changes). */
export const INT21_CHECKPOINT_VERSION = 1;

/**
 * How an adapter tensor is stored on disk: `F32` (default), `F16` / `BF16` (rounded to nearest even), or
 * `I8`: a 2-D tensor as int8 codes with an F16 absmax/127 scale per row (`adapter.<name>.row_scale`, LQER-style);
 * see {@link quantizeInt8Rows}. Loading gives back float32 values; for values already rounded to what the
 * storage holds (lrec's `roundAdapter`), exactly the values that were saved.
 */
export type AdapterStorage = "F32" | "F16" | "BF16" | "I8";

/** f16's smallest normal number, the least int8 row scale (see {@link quantizeInt8Rows}). */
const F16_MIN_NORMAL = 2 ** -14;

/**
 * Symmetric int8 per row of `[rows × cols]` `data`: each row's scale is its absmax / 127 rounded to f16
 * (0 for an all-zero row), but never below f16's smallest normal number 2^-14 (a row whose absmax is under
 * 127·2^-14 ≈ 0.0078 takes that step: f16's subnormal scales are too coarse for the largest code to stay
 * 127, and then a second rounding picks another scale), its codes `round(x / scale)` clamped to ±127 (a row
 * whose codes all round to 0 stores scale 0).
 * {@link dequantizeInt8Rows} inverts it; quantizing the dequantized values again gives the same codes and
 * scales (so a rounded adapter saves as exactly what was evaluated). Throws (naming `what`) on a non-finite
 * value or a scale past the f16 range.
 */
export function quantizeInt8Rows(
  data: Float32Array,
  rows: number,
  cols: number,
  what = "tensor",
): { codes: Int8Array; scales: Float32Array } {
  if (data.length !== rows * cols)
    throw new Error(`${what}: ${data.length} values, expected ${rows}×${cols} for int8 rows`);
  const codes = new Int8Array(data.length);
  const scales = new Float32Array(rows);
  for (let i = 0; i < rows; i++) {
    const o = i * cols;
    let mx = 0;
    for (let j = 0; j < cols; j++) {
      const v = data[o + j];
      if (!Number.isFinite(v)) throw new Error(`${what}: non-finite value ${v} at row ${i}, column ${j}`);
      mx = Math.max(mx, Math.abs(v));
    }
    const s = mx === 0 ? 0 : Math.max(roundToF16(mx / 127), F16_MIN_NORMAL);
    if (!Number.isFinite(s))
      throw new Error(`${what}: row ${i}'s absmax ${mx} is past the f16 range of an int8 row scale`);
    let any = false;
    if (s > 0)
      for (let j = 0; j < cols; j++) {
        const c = Math.max(-127, Math.min(127, Math.round(data[o + j] / s)));
        codes[o + j] = c;
        if (c !== 0) any = true;
      }
    // a row whose codes are all 0 stores scale 0, as an all-zero row does (what it dequantizes to)
    scales[i] = any ? s : 0;
  }
  return { codes, scales };
}

/** The float32 values of int8 rows: `codes[i, j] · scales[i]` (the inverse of {@link quantizeInt8Rows}). */
export function dequantizeInt8Rows(codes: Int8Array, scales: Float32Array, cols: number): Float32Array {
  if (codes.length !== scales.length * cols)
    throw new Error(`int8 rows: ${codes.length} codes for ${scales.length} rows of ${cols}`);
  const out = new Float32Array(codes.length);
  for (let i = 0; i < scales.length; i++)
    for (let j = 0; j < cols; j++) out[i * cols + j] = codes[i * cols + j] * scales[i];
  return out;
}

/** Suffix of the F16 per-row scale tensor of an `I8` adapter tensor. */
const ROW_SCALE = ".row_scale";

/**
 * Extra float tensors stored beside the model, opaque to this package (the lora package stores its
 * adapters here): tensors are written as `adapter.<name>` (F32 unless `storage` says otherwise; I8 adds
 * `adapter.<name>.row_scale`) and `meta` as a JSON string.
 */
export interface CheckpointAdapters {
  tensors: Record<string, { shape: number[]; data: Float32Array; storage?: AdapterStorage }>;
  /** Any JSON-serialisable description (ranks, alpha, target modules…); round-trips through JSON. */
  meta?: unknown;
}

/** What {@link loadInt21Checkpoint} returns. */
export interface Int21Checkpoint {
  weights: LlamaWeights;
  /** Present when the checkpoint was saved with adapters. */
  adapters?: CheckpointAdapters;
}

/** How each projection is stored, kept in `__metadata__.linears`. */
type LinearRecord =
  | { kind: "float" }
  | { kind: "quant"; format: string; formatId: number; actOrder: boolean };

/**
 * Builds the safetensors tensors and metadata of a checkpoint.
 *
 * Layout (all little-endian):
 * ```
 * tokenEmbedding, finalNorm, layers.{i}.attnNorm/ffnNorm           F32
 * tokenEmbedding.qweight/.scales/.zeros/.g_idx          a packed token embedding, stored like a
 *                                                       packed projection (instead of F32 tokenEmbedding)
 * <linear>.weight                     F32 [N, K]            float projection
 * <linear>.qweight                    U32 [N, wordsPerRow]  bitpack rows of codes (packed along K); for a ggml
 *                                                          block format (q4_k, …) the row's ggml blocks, padded
 *                                                          to whole words, and no scales / zeros tensors
 * <linear>.scales / .zeros            F16|F32 [N, nGroups]  per format.scaleDtype (zeros absent if symmetric)
 * <linear>.g_idx                      I32 [K]               act-order group of each input column
 * adapter.<name>                      F32|F16|BF16|I8       opaque adapter tensors (the entry's `storage`)
 * adapter.<name>.row_scale            F16 [rows]            the per-row scales of an I8 adapter tensor
 * __metadata__: format "int21-llama", int21_version, config (JSON LlamaConfig),
 *               linears (JSON {name: {kind, format, formatId, actOrder}}), roles (JSON {tensor: role}),
 *               adapters (JSON meta, when adapters are given)
 * ```
 * `<linear>` is `layers.{i}.wq` … `layers.{i}.w3`, and `classifier` when it is not shared. A packed
 * token embedding has a `linears.tokenEmbedding` record of kind `quant`; a float one has none (so
 * checkpoints written before packed embeddings load unchanged).
 */
export function checkpointTensors(
  weights: LlamaWeights,
  adapters?: CheckpointAdapters,
): { tensors: Record<string, SafetensorsWriteTensor>; metadata: Record<string, string> } {
  const config = validateConfig(weights.config, "checkpoint config");
  const tensors: Record<string, SafetensorsWriteTensor> = {};
  const roles: Record<string, string> = {};
  const linears: Record<string, LinearRecord> = {};
  const f32 = (name: string, shape: number[], data: Float32Array, role: string) => {
    if (data.length !== numel(shape))
      throw new Error(`checkpoint: tensor ${name} has ${data.length} values, expected [${shape.join("×")}]`);
    tensors[name] = { dtype: "F32", shape, data };
    roles[name] = role;
  };
  const putPacked = (name: string, q: QuantizedLinear) => {
    const f = getFormat(q.format);
    const [N, K] = [q.outFeatures, q.inFeatures];
    if (isBlockFormat(f)) {
      // a ggml block format: the words ARE the blocks (scales and minimums inside); nothing else to store
      tensors[`${name}.qweight`] = { dtype: "U32", shape: [N, q.qweight.wordsPerRow], data: q.qweight.words };
      roles[`${name}.qweight`] = "qweight";
      linears[name] = { kind: "quant", format: f.name, formatId: f.id, actOrder: false };
      return;
    }
    const nG = groupCount(f, K);
    const pdt = f.scaleDtype === "f16" ? "F16" : "F32";
    tensors[`${name}.qweight`] = { dtype: "U32", shape: [N, q.qweight.wordsPerRow], data: q.qweight.words };
    roles[`${name}.qweight`] = "qweight";
    tensors[`${name}.scales`] = { dtype: pdt, shape: [N, nG], data: q.scales };
    roles[`${name}.scales`] = "scales";
    if (!f.symmetric) {
      tensors[`${name}.zeros`] = { dtype: pdt, shape: [N, nG], data: q.zeros };
      roles[`${name}.zeros`] = "zeros";
    }
    if (q.gIdx) {
      tensors[`${name}.g_idx`] = { dtype: "I32", shape: [K], data: q.gIdx };
      roles[`${name}.g_idx`] = "g_idx";
    }
    linears[name] = { kind: "quant", format: f.name, formatId: f.id, actOrder: q.gIdx !== undefined };
  };
  const byName = new Map<string, Float32Array | Linear>();
  const emb = weights.tokenEmbedding;
  if (isPackedEmbedding(emb)) {
    checkTokenEmbedding(emb, config, "checkpoint");
    putPacked("tokenEmbedding", emb);
  } else {
    byName.set("tokenEmbedding", emb);
  }
  byName.set("finalNorm", weights.finalNorm);
  if (!config.sharedClassifier) byName.set("classifier", weights.classifier);
  weights.layers.forEach((layer, l) => {
    for (const [k, v] of Object.entries(layer)) byName.set(`layers.${l}.${k}`, v as Float32Array | Linear);
  });
  if (weights.layers.length !== config.nLayers) {
    throw new Error(
      `checkpoint: weights have ${weights.layers.length} layers, config says ${config.nLayers}`,
    );
  }
  for (const spec of llamaTensorSpecs(config)) {
    if (spec.name === "tokenEmbedding" && isPackedEmbedding(emb)) continue;
    const v = byName.get(spec.name);
    if (v === undefined) throw new Error(`checkpoint: weights have no ${spec.name}`);
    if (v instanceof Float32Array) {
      f32(spec.name, spec.shape, v, spec.name === "tokenEmbedding" ? "embedding" : "norm");
      continue;
    }
    const [N, K] = spec.shape;
    if (v.outFeatures !== N || v.inFeatures !== K) {
      throw new Error(`checkpoint: ${spec.name} is ${v.outFeatures}×${v.inFeatures}, expected ${N}×${K}`);
    }
    const parts = linearParts(v, spec.name);
    if (parts.kind === "float") {
      f32(`${spec.name}.weight`, [N, K], parts.weight, "float-weight");
      linears[spec.name] = { kind: "float" };
      continue;
    }
    putPacked(spec.name, parts.q);
  }
  const metadata: Record<string, string> = {
    format: INT21_CHECKPOINT_FORMAT,
    int21_version: String(INT21_CHECKPOINT_VERSION),
    config: JSON.stringify(config),
    linears: JSON.stringify(linears),
  };
  if (adapters) {
    for (const [name, t] of Object.entries(adapters.tensors)) {
      if (!(t.data instanceof Float32Array))
        throw new Error(`checkpoint: adapter tensor ${name} must be a Float32Array`);
      const storage = t.storage ?? "F32";
      const key = `adapter.${name}`;
      if (storage === "F32") f32(key, t.shape, t.data, "adapter");
      else if (storage === "F16" || storage === "BF16") {
        if (t.data.length !== numel(t.shape))
          throw new Error(
            `checkpoint: tensor ${key} has ${t.data.length} values, expected [${t.shape.join("×")}]`,
          );
        tensors[key] = { dtype: storage, shape: t.shape, data: t.data };
        roles[key] = "adapter";
      } else if (storage === "I8") {
        if (t.shape.length !== 2)
          throw new Error(
            `checkpoint: adapter tensor ${name} stored I8 must be 2-D, got [${t.shape.join("×")}]`,
          );
        const { codes, scales } = quantizeInt8Rows(
          t.data,
          t.shape[0],
          t.shape[1],
          `checkpoint: adapter tensor ${name}`,
        );
        tensors[key] = { dtype: "I8", shape: t.shape, data: codes };
        roles[key] = "adapter";
        tensors[key + ROW_SCALE] = { dtype: "F16", shape: [t.shape[0]], data: scales };
        roles[key + ROW_SCALE] = "adapter-row-scale";
      } else
        throw new Error(
          `checkpoint: adapter tensor ${name}: storage must be F32, F16, BF16 or I8, got ${JSON.stringify(storage)}`,
        );
    }
    metadata.adapters = JSON.stringify(adapters.meta ?? null);
  }
  metadata.roles = JSON.stringify(roles);
  return { tensors, metadata };
}

/**
 * Saves a (packed or float) model, plus optional adapters, as one safetensors file that
 * {@link loadInt21Checkpoint} reloads bit for bit. Written under a temporary name and renamed into
 * place, so a failed save never leaves a half-written checkpoint. Layout: see {@link checkpointTensors}.
 */
export async function saveInt21Checkpoint(
  path: string,
  weights: LlamaWeights,
  opts: { adapters?: CheckpointAdapters } = {},
): Promise<void> {
  const { tensors, metadata } = checkpointTensors(weights, opts.adapters);
  await writeSafetensors(path, tensors, metadata);
}

/** {@link saveInt21Checkpoint} into bytes in memory (browsers). */
export function serializeInt21Checkpoint(
  weights: LlamaWeights,
  opts: { adapters?: CheckpointAdapters } = {},
): Uint8Array {
  const { tensors, metadata } = checkpointTensors(weights, opts.adapters);
  return serializeSafetensors(tensors, metadata);
}

/** A reader both the file and the in-memory paths provide. */
interface RawReader {
  info: SafetensorsInfo;
  readRaw(name: string): Promise<SafetensorsTypedArray>;
}

/**
 * Loads an int21 checkpoint written by {@link saveInt21Checkpoint}. The metadata, every tensor's name,
 * dtype and shape are checked against the stored config before any data is read; packed records are
 * re-validated by `createQuantizedLinear`. Throws an Error naming the file and tensor.
 * `opts.quantize` is not allowed (the checkpoint fixes each projection's format).
 */
export async function loadInt21Checkpoint(path: string, opts: LoadOptions = {}): Promise<Int21Checkpoint> {
  const f = await openSafetensors(path);
  try {
    return await loadFrom({ info: f, readRaw: async (n) => (await f.readRaw(n)).data }, path, opts);
  } finally {
    await f.close();
  }
}

/** {@link loadInt21Checkpoint} from bytes in memory. */
export async function loadInt21CheckpointBytes(
  bytes: Uint8Array,
  opts: LoadOptions & { name?: string } = {},
): Promise<Int21Checkpoint> {
  const name = opts.name ?? "<int21 checkpoint bytes>";
  const f = parseSafetensors(bytes, name);
  return loadFrom({ info: f, readRaw: async (n) => f.readRaw(n).data }, name, opts);
}

function parseMeta<T>(meta: Readonly<Record<string, string>>, key: string, file: string): T {
  const text = meta[key];
  if (text === undefined) throw new Error(`${file}: int21 checkpoint metadata has no "${key}"`);
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(
      `${file}: int21 checkpoint metadata "${key}" is not valid JSON (${(e as Error).message})`,
    );
  }
}

/** One model tensor of a validated checkpoint, and how its projection is stored. */
interface PlanEntry {
  name: string;
  shape: number[];
  rec?: LinearRecord;
}

/** What {@link planCheckpoint} finds: the config, the read plan, and the adapter tensors. */
interface CheckpointPlan {
  config: LlamaConfig;
  plan: PlanEntry[];
  adapterNames: string[];
}

function checkLinearRecord(rec: unknown, name: string, file: string): LinearRecord {
  const where = `${file}: metadata "linears" entry for ${name}`;
  if (rec === undefined) throw new Error(`${file}: metadata "linears" has no entry for ${name}`);
  if (rec === null || typeof rec !== "object" || Array.isArray(rec))
    throw new Error(`${where} must be an object, got ${JSON.stringify(rec)}`);
  const r = rec as Record<string, unknown>;
  if (r.kind === "float") return { kind: "float" };
  if (r.kind !== "quant")
    throw new Error(`${file}: ${name}: unknown linear kind ${JSON.stringify(r.kind) ?? "(none)"}`);
  if (typeof r.format !== "string") throw new Error(`${where}: format must be a string`);
  if (typeof r.formatId !== "number") throw new Error(`${where}: formatId must be a number`);
  if (typeof r.actOrder !== "boolean") throw new Error(`${where}: actOrder must be true or false`);
  return { kind: "quant", format: r.format, formatId: r.formatId, actOrder: r.actOrder };
}

/**
 * Validates an int21 checkpoint's header before any data is read: format and version, the config (field types
 * and sanity), enough tensors for the claimed layers, each projection's record, and every tensor's name, dtype
 * and shape against the config. Throws an Error naming the file and the field or tensor.
 */
function planCheckpoint(info: SafetensorsInfo, file: string): CheckpointPlan {
  const meta = info.metadata;
  if (meta.format !== INT21_CHECKPOINT_FORMAT) {
    throw new Error(`${file}: not an int21 checkpoint (metadata format is ${JSON.stringify(meta.format)})`);
  }
  if (meta.int21_version !== String(INT21_CHECKPOINT_VERSION)) {
    throw new Error(
      `${file}: int21 checkpoint version ${meta.int21_version} is not supported (expected ${INT21_CHECKPOINT_VERSION})`,
    );
  }
  const config = checkConfigObject(parseMeta<unknown>(meta, "config", file), `${file} (config metadata)`);
  checkTensorCount(config, info.names.length, file);
  const linears = parseMeta<unknown>(meta, "linears", file);
  if (linears === null || typeof linears !== "object" || Array.isArray(linears))
    throw new Error(`${file}: metadata "linears" must be a JSON object`);
  const linearOf = (name: string): unknown =>
    Object.hasOwn(linears, name) ? (linears as Record<string, unknown>)[name] : undefined;
  const tensors = info.tensors;
  const expect = (name: string, dtype: string, shape: number[]) => {
    if (!Object.hasOwn(tensors, name)) throw new Error(`${file}: missing tensor ${name}`);
    const t = tensors[name];
    if (t.dtype !== dtype) throw new Error(`${file}: tensor ${name} has dtype ${t.dtype}, expected ${dtype}`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(
        `${file}: tensor ${name} has shape [${t.shape.join("×")}], expected [${shape.join("×")}]`,
      );
    }
  };

  const used = new Set<string>();
  const plan: PlanEntry[] = [];
  const packedEmbedding = linearOf("tokenEmbedding") !== undefined;
  for (const spec of llamaTensorSpecs(config)) {
    const packable =
      WeightAssembler.isLinear(spec.name) || (spec.name === "tokenEmbedding" && packedEmbedding);
    if (!packable) {
      expect(spec.name, "F32", spec.shape);
      used.add(spec.name);
      plan.push(spec);
      continue;
    }
    const rec = checkLinearRecord(linearOf(spec.name), spec.name, file);
    const [N, K] = spec.shape;
    if (rec.kind === "float" && spec.name === "tokenEmbedding") {
      throw new Error(
        `${file}: metadata "linears" gives tokenEmbedding kind float; a float embedding has no entry`,
      );
    } else if (rec.kind === "float") {
      expect(`${spec.name}.weight`, "F32", [N, K]);
      used.add(`${spec.name}.weight`);
    } else {
      let f: ReturnType<typeof getFormat>;
      try {
        f = getFormat(rec.format);
      } catch (e) {
        throw new Error(`${file}: ${spec.name}: ${(e as Error).message}`);
      }
      if (f.id !== rec.formatId)
        throw new Error(
          `${file}: ${spec.name}: format ${rec.format} has id ${f.id}, metadata says ${rec.formatId}`,
        );
      if (isBlockFormat(f)) {
        if (K % f.block.blockSize !== 0 || rec.actOrder)
          throw new Error(
            `${file}: ${spec.name}: a ${f.name} record needs K (${K}) a multiple of ${f.block.blockSize} and no act-order`,
          );
        expect(`${spec.name}.qweight`, "U32", [N, Math.ceil(blockRowBytes(f, K) / 4)]);
        used.add(`${spec.name}.qweight`);
        plan.push({ ...spec, rec });
        continue;
      }
      const nG = groupCount(f, K);
      const pdt = f.scaleDtype === "f16" ? "F16" : "F32";
      const wpr = Math.ceil((K * f.bits) / 32);
      expect(`${spec.name}.qweight`, "U32", [N, wpr]);
      expect(`${spec.name}.scales`, pdt, [N, nG]);
      used.add(`${spec.name}.qweight`).add(`${spec.name}.scales`);
      if (!f.symmetric) {
        expect(`${spec.name}.zeros`, pdt, [N, nG]);
        used.add(`${spec.name}.zeros`);
      }
      if (rec.actOrder) {
        expect(`${spec.name}.g_idx`, "I32", [K]);
        used.add(`${spec.name}.g_idx`);
      }
    }
    plan.push({ ...spec, rec });
  }
  const adapterNames = info.names.filter((n) => n.startsWith("adapter.") && !n.endsWith(ROW_SCALE));
  for (const n of adapterNames) {
    const dt = tensors[n].dtype;
    if (dt !== "F32" && dt !== "F16" && dt !== "BF16" && dt !== "I8")
      throw new Error(`${file}: adapter tensor ${n} has dtype ${dt}, expected F32, F16, BF16 or I8`);
    if (dt === "I8") {
      const shape = tensors[n].shape;
      if (shape.length !== 2)
        throw new Error(`${file}: I8 adapter tensor ${n} must be 2-D, got [${shape.join("×")}]`);
      expect(n + ROW_SCALE, "F16", [shape[0]]);
      used.add(n + ROW_SCALE);
    }
    used.add(n);
  }
  for (const n of info.names) if (!used.has(n)) throw new Error(`${file}: unexpected tensor ${n}`);
  if (meta.adapters === undefined && adapterNames.length > 0)
    throw new Error(`${file}: adapter tensors present but no "adapters" metadata`);
  if (meta.adapters !== undefined) parseMeta<unknown>(meta, "adapters", file);
  return { config, plan, adapterNames };
}

/** Reads one planned projection as a validated packed record (scales, zeros, codes, g_idx checked). */
async function readPacked(r: RawReader, p: PlanEntry, file: string): Promise<QuantizedLinear> {
  const rec = p.rec as Extract<LinearRecord, { kind: "quant" }>;
  const [N, K] = p.shape;
  const f = getFormat(rec.format);
  const toF32 = (a: SafetensorsTypedArray): Float32Array => {
    if (a instanceof Float32Array) return a;
    if (a instanceof Uint16Array) return f16ToF32(a, new Float32Array(a.length));
    throw new Error(`${file}: internal: unexpected array type`);
  };
  try {
    if (isBlockFormat(f))
      return createQuantizedLinear({
        format: f,
        outFeatures: N,
        inFeatures: K,
        qweight: packedMatrixView(
          (await r.readRaw(`${p.name}.qweight`)) as Uint32Array,
          N,
          blockRowBytes(f, K),
          8,
        ),
        scales: new Float32Array(0),
      });
    return createQuantizedLinear({
      format: f,
      outFeatures: N,
      inFeatures: K,
      qweight: packedMatrixView((await r.readRaw(`${p.name}.qweight`)) as Uint32Array, N, K, f.bits),
      scales: toF32(await r.readRaw(`${p.name}.scales`)),
      zeros: f.symmetric ? undefined : toF32(await r.readRaw(`${p.name}.zeros`)),
      gIdx: rec.actOrder ? ((await r.readRaw(`${p.name}.g_idx`)) as Int32Array) : undefined,
    });
  } catch (e) {
    throw new Error(`${file}: tensor ${p.name}: ${(e as Error).message}`);
  }
}

/**
 * Checks an int21 checkpoint without loading it: the header as {@link loadInt21Checkpoint} validates it, then,
 * unless `scanValues` is false, every tensor read one at a time — float tensors and adapters scanned for NaN and
 * infinities, packed projections re-validated (scales finite and positive, zeros in range, g_idx in range).
 * Returns the problems, each naming the file (empty when none); never throws for a bad file.
 */
export async function validateInt21Checkpoint(
  path: string,
  opts: { scanValues?: boolean } = {},
): Promise<FileProblem[]> {
  let f: Awaited<ReturnType<typeof openSafetensors>>;
  try {
    f = await openSafetensors(path);
  } catch (e) {
    return [problemOf(path, e)];
  }
  try {
    let planned: CheckpointPlan;
    try {
      planned = planCheckpoint(f, path);
    } catch (e) {
      return [problemOf(path, e)];
    }
    const problems: FileProblem[] = [];
    if (opts.scanValues === false) return problems;
    const r: RawReader = { info: f, readRaw: async (n) => (await f.readRaw(n)).data };
    const scanF32 = async (tensor: string, label: string) => {
      const p = nonFiniteProblem((await r.readRaw(tensor)) as Float32Array, path, label);
      if (p) problems.push(p);
    };
    for (const p of planned.plan) {
      try {
        if (!p.rec) await scanF32(p.name, p.name);
        else if (p.rec.kind === "float") await scanF32(`${p.name}.weight`, p.name);
        else await readPacked(r, p, path);
      } catch (e) {
        problems.push(problemOf(path, e, p.name));
      }
    }
    for (const n of planned.adapterNames) {
      try {
        const p = nonFiniteProblem(await readAdapter(r, n), path, n);
        if (p) problems.push(p);
      } catch (e) {
        problems.push(problemOf(path, e, n));
      }
    }
    return problems;
  } finally {
    await f.close();
  }
}

async function loadFrom(r: RawReader, file: string, opts: LoadOptions): Promise<Int21Checkpoint> {
  if (opts.quantize)
    throw new Error(`${file}: loadInt21Checkpoint takes no quantize option (formats are stored)`);
  const meta = r.info.metadata;
  const tensors = r.info.tensors;
  const { config, plan, adapterNames } = planCheckpoint(r.info, file);

  // Then read.
  const asm = new WeightAssembler(config, file, opts);
  for (const p of plan) {
    if (!p.rec) asm.put(p.name, (await r.readRaw(p.name)) as Float32Array);
    else if (p.rec.kind === "float") asm.put(p.name, (await r.readRaw(`${p.name}.weight`)) as Float32Array);
    else asm.putQuantized(p.name, await readPacked(r, p, file));
  }
  const weights = asm.finish();
  if (meta.adapters === undefined) return { weights };
  const adapters: CheckpointAdapters = { tensors: {}, meta: parseMeta<unknown>(meta, "adapters", file) };
  for (const n of adapterNames) {
    const data = await readAdapter(r, n);
    assertFinite(data, file, n);
    const dt = tensors[n].dtype as AdapterStorage;
    adapters.tensors[n.slice("adapter.".length)] = {
      shape: [...tensors[n].shape],
      data,
      ...(dt === "F32" ? {} : { storage: dt }),
    };
  }
  return { weights, adapters };
}

/** An adapter tensor's float32 values, whatever it is stored as (planCheckpoint checked its dtype and scales). */
async function readAdapter(r: RawReader, n: string): Promise<Float32Array> {
  const t = r.info.tensors[n];
  const raw = await r.readRaw(n);
  if (t.dtype === "F32") return raw as Float32Array;
  if (t.dtype === "F16") return f16ToF32(raw as Uint16Array, new Float32Array(raw.length));
  if (t.dtype === "BF16") return bf16ToF32(raw as Uint16Array, new Float32Array(raw.length));
  const s16 = (await r.readRaw(n + ROW_SCALE)) as Uint16Array;
  const scales = f16ToF32(s16, new Float32Array(s16.length));
  return dequantizeInt8Rows(raw as Int8Array, scales, t.shape[1]);
}
