// The format registry: every known format by name and by id, and a constructor by parameters.
import type { QuantFormat } from "../types";
import { type FormatRecord, type FormatSpec, formatId } from "./format";
import { GGML_BLOCK_FORMATS, isBlockFormat } from "./ggml-blocks";
import { INT2_FORMATS } from "./int2";
import { INT3_FORMATS } from "./int3";
import { INT4_FORMATS } from "./int4";
import { INT8_FORMATS } from "./int8";
import { IQ4_NL_FORMAT } from "./iq4-nl";
import { NF4_FORMATS } from "./nf4";

/** Ids below this are reserved for int21's own formats; {@link registerFormat} takes ids from here up. */
export const FIRST_USER_FORMAT_ID = 10_000;

const registered: FormatRecord[] = [];

/**
 * Every registered format, in registration order: the 64 INT formats (INT2/3/4/8 × g32/g64/g128/
 * per-channel × asym/sym × f16/f32), the 6 NF4 formats, `iq4_nl`, the 12 ggml block formats (`q4_0`, `q4_1`,
 * `q5_0`, `q5_1`, `q8_0`, `q2_k` … `q6_k`, `iq4_nl-ggml`, `iq4_xs`), then those added by
 * {@link registerFormat}. A live, read-only view: it grows when a format is registered.
 */
export const FORMATS: readonly FormatRecord[] = registered;

const byName = new Map<string, FormatRecord>();
const byId = new Map<number, FormatRecord>();

const RECORD_FUNCTIONS = [
  "groupBytes",
  "bitsPerWeightAt",
  "params",
  "code",
  "value",
  "errorBound",
  "quantizeGroup",
  "dequantizeGroup",
  "dequantizeRow",
  "quantizeRow",
] as const;

function add(record: FormatRecord, minId: number): FormatRecord {
  const what = `quant-kernels: registerFormat`;
  if (record === null || typeof record !== "object") throw new Error(`${what}: record must be an object`);
  const { id, name } = record;
  if (typeof name !== "string" || name.length === 0)
    throw new Error(`${what}: name must be a non-empty string`);
  if (!Number.isSafeInteger(id) || id < minId) {
    throw new Error(
      `${what} ${name}: id must be an integer ≥ ${minId} (ids below ${FIRST_USER_FORMAT_ID} are int21's), got ${String(id)}`,
    );
  }
  const clash = byId.get(id);
  if (clash !== undefined) throw new Error(`${what} ${name}: id ${id} is taken by ${clash.name}`);
  if (byName.has(name))
    throw new Error(`${what}: a format named ${name} is registered already (id ${byName.get(name)?.id})`);
  if (typeof record.decode !== "string" || record.decode.length === 0) {
    throw new Error(
      `${what} ${name}: decode must be "affine", "lut" or a user kind (a non-empty string), got ${String(record.decode)}`,
    );
  }
  if (![2, 3, 4, 8].includes(record.bits))
    throw new Error(`${what} ${name}: bits must be 2, 3, 4 or 8, got ${String(record.bits)}`);
  if (record.decode === "block") {
    if (!isBlockFormat(record) || record.block.blockSize !== record.groupSize || record.bits !== 8) {
      throw new Error(
        `${what} ${name}: a "block" format needs block traits whose blockSize equals groupSize, and bits 8 (its qweight holds bytes)`,
      );
    }
  } else if (![32, 64, 128, -1].includes(record.groupSize))
    throw new Error(`${what} ${name}: groupSize must be 32, 64, 128 or -1, got ${String(record.groupSize)}`);
  if (
    record.decode === "lut" &&
    !(record.codebook instanceof Float32Array && record.codebook.length === 1 << record.bits)
  ) {
    throw new Error(
      `${what} ${name}: a "lut" format needs a Float32Array codebook of 2^${record.bits} values`,
    );
  }
  for (const fn of RECORD_FUNCTIONS) {
    if (typeof record[fn] !== "function")
      throw new Error(`${what} ${name}: the record has no ${fn}() (build it with defineLutFormat)`);
  }
  Object.freeze(record);
  registered.push(record);
  byName.set(name, record);
  byId.set(id, record);
  return record;
}

for (const f of [
  ...INT2_FORMATS,
  ...INT3_FORMATS,
  ...INT4_FORMATS,
  ...INT8_FORMATS,
  ...NF4_FORMATS,
  IQ4_NL_FORMAT,
  ...GGML_BLOCK_FORMATS,
])
  add(f, 0);

/**
 * Adds a user format to the registry, so `getFormat`, `createQuantizedLinear`, the quantizers, the
 * reference kernels and the conformance suite (for suites built afterwards) find it. Build the record
 * with `defineLutFormat` (codebook formats). Its id must be ≥ {@link FIRST_USER_FORMAT_ID} and unused,
 * its name unused. Backends with no kernel for its decode kind report so in `supports()` and their
 * kernels fall back to the reference. Returns the record; throws an Error naming the clash or the
 * missing part.
 */
export function registerFormat(record: FormatRecord): FormatRecord {
  return add(record, FIRST_USER_FORMAT_ID);
}

/** Names of every registered format. */
export function formatNames(): string[] {
  return FORMATS.map((f) => f.name);
}

/**
 * Looks a format up by name (`"int4-g128-asym-f16"`) or stable id (`431`), or returns the registered
 * record of a {@link QuantFormat} (checked against its id). Throws an Error listing the valid names.
 */
export function getFormat(key: string | number | QuantFormat): FormatRecord {
  const f =
    typeof key === "string" ? byName.get(key) : typeof key === "number" ? byId.get(key) : byId.get(key.id);
  if (f === undefined) {
    const what = typeof key === "object" ? `id ${key.id} (${key.name})` : JSON.stringify(key);
    throw new Error(`quant-kernels: unknown format ${what}; known formats: ${formatNames().join(", ")}`);
  }
  if (
    typeof key === "object" &&
    (key.name !== f.name || key.bits !== f.bits || key.groupSize !== f.groupSize)
  ) {
    throw new Error(
      `quant-kernels: format record ${key.name} (id ${key.id}) does not match the registry's ${f.name}`,
    );
  }
  return f;
}

/**
 * The registered format with these parameters, e.g.
 * `makeFormat({ bits: 4, groupSize: 128, symmetric: false, scaleDtype: "f16" })` → `int4-g128-asym-f16`.
 * Throws an Error naming the bad parameter.
 */
export function makeFormat(spec: FormatSpec): FormatRecord {
  if (![2, 3, 4, 8].includes(spec.bits)) {
    throw new Error(`quant-kernels: makeFormat bits must be 2, 3, 4 or 8, got ${String(spec.bits)}`);
  }
  if (![32, 64, 128, -1].includes(spec.groupSize)) {
    throw new Error(
      `quant-kernels: makeFormat groupSize must be 32, 64, 128 or -1, got ${String(spec.groupSize)}`,
    );
  }
  if (spec.scaleDtype !== "f16" && spec.scaleDtype !== "f32") {
    throw new Error(
      `quant-kernels: makeFormat scaleDtype must be "f16" or "f32", got ${String(spec.scaleDtype)}`,
    );
  }
  return getFormat(formatId({ ...spec, symmetric: spec.symmetric === true }));
}
