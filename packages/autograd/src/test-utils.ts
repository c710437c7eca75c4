// Test-only helpers (not exported from the package): seeded leaves, float64 references, comparisons.
import { createReferenceBackend } from "@int21/quant-kernels";
import { expect } from "vitest";
import { setBackend } from "./backend";
import { createRng } from "./random";
import { parameter, type Tensor } from "./tensor";

/** Every test file uses the quant-kernels reference backend. */
export function useReferenceBackend(): void {
  setBackend(createReferenceBackend());
}

/** A seeded N(0, std²) leaf that requires grad (unless `grad` is false). */
export function leaf(
  shape: readonly number[],
  seed: number,
  opts: { std?: number; grad?: boolean; offset?: number } = {},
): Tensor {
  const rng = createRng(seed);
  let n = 1;
  for (const d of shape) n *= d;
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (opts.offset ?? 0) + (opts.std ?? 1) * rng.normal();
  return parameter(v, shape, { requiresGrad: opts.grad ?? true });
}

/** Expects `actual` to match `expected` elementwise within `atol + rtol·|expected|`. */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol = 1e-5,
  rtol = 1e-4,
): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const tol = atol + rtol * Math.abs(expected[i]);
    if (!(Math.abs(actual[i] - expected[i]) <= tol)) {
      throw new Error(`element ${i}: got ${actual[i]}, expected ${expected[i]} (tol ${tol})`);
    }
  }
}

/** Row-major multi-index of flat index `i` in `shape`. */
export function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
}

/** Flat index of a broadcast operand for an output multi-index. */
export function broadcastIndex(outIdx: readonly number[], shape: readonly number[]): number {
  let f = 0;
  const k = outIdx.length - shape.length;
  for (let d = 0; d < shape.length; d++) f = f * shape[d] + (shape[d] === 1 ? 0 : outIdx[k + d]);
  return f;
}

/** fast-check settings every property uses: fixed seed, few runs (CI time). */
export const FC = { seed: 42, numRuns: 12 } as const;
