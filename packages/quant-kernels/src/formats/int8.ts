// INT8: 256 levels, 4 codes per 32-bit word.
import { defineFamily, type FormatRecord } from "./format";

/**
 * The INT8 formats, group sizes 32 / 64 / 128 / per-channel × asymmetric / symmetric × f16 / f32
 * scales. Ids 8xy, see `formatId`. Byte layout of one group of `G` columns
 * (planar in a `QuantizedLinear`, counted per group here):
 *
 * ```
 * asym: q: u32[G·8/32] | scale: f16|f32 | zero: f16|f32
 * sym:  q: u32[G·8/32] | scale: f16|f32            (zero = 2^7 implicit)
 * ```
 * e.g. `int8-g128-asym-f16`: q: u32[32] | scale: f16 | zero: f16 → 8.25 bpw.
 */
export const INT8_FORMATS: readonly FormatRecord[] = defineFamily(8);
