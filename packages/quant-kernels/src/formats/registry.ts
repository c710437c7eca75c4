// The format registry: every known format by name and by id, and a constructor by parameters.
import type { QuantFormat } from "../types";
import { type FormatRecord, type FormatSpec, formatId } from "./format";
import { INT2_FORMATS } from "./int2";
import { INT3_FORMATS } from "./int3";
import { INT4_FORMATS } from "./int4";
import { INT8_FORMATS } from "./int8";

/** Every registered format (64: INT2/3/4/8 × g32/g64/g128/per-channel × asym/sym × f16/f32). */
export const FORMATS: readonly FormatRecord[] = Object.freeze([
  ...INT2_FORMATS,
  ...INT3_FORMATS,
  ...INT4_FORMATS,
  ...INT8_FORMATS,
]);

const byName = new Map<string, FormatRecord>();
const byId = new Map<number, FormatRecord>();
for (const f of FORMATS) {
  byName.set(f.name, f);
  byId.set(f.id, f);
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
