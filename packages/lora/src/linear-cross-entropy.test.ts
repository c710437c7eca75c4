import { backward, crossEntropy, gradCheck, setBackend, tensor, tidy } from "@int21/autograd";
import {
  createFloatLinear,
  createQuantLinear,
  createReferenceBackend,
  rtnQuantize,
} from "@int21/quant-kernels";
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
