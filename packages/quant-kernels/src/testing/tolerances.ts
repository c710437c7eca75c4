// Tolerances are data (per kernel, per format, per backend), never constants inside tests.
import type { FormatRecord } from "../formats/format";
import type { KernelName } from "../types";

/**
 * `|got − want| ≤ abs + rel · mag`, where `mag` is the magnitude of the exact result's terms:
 * `Σ_k |a_k·b_k|` for a dot product, `|want|` for an elementwise result.
 */
export interface Tolerance {
  abs: number;
  rel: number;
}

/** What a conformance check compares: a kernel, or `identity` (⟨y, g⟩ = ⟨x, dx⟩). */
export type CheckName = KernelName | "identity";

/** A backend's tolerance for a check, possibly depending on the format. */
export type ToleranceFor = (check: CheckName, format?: FormatRecord) => Tolerance;

/**
 * Tolerances for a float32 backend: dequantize is exact up to one float32 rounding (a backend may
 * compute `s·q − s·z`), products may accumulate in float32 in any order (rel 3e-5 of Σ|terms|, enough
 * for K up to a few thousand with blocked or pairwise sums).
 */
export const FLOAT32_TOLERANCES: ToleranceFor = (check) => {
  switch (check) {
    case "dequantize":
      return { abs: 1e-30, rel: 2 ** -22 };
    case "sgemm":
    case "qmatmul":
    case "qmatmulT":
      return { abs: 1e-6, rel: 3e-5 };
    case "identity":
      return { abs: 1e-6, rel: 6e-5 };
  }
};

/** Tolerances of the reference backend against itself: float64 accumulation, one final rounding. */
export const REFERENCE_TOLERANCES: ToleranceFor = (check) => {
  switch (check) {
    case "dequantize":
      return { abs: 0, rel: 0 };
    case "identity":
      return { abs: 1e-9, rel: 1e-6 };
    default:
      return { abs: 1e-9, rel: 1e-6 };
  }
};

/** `max |got − want| / max |want|` (tests' comparison of a kernel's output with its reference). */
export function maxRelErr(got: Float32Array, want: Float32Array): number {
  let scale = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  let e = 0;
  for (let i = 0; i < want.length; i++) e = Math.max(e, Math.abs(got[i] - want[i]));
  return e / Math.max(scale, 1e-30);
}
