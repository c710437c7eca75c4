import {
  type Backend,
  createFloatLinear,
  createQuantLinear,
  createReferenceBackend,
  type Linear,
  rtnQuantize,
} from "@int21/quant-kernels";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { currentBackend, getBackend, setBackend, withBackend } from "./backend";
import { checkpoint } from "./checkpoint";
import { add } from "./elementwise";
import { backward } from "./engine";
import { type FrozenLinear, frozenLinear, isFrozenLinear } from "./frozen-linear";
import { gradCheck } from "./gradcheck";
import { matmul } from "./linalg";
import { memory } from "./memory";
import { sum } from "./reduce";
import { expectClose, leaf } from "./test-utils";
import { transpose } from "./view";

/** A backend that counts its kernel calls. */
function counting(be: Backend): { backend: Backend; calls: Record<string, number> } {
  const calls: Record<string, number> = { sgemm: 0, qmatmul: 0, qmatmulT: 0 };
  const backend: Backend = {
    ...be,
    sgemm: (a) => {
      calls.sgemm++;
      be.sgemm(a);
    },
    qmatmul: (...a) => {
      calls.qmatmul++;
      be.qmatmul(...a);
    },
    qmatmulT: (...a) => {
      calls.qmatmulT++;
      be.qmatmulT(...a);
    },
  };
  return { backend, calls };
}

/** The plain `x·Wᵀ + b` in float64 (the reference the op is checked against). */
function plain(
  x: Float32Array,
  rows: number,
  w: Float32Array,
  N: number,
  K: number,
  b?: Float32Array,
): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++)
    for (let n = 0; n < N; n++) {
      let s = b ? b[n] : 0;
      for (let k = 0; k < K; k++) s += x[r * K + k] * w[n * K + k];
      out.push(s);
    }
  return out;
}

describe("frozenLinear (the one op for frozen linears)", () => {
  // None of these tests sets an autograd backend: the op runs on the layer's own one.
  it("FloatLinear with and without bias: forward x·Wᵀ + b, input gradient by finite differences, no weight gradient", () => {
    expect(currentBackend()).toBeNull();
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 5 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 1000 }),
        (N, K, rows, withBias, seed) => {
          const w = leaf([N, K], seed, { grad: false }).values();
          const bias = withBias ? leaf([N], seed + 1, { grad: false }).values() : undefined;
          const lin = createFloatLinear({
            weight: w,
            outFeatures: N,
            inFeatures: K,
            bias,
            backend: createReferenceBackend(),
          });
          const x = leaf([rows, K], seed + 2);
          const y = frozenLinear(lin, x);
          expect(y.shape).toEqual([rows, N]);
          expectClose(y.toArray(), plain(x.values(), rows, w, N, K, bias), 1e-5, 1e-5);
          expect(gradCheck((a) => frozenLinear(lin, a), [x]).worst).toBeLessThanOrEqual(1);
        },
      ),
      { numRuns: 25 },
    );
  });

  it("QuantLinear: forward x·dequantize(W)ᵀ (+ bias) through qmatmul, input gradient through qmatmulT, on the layer's backend", () => {
    const N = 5;
    const K = 64;
    const ref = createReferenceBackend();
    const q = rtnQuantize(leaf([N, K], 21, { grad: false }).values(), N, K, "int4-g32-asym-f16");
    const deq = new Float32Array(N * K);
    ref.dequantize(q, deq);
    const bias = leaf([N], 22, { grad: false }).values();
    const { backend, calls } = counting(ref);
    const lin = createQuantLinear({ q, bias, backend });
    const x = leaf([2, 3, K], 23);
    const y = frozenLinear(lin, x);
    expect(y.shape).toEqual([2, 3, N]);
    expectClose(y.toArray(), plain(x.values(), 6, deq, N, K, bias), 1e-4, 1e-4);
    backward(y, new Float32Array(6 * N).fill(1));
    expect(calls).toEqual({ sgemm: 0, qmatmul: 1, qmatmulT: 1 });
    // dx[r, k] = Σ_n ŵ[n, k]
    const colSum = Array.from({ length: K }, (_, k) => {
      let s = 0;
      for (let n = 0; n < N; n++) s += deq[n * K + k];
      return s;
    });
    expectClose(x.grad!.toArray(), Array.from({ length: 6 }, () => colSum).flat(), 1e-4, 1e-4);
    expect(gradCheck((a) => frozenLinear(lin, a), [leaf([2, K], 24)]).worst).toBeLessThanOrEqual(1);
  });

  it("saves nothing for backward; accepts a strided input", () => {
    const lin = createFloatLinear({
      weight: leaf([4, 6], 31, { grad: false }).values(),
      outFeatures: 4,
      inFeatures: 6,
      backend: createReferenceBackend(),
    });
    const x = leaf([3, 6], 32);
    const before = memory().liveBytes;
    const y = frozenLinear(lin, x);
    expect(memory().liveBytes - before).toBe(4 * 3 * 4);
    backward(y, new Float32Array(12).fill(1));
    const xt = leaf([6, 3], 33);
    const ys = frozenLinear(lin, transpose(xt, 0, 1)); // not contiguous: read through a copy
    expectClose(ys.toArray(), plain(transpose(xt, 0, 1).values(), 3, lin.weight, 4, 6), 1e-5, 1e-5);
  });

  it("rejects a Linear without inputGrad and an input of the wrong width, naming the layer's shape", () => {
    const plainLinear: Linear = { inFeatures: 2, outFeatures: 1, forward: () => {}, bytes: () => 0 };
    expect(isFrozenLinear(plainLinear)).toBe(false);
    expect(() => frozenLinear(plainLinear, leaf([1, 2], 1))).toThrow(
      /frozenLinear: the Linear has no inputGrad/,
    );
    const lin: FrozenLinear = createFloatLinear({
      weight: new Float32Array(6),
      outFeatures: 2,
      inFeatures: 3,
      backend: createReferenceBackend(),
    });
    expect(isFrozenLinear(lin)).toBe(true);
    expect(() => frozenLinear(lin, leaf([4, 2], 1))).toThrow(
      /x \[4, 2\] needs last dimension 3 for a \[2 × 3\] layer/,
    );
  });
});

describe("autograd's backend: explicit, no default", () => {
  it("getBackend throws without one; ops that run no kernels work; a matmul says what to do", () => {
    const previous = setBackend(null);
    try {
      expect(() => getBackend()).toThrow(/no backend is set.*setBackend\(await createWasmBackend\(\)\)/);
      expect(add(leaf([2], 1), leaf([2], 2)).shape).toEqual([2]);
      expect(() => matmul(leaf([2, 3], 1), leaf([3, 2], 2))).toThrow(/autograd: no backend is set/);
    } finally {
      setBackend(previous);
    }
  });

  it("backward runs on the backend set at forward time, also outside withBackend and through checkpoint", () => {
    const { backend, calls } = counting(createReferenceBackend());
    const w = leaf([3, 3], 41);
    for (const ck of [false, true]) {
      calls.sgemm = 0;
      w.grad = null;
      const x = leaf([2, 3], 42);
      const loss = withBackend(backend, () =>
        ck ? sum(checkpoint((a) => matmul(a, w), [x])) : sum(matmul(x, w)),
      );
      const forwardCalls = calls.sgemm;
      expect(forwardCalls).toBe(1);
      expect(currentBackend()).toBeNull();
      backward(loss); // no backend set now: the recorded one runs the gradients
      expect(calls.sgemm).toBeGreaterThan(forwardCalls);
      expect(w.grad).not.toBeNull();
      expect(x.grad).not.toBeNull();
    }
  });
});
