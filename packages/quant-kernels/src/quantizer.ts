// The quantizer interface: RTN and GPTQ are swappable values behind it.
import type { Hessian } from "./hessian";
import type { Backend, QuantFormat, QuantizedLinear } from "./types";

/**
 * Calibration inputs of one layer: `data[rows × K]`, row-major (the layer computes `data · Wᵀ`). The pipeline
 * reuses the buffer: read it during `quantize`, copy what must outlive the call.
 */
export interface LayerActivations {
  data: Float32Array;
  rows: number;
}

/** Options every quantizer accepts; each quantizer documents which it reads. */
export interface QuantizeOptions {
  /**
   * Calibration statistics `H = (2/n)·Σ xᵀx` over the layer's inputs. The pipeline (`quantizeModel`)
   * builds it only for quantizers with {@link Quantizer.needsHessian}; GPTQ requires it, RTN ignores it.
   */
  hessian?: Hessian;
  /** The layer's calibration inputs, given by the pipeline to quantizers with {@link Quantizer.needsActivations}. */
  activations?: LayerActivations;
  /** Backend used for large GEMMs inside the quantizer (GPTQ's trailing block update). */
  backend?: Backend;
}

/**
 * Turns a float weight `[N×K]` (row-major, `weight[n*K + k]`, out × in) into a {@link QuantizedLinear}
 * of the given format: one layer at a time. Quantizers never modify `weight`.
 *
 * A quantizer states what calibration it needs; a pipeline such as `quantizeModel` runs the layer-by-layer
 * calibration forward and builds each layer's Hessian only for the quantizers that ask. A quantizer that needs
 * nothing (RTN) also works where no calibration exists (quantize-while-loading, adapter merges).
 *
 * @example A quantizer is an object literal:
 * ```ts
 * const halfRange: Quantizer = {
 *   name: "half-range",
 *   quantize: (w, N, K, format) => rtnQuantize(w, N, K, format, { mseClip: true, maxShrink: 0.5 }),
 * };
 * quantizeModel(weights, { quantizer: halfRange, format: "int4-g64-asym-f16" });
 * ```
 */
export interface Quantizer {
  /** Short name, shown in reports and progress (`"rtn"`, `"gptq"`, …). */
  readonly name: string;
  /** True when {@link quantize} needs `opts.hessian` (GPTQ). Absent means false. */
  readonly needsHessian?: boolean;
  /** True when {@link quantize} needs `opts.activations`, the layer's raw calibration inputs. Absent means false. */
  readonly needsActivations?: boolean;
  quantize(
    weight: Float32Array,
    N: number,
    K: number,
    format: QuantFormat | string | number,
    opts?: QuantizeOptions,
  ): QuantizedLinear;
}

/** Whether `q` needs calibration data (a Hessian or the activations) to quantize a layer. */
export function needsCalibration(q: Quantizer): boolean {
  return q.needsHessian === true || q.needsActivations === true;
}

/**
 * Throws unless `q` is a {@link Quantizer} value (an object with a string `name` and a `quantize` function;
 * `needsHessian` / `needsActivations`, when present, booleans). `who` names the caller.
 */
export function checkQuantizer(who: string, q: unknown): asserts q is Quantizer {
  const what = q === null ? "null" : typeof q !== "object" ? `${typeof q} ${String(q)}` : "an object";
  if (q === null || typeof q !== "object")
    throw new Error(`${who}: expected a Quantizer (an object with name and quantize), got ${what}`);
  const o = q as Record<string, unknown>;
  if (typeof o.quantize !== "function")
    throw new Error(
      `${who}: expected a Quantizer, got an object without a quantize(weight, N, K, format) function`,
    );
  if (typeof o.name !== "string" || o.name === "")
    throw new Error(`${who}: a Quantizer needs a non-empty string name`);
  for (const k of ["needsHessian", "needsActivations"] as const) {
    if (o[k] !== undefined && typeof o[k] !== "boolean")
      throw new Error(`${who}: quantizer ${o.name}: ${k} must be a boolean, got ${String(o[k])}`);
  }
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
