// The quantizer interface: RTN and GPTQ are swappable values behind it.
import type { Hessian } from "./hessian";
import type { Backend, QuantFormat, QuantizedLinear } from "./types";

/** Options every quantizer accepts; each quantizer documents which it reads. */
export interface QuantizeOptions {
  /** Calibration statistics `H = (2/n)·Σ xᵀx` over the layer's inputs (GPTQ needs it; RTN ignores it). */
  hessian?: Hessian;
  /** Backend used for large GEMMs inside the quantizer (GPTQ's trailing block update). */
  backend?: Backend;
}

/**
 * Turns a float weight `[N×K]` (row-major, `weight[n*K + k]`, out × in) into a {@link QuantizedLinear}
 * of the given format. Quantizers never modify `weight`.
 */
export interface Quantizer {
  readonly name: string;
  quantize(
    weight: Float32Array,
    N: number,
    K: number,
    format: QuantFormat | string | number,
    opts?: QuantizeOptions,
  ): QuantizedLinear;
}

/** Throws unless `weight` is a finite Float32Array of N·K values. `who` names the caller. */
export function checkWeight(who: string, weight: Float32Array, N: number, K: number): void {
  if (!Number.isSafeInteger(N) || N < 1 || !Number.isSafeInteger(K) || K < 1) {
    throw new Error(`quant-kernels: ${who}: N and K must be positive integers, got N=${N}, K=${K}`);
  }
  if (!(weight instanceof Float32Array))
    throw new Error(`quant-kernels: ${who}: weight must be a Float32Array`);
  if (weight.length !== N * K) {
    throw new Error(
      `quant-kernels: ${who}: weight has ${weight.length} values, expected N×K = ${N}×${K} = ${N * K}`,
    );
  }
  for (let i = 0; i < weight.length; i++) {
    if (!Number.isFinite(weight[i])) {
      throw new Error(
        `quant-kernels: ${who}: weight[${i}] (row ${Math.floor(i / K)}, col ${i % K}) = ${weight[i]} is not finite`,
      );
    }
  }
}
