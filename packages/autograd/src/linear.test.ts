import { createReferenceBackend, type GemmArgs, rtnQuantize } from "@int21/quant-kernels";
import { describe, expect, it } from "vitest";
import { withBackend } from "./backend";
import { backward } from "./engine";
import { gradCheck } from "./gradcheck";
import { isQuantizedLinear, linear } from "./linear";
import { memory } from "./memory";
import { expectClose, leaf, useReferenceBackend } from "./test-utils";

useReferenceBackend();

describe("linear with a float weight", () => {
  it("y = x·Wᵀ; trainable W gets a gradient, frozen W gets no buffer", () => {
    const x = leaf([2, 3, 5], 1);
    const w = leaf([4, 5], 2);
    const y = linear(x, w);
    expect(y.shape).toEqual([2, 3, 4]);
    const ref: number[] = [];
    for (let r = 0; r < 6; r++)
      for (let n = 0; n < 4; n++) {
        let s = 0;
        for (let k = 0; k < 5; k++) s += x.values()[r * 5 + k] * w.get(n, k);
        ref.push(s);
      }
    expectClose(y.toArray(), ref);
    gradCheck((a, b) => linear(a, b), [x, w]);
    const frozen = leaf([4, 5], 3, { grad: false });
    backward(linear(x, frozen), new Float32Array(24).fill(1));
    expect(frozen.grad).toBeNull();
    expect(x.grad).not.toBeNull();
    expect(linear(leaf([5], 4), w).shape).toEqual([4]);
    expect(() => linear(x, leaf([4, 6], 5))).toThrow(
      /linear: x \[2, 3, 5\] · W\[4, 6\]ᵀ: W must be \[N, 5\]/,
    );
  });

  it("passes bConst to sgemm only for frozen parameters", () => {
    const ref = createReferenceBackend();
    const seen: boolean[] = [];
    const spy = {
      ...ref,
      sgemm: (a: GemmArgs) => {
        seen.push(a.bConst ?? false);
        ref.sgemm(a);
      },
    };
    withBackend(spy, () => {
      linear(leaf([2, 3], 1), leaf([4, 3], 2, { grad: false }));
      linear(leaf([2, 3], 1), leaf([4, 3], 2));
    });
    expect(seen).toEqual([true, false]);
  });
});

describe("linear with a QuantizedLinear (the frozen-linear op: qmatmul forward, qmatmulT backward)", () => {
  const backend = createReferenceBackend();
  const N = 6;
  const K = 64;
  const wf = leaf([N, K], 11, { grad: false });
  const q = rtnQuantize(wf.values(), N, K, "int4-g32-asym-f32");
  const deq = new Float32Array(N * K);
  createReferenceBackend().dequantize(q, deq);

  it("forward equals x · dequantize(W)ᵀ; the input gradient matches finite differences; no weight gradient", () => {
    expect(isQuantizedLinear(q)).toBe(true);
    expect(isQuantizedLinear(wf)).toBe(false);
    const x = leaf([2, 3, K], 12);
    const y = linear(x, q, { backend });
    expect(y.shape).toEqual([2, 3, N]);
    const ref: number[] = [];
    for (let r = 0; r < 6; r++)
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += x.values()[r * K + k] * deq[n * K + k];
        ref.push(s);
      }
    expectClose(y.toArray(), ref, 1e-4, 1e-4);
    gradCheck((a) => linear(a, q, { backend }), [x]);
  });

  it("saves nothing for backward (the ledger holds only the output)", () => {
    const x = leaf([4, K], 13);
    const before = memory().liveBytes;
    const y = linear(x, q, { backend });
    expect(memory().liveBytes - before).toBe(4 * 4 * N);
    backward(y, new Float32Array(4 * N).fill(1));
    expect(x.grad!.shape).toEqual([4, K]);
  });

  it("rejects an input with the wrong width, naming the format", () => {
    expect(() => linear(leaf([2, 5], 1), q, { backend })).toThrow(
      /linear: x \[2, 5\] needs last dimension 64 for quantized weight \[6, 64\] \(int4-g32-asym-f32\)/,
    );
  });

  it("needs an explicit backend (not the one set in autograd) and runs on it", () => {
    expect(() => linear(leaf([2, K], 1), q)).toThrow(
      /linear: the quantized weight \[6, 64\] \(int4-g32-asym-f32\) needs \{ backend \}/,
    );
    let calls = 0;
    const spy = {
      ...backend,
      qmatmul: (...a: Parameters<typeof backend.qmatmul>) => {
        calls++;
        backend.qmatmul(...a);
      },
    };
    const x = leaf([3, K], 14);
    expectClose(linear(x, q, { backend: spy }).toArray(), linear(x, q, { backend }).toArray(), 0, 0);
    expect(calls).toBe(1);
  });
});
