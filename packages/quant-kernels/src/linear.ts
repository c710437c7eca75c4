// Float and quantized implementations of the one Linear interface every model layer goes through.
import { bytes as quantizedBytes } from "./quantized-linear";
import { createReferenceBackend } from "./reference/backend";
import type { Backend, Linear, QuantizedLinear } from "./types";

/** A float linear `y = x·Wᵀ + b` with W `[N×K]` row-major (out × in). */
export interface FloatLinear extends Linear {
  readonly weight: Float32Array;
  readonly bias?: Float32Array;
  readonly backend: Backend;
  /** Input gradient `dx[rows×K] = g[rows×N] · W` (no weight gradient: frozen). */
  inputGrad(g: Float32Array, rows: number, dx: Float32Array): void;
}

/** A quantized linear `y = x·Ŵᵀ + b` running the fused kernels of a backend. */
export interface QuantLinear extends Linear {
  readonly q: QuantizedLinear;
  readonly bias?: Float32Array;
  readonly backend: Backend;
  /** Input gradient `dx[rows×K] = g[rows×N] · Ŵ` through the packed weight (`qmatmulT`). */
  inputGrad(g: Float32Array, rows: number, dx: Float32Array): void;
}

function checkBias(bias: Float32Array | undefined, N: number, who: string): void {
  if (bias === undefined) return;
  if (!(bias instanceof Float32Array) || bias.length !== N) {
    throw new Error(`quant-kernels: ${who}: bias must be a Float32Array of outFeatures = ${N} values`);
  }
}

function checkRows(
  who: string,
  rows: number,
  a: Float32Array,
  aName: string,
  aLen: number,
  b: Float32Array,
  bName: string,
  bLen: number,
) {
  if (!Number.isSafeInteger(rows) || rows < 0)
    throw new Error(`quant-kernels: ${who}: rows must be a non-negative integer, got ${rows}`);
  if (!(a instanceof Float32Array) || a.length < rows * aLen) {
    throw new Error(`quant-kernels: ${who}: ${aName} needs ${rows}×${aLen} floats, has ${a?.length}`);
  }
  if (!(b instanceof Float32Array) || b.length < rows * bLen) {
    throw new Error(`quant-kernels: ${who}: ${bName} needs ${rows}×${bLen} floats, has ${b?.length}`);
  }
}

function addBias(y: Float32Array, rows: number, bias: Float32Array | undefined): void {
  if (bias === undefined) return;
  const N = bias.length;
  for (let r = 0; r < rows; r++) for (let n = 0; n < N; n++) y[r * N + n] += bias[n];
}

/**
 * A float linear layer over `backend.sgemm` with `bConst` (the weight is frozen, a backend may keep a
 * resident copy). `forward`: `y[r, n] = Σ_k x[r, k]·W[n, k] + bias[n]`. `bytes()` = 4·(N·K + N).
 * The weight must not be mutated while the backend lives (bConst contract).
 */
export function createFloatLinear(init: {
  weight: Float32Array;
  outFeatures: number;
  inFeatures: number;
  bias?: Float32Array;
  backend: Backend;
}): FloatLinear {
  const { weight, bias, backend } = init;
  const N = init.outFeatures;
  const K = init.inFeatures;
  if (!Number.isSafeInteger(N) || N < 1 || !Number.isSafeInteger(K) || K < 1) {
    throw new Error(
      `quant-kernels: createFloatLinear: outFeatures and inFeatures must be positive integers, got ${N}, ${K}`,
    );
  }
  if (!(weight instanceof Float32Array) || weight.length !== N * K) {
    throw new Error(
      `quant-kernels: createFloatLinear: weight must be a Float32Array of N×K = ${N}×${K} values`,
    );
  }
  checkBias(bias, N, "createFloatLinear");
  return {
    inFeatures: K,
    outFeatures: N,
    weight,
    ...(bias ? { bias } : {}),
    backend,
    forward(x, rows, y) {
      checkRows("FloatLinear.forward", rows, x, "x", K, y, "y", N);
      backend.sgemm({ M: rows, N, K, A: x, B: weight, C: y, transB: true, bConst: true });
      addBias(y, rows, bias);
    },
    inputGrad(g, rows, dx) {
      checkRows("FloatLinear.inputGrad", rows, g, "g", N, dx, "dx", K);
      backend.sgemm({ M: rows, N: K, K: N, A: g, B: weight, C: dx, bConst: true });
    },
    bytes: () => 4 * (weight.length + (bias ? bias.length : 0)),
  };
}

/**
 * A quantized linear layer: `forward` runs `backend.qmatmul` (`y = x·Ŵᵀ + bias`), `inputGrad`
 * `backend.qmatmulT`; when the backend does not support the format, the reference kernels run
 * instead. `bytes()` = {@link quantizedBytes}(q) + 4·N for a bias.
 */
export function createQuantLinear(init: {
  q: QuantizedLinear;
  bias?: Float32Array;
  backend: Backend;
}): QuantLinear {
  const { q, bias, backend } = init;
  const N = q.outFeatures;
  const K = q.inFeatures;
  checkBias(bias, N, "createQuantLinear");
  const ref = createReferenceBackend();
  const fwd = backend.supports("qmatmul", q.format) ? backend : ref;
  const bwd = backend.supports("qmatmulT", q.format) ? backend : ref;
  return {
    inFeatures: K,
    outFeatures: N,
    q,
    ...(bias ? { bias } : {}),
    backend,
    forward(x, rows, y) {
      checkRows("QuantLinear.forward", rows, x, "x", K, y, "y", N);
      fwd.qmatmul(x, rows, q, y);
      addBias(y, rows, bias);
    },
    inputGrad(g, rows, dx) {
      checkRows("QuantLinear.inputGrad", rows, g, "g", N, dx, "dx", K);
      bwd.qmatmulT(g, rows, q, dx);
    },
    bytes: () => quantizedBytes(q) + (bias ? 4 * bias.length : 0),
  };
}
