// NF4: QLoRA's 4-bit NormalFloat codebook with a per-group absmax scale.
import type { FormatRecord } from "./format";
import { defineLutFormat } from "./lut";

/**
 * The 16 NF4 values of QLoRA (Dettmers et al. 2023, arXiv 2305.14314, appendix E): quantiles of
 * N(0, 1) normalized to [−1, 1], with an exact 0 — asymmetric so that 0 is a level.
 */
export const NF4_CODEBOOK: readonly number[] = Object.freeze([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/**
 * The NF4 formats: `w = absmax · NF4[q]` per group of 32 / 64 (QLoRA's block size) / 128 columns,
 * absmax stored as f16 or f32 (QLoRA's double quantization of the absmax is not modelled). Ids
 * 50xy, `x` the group code (1: 32, 2: 64, 3: 128), `y` 1 for f16 scales. Byte layout of one group:
 *
 * ```
 * q: u32[G·4/32] | scale: f16|f32     e.g. nf4-g64-f32: q: u32[8] | scale: f32 → 4.5 bpw
 * ```
 * Round-to-nearest: `scale = absmax` (signed so that the largest-magnitude weight is exact), code =
 * the NF4 entry nearest to `w / scale`.
 */
export const NF4_FORMATS: readonly FormatRecord[] = Object.freeze(
  ([32, 64, 128] as const).flatMap((groupSize, i) =>
    (["f16", "f32"] as const).map((scaleDtype) =>
      defineLutFormat({
        id: 5000 + (i + 1) * 10 + (scaleDtype === "f16" ? 1 : 0),
        name: `nf4-g${groupSize}-${scaleDtype}`,
        bits: 4,
        groupSize,
        scaleDtype,
        codebook: NF4_CODEBOOK,
      }),
    ),
  ),
);
