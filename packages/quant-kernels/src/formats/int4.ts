// INT4: 16 levels, 8 codes per 32-bit word.
import { defineFamily, type FormatRecord } from "./format";

/**
 * The INT4 formats, group sizes 32 / 64 / 128 / per-channel × asymmetric / symmetric × f16 / f32
 * scales. Ids 4xy, see `formatId`. Byte layout of one group of `G` columns
 * (planar in a `QuantizedLinear`, counted per group here):
 *
 * ```
 * asym: q: u32[G·4/32] | scale: f16|f32 | zero: f16|f32
 * sym:  q: u32[G·4/32] | scale: f16|f32            (zero = 2^3 implicit)
 * ```
 * e.g. `int4-g128-asym-f16`: q: u32[16] | scale: f16 | zero: f16 → 4.25 bpw.
 */
export const INT4_FORMATS: readonly FormatRecord[] = defineFamily(4);
