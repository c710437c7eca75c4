// INT3: 8 levels. Codes straddle 32-bit words (10 and 2/3 codes per word), packed along K like every width.
import { defineFamily, type FormatRecord } from "./format";

/**
 * The INT3 formats, group sizes 32 / 64 / 128 / per-channel × asymmetric / symmetric × f16 / f32
 * scales. Ids 3xy, see `formatId`. Byte layout of one group of `G` columns
 * (planar in a `QuantizedLinear`, counted per group here):
 *
 * ```
 * asym: q: u32[G·3/32] | scale: f16|f32 | zero: f16|f32
 * sym:  q: u32[G·3/32] | scale: f16|f32            (zero = 2^2 implicit)
 * ```
 * e.g. `int3-g128-asym-f16`: q: u32[12] | scale: f16 | zero: f16 → 3.25 bpw.
 */
export const INT3_FORMATS: readonly FormatRecord[] = defineFamily(3);
