import {
  backward,
  crossEntropy,
  gradCheck,
  memory,
  noGrad,
  scale,
  setBackend,
  tensor,
  tidy,
} from "@int21/autograd";
import {
  createFloatLinear,
  createQuantLinear,
  createReferenceBackend,
  rtnQuantize,
  trainKernels,
} from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { beforeAll, describe, expect, it } from "vitest";
import { IGNORE_INDEX } from "./dataset";
import { linearCrossEntropy } from "./linear-cross-entropy";
import { LoRALinear } from "./lora-linear";
import { frozenLinear } from "./lora-op";
import { randomArray } from "./testing/dense-linear";

const backend = createReferenceBackend();
beforeAll(() => {
  setBackend(backend);
});

const V = 40;
const K = 32;
const heads = [
  createFloatLinear({ weight: randomArray(V * K, 1, 0.5), outFeatures: V, inFeatures: K, backend }),
  createQuantLinear({ q: rtnQuantize(randomArray(V * K, 2, 0.5), V, K, "int4-g32-asym-f16"), backend }),
];

describe("linearCrossEntropy", () => {
  it("equals crossEntropy of the full logits, loss and input gradient, for any chunk", () => {
    const targets = [3, IGNORE_INDEX, 39, 0, 7, 7, IGNORE_INDEX];
    for (const head of heads) {
      const xs = randomArray(7 * K, 3);
      const ref = tensor(xs.slice(), [7, K], { requiresGrad: true });
      const want = tidy(() => {
        const l = crossEntropy(frozenLinear(head, ref), targets);
        backward(l);
        return l.item();
      });
      for (const chunk of [1, 3, 7, 128]) {
        const x = tensor(xs.slice(), [1, 7, K], { requiresGrad: true });
        const got = tidy(() => {
          const l = linearCrossEntropy(x, head, targets, { chunk });
          backward(l);
          return l.item();
        });
        expect(got).toBeCloseTo(want, 5);
        const g = x.grad!.data;
        for (let i = 0; i < g.length; i++) expect(g[i]).toBeCloseTo(ref.grad!.data[i], 6);
      }
    }
  });

  it("scales the gradient it computed in forward by the incoming gradient, and saves none without grad", () => {
    const targets = [1, 5, IGNORE_INDEX, 39];
    const xs = randomArray(4 * K, 6);
    const grads = [1, -2.5].map((s) => {
      const x = tensor(xs.slice(), [4, K], { requiresGrad: true });
      tidy(() => backward(scale(linearCrossEntropy(x, heads[0], targets), s)));
      return x.grad!.toFloat32Array();
    });
    for (let i = 0; i < grads[0].length; i++) expect(grads[1][i]).toBeCloseTo(-2.5 * grads[0][i], 6);
    const before = memory().byTag.saved ?? 0;
    const x = tensor(xs.slice(), [4, K], { requiresGrad: true });
    noGrad(() => tidy(() => linearCrossEntropy(x, heads[0], targets).item()));
    expect(memory().byTag.saved ?? 0).toBe(before);
  });

  it("drops probabilities below 2^-64 from the gradient (no subnormal GEMM inputs)", () => {
    // logits spread over hundreds of nats: most probabilities underflow; the gradient must still
    // match the full-logits crossEntropy, whose exp() flushes them to ~0 anyway
    const wide = createFloatLinear({
      weight: randomArray(V * K, 7, 8),
      outFeatures: V,
      inFeatures: K,
      backend,
    });
    const xs = randomArray(3 * K, 8, 4);
    const targets = [2, 17, 30];
    const ref = tensor(xs.slice(), [3, K], { requiresGrad: true });
    const want = tidy(() => {
      const l = crossEntropy(frozenLinear(wide, ref), targets);
      backward(l);
      return l.item();
    });
    const x = tensor(xs.slice(), [3, K], { requiresGrad: true });
    const got = tidy(() => {
      const l = linearCrossEntropy(x, wide, targets, { chunk: 2 });
      backward(l);
      return l.item();
    });
    expect(got).toBeCloseTo(want, 3);
    // float32 logits of this size carry ~1e-5 relative rounding: compare relative to the largest entry
    const g = x.grad!.data;
    const r = ref.grad!.data;
    const big = r.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(big).toBeGreaterThan(0.01);
    for (let i = 0; i < g.length; i++) expect(Math.abs(g[i] - r[i])).toBeLessThan(1e-4 * big);
  });

  it("gives the same loss and gradient through the wasm row kernel (reused chunk buffer)", async () => {
    const wasm = await createWasmBackend({ threads: 2 });
    expect(trainKernels(wasm)).toBeDefined();
    try {
      const Vw = 301;
      const head = createFloatLinear({
        weight: randomArray(Vw * K, 9, 2),
        outFeatures: Vw,
        inFeatures: K,
        backend,
      });
      const targets = [5, IGNORE_INDEX, 300, 0, 17, 250, 9];
      const xs = randomArray(7 * K, 10, 2);
      const run = (chunk: number) => {
        const x = tensor(xs.slice(), [7, K], { requiresGrad: true });
        const l = tidy(() => {
          const loss = linearCrossEntropy(x, head, targets, { chunk });
          backward(loss);
          return loss.item();
        });
        return { l, g: x.grad!.toFloat32Array() };
      };
      const want = run(3);
      setBackend(wasm);
      for (const chunk of [2, 7, 3]) {
        const got = run(chunk);
        expect(got.l).toBeCloseTo(want.l, 4);
        for (let i = 0; i < got.g.length; i++) expect(got.g[i]).toBeCloseTo(want.g[i], 5);
      }
    } finally {
      setBackend(backend);
      wasm.dispose();
    }
  });

  it("matches finite differences", () => {
    const x = tensor(randomArray(5 * K, 4), [5, K], { requiresGrad: true });
    expect(
      gradCheck((xx) => linearCrossEntropy(xx, heads[1], [1, 2, IGNORE_INDEX, 4, 5], { chunk: 2 }), [x])
        .worst,
    ).toBeLessThanOrEqual(1);
  });

  it("is 0 with no trained target, and rejects bad input", () => {
    const x = tensor(randomArray(2 * K, 5), [2, K]);
    expect(linearCrossEntropy(x, heads[0], [IGNORE_INDEX, IGNORE_INDEX]).item()).toBe(0);
    expect(() => linearCrossEntropy(x, heads[0], [1])).toThrow(/1 targets for 2 rows/);
    expect(() => linearCrossEntropy(x, heads[0], [1, 40])).toThrow(/target 40 at row 1 is outside \[0, 40\)/);
    expect(() => linearCrossEntropy(x, heads[0], [1, 2], { chunk: 0 })).toThrow(/chunk must be/);
    expect(() => linearCrossEntropy(tensor([1, 2], [1, 2]), heads[0], [1])).toThrow(
      /needs last dimension 32/,
    );
    expect(() => linearCrossEntropy(x, new LoRALinear(heads[0]), [1, 2])).toThrow(/no inputGrad/);
  });
});
