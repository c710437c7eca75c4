import {
  Adam,
  frozenLinear as autogradFrozenLinear,
  backward,
  checkpoint,
  gradCheck,
  mse,
  noGrad,
  setBackend,
  sum,
  type Tensor,
  tensor,
  tidy,
} from "@int21/autograd";
import {
  createFloatLinear,
  createQuantLinear,
  createReferenceBackend,
  rtnQuantize,
} from "@int21/quant-kernels";
import { beforeAll, describe, expect, it } from "vitest";
import { LoRALinear } from "./lora-linear";
import {
  adapterTensors,
  dropoutMask,
  type FrozenLinear,
  frozenLinear,
  linearForward,
  loraParameters,
} from "./lora-op";
import { applyLoRA } from "./lora-model";
import { randomArray } from "./testing/dense-linear";

const backend = createReferenceBackend();
beforeAll(() => {
  setBackend(backend);
});

function floatBase(N: number, K: number, seed: number) {
  return createFloatLinear({
    weight: randomArray(N * K, seed, 1 / Math.sqrt(K)),
    outFeatures: N,
    inFeatures: K,
    backend,
  });
}

function quantBase(N: number, K: number, seed: number) {
  return createQuantLinear({
    q: rtnQuantize(randomArray(N * K, seed, 1 / Math.sqrt(K)), N, K, "int4-g32-asym-f16"),
    backend,
  });
}

function loraOf(base: FrozenLinear, seed: number) {
  const l = new LoRALinear(base);
  const a = l.addAdapter({
    name: "lrec",
    r: 3,
    alpha: 6,
    seed,
    loraB: randomArray(base.outFeatures * 3, seed + 1),
    trainable: false,
  });
  const b = l.addAdapter({
    name: "task",
    r: 2,
    alpha: 4,
    seed: seed + 2,
    loraB: randomArray(base.outFeatures * 2, seed + 3),
  });
  return { l, a, b };
}

describe("frozenLinear", () => {
  it("is autograd's one op for frozen linears (lora adds no op of its own)", () => {
    expect(frozenLinear).toBe(autogradFrozenLinear);
  });

  it("passes only the input gradient, through qmatmulT for a packed base", () => {
    const base = quantBase(6, 64, 1);
    const x = tensor(randomArray(3 * 64, 2), [3, 64], { requiresGrad: true });
    const g = randomArray(3 * 6, 3);
    tidy(() => backward(frozenLinear(base, x), g));
    const want = new Float32Array(3 * 64);
    backend.qmatmulT(g, 3, base.q, want);
    for (let i = 0; i < want.length; i++) expect(x.grad!.data[i]).toBeCloseTo(want[i], 5);
  });

  it("matches finite differences (float and packed bases)", () => {
    for (const base of [floatBase(5, 7, 4), quantBase(5, 32, 4)]) {
      const x = tensor(randomArray(2 * base.inFeatures, 5), [2, base.inFeatures], { requiresGrad: true });
      expect(gradCheck((xx) => frozenLinear(base, xx), [x]).worst).toBeLessThanOrEqual(1);
    }
  });

  it("rejects a base without inputGrad and a wrong input shape", () => {
    const plain = { inFeatures: 2, outFeatures: 2, forward() {}, bytes: () => 0 };
    expect(() => frozenLinear(plain, tensor([1, 2], [1, 2]))).toThrow(/no inputGrad/);
    expect(() => frozenLinear(floatBase(2, 3, 1), tensor([1, 2], [1, 2]))).toThrow(/needs last dimension 3/);
  });
});

describe("linearForward (LoRA training op)", () => {
  it("equals the inference forward, for float and packed bases", () => {
    for (const base of [floatBase(6, 8, 7), quantBase(6, 32, 7)]) {
      const { l } = loraOf(base, 9);
      const x = randomArray(4 * base.inFeatures, 10);
      const want = new Float32Array(4 * 6);
      l.forward(x, 4, want);
      const got = noGrad(() => linearForward(l, tensor(x, [2, 2, base.inFeatures])));
      expect(got.shape).toEqual([2, 2, 6]);
      const v = got.values();
      for (let i = 0; i < want.length; i++) expect(v[i]).toBeCloseTo(want[i], 5);
      const one = noGrad(() => linearForward(l, tensor(x.slice(0, base.inFeatures))));
      expect(one.shape).toEqual([6]);
    }
  });

  it("gradients of x, A and B match finite differences; the frozen adapter gets none", () => {
    const { l, a, b } = loraOf(quantBase(5, 32, 11), 12);
    const x = tensor(randomArray(3 * 32, 13), [3, 32], { requiresGrad: true });
    const tb = adapterTensors(b);
    expect(gradCheck((xx) => linearForward(l, xx), [x, tb.loraA, tb.loraB]).worst).toBeLessThanOrEqual(1);
    const ta = adapterTensors(a);
    expect(ta.loraA.requiresGrad).toBe(false);
    expect(ta.loraA.grad).toBeNull();
    expect(ta.loraB.grad).toBeNull();
  });

  it("gradient of B with A fixed is scaling·gᵀ·(x·Aᵀ) (hand-computed)", () => {
    const base = floatBase(1, 2, 1);
    const l = new LoRALinear(base);
    const ad = l.addAdapter({ r: 1, alpha: 3, loraA: [1, 2], loraB: [0] });
    const { loraA, loraB } = adapterTensors(ad);
    const x = tensor([1, 1, 2, 0], [2, 2]);
    tidy(() => backward(sum(linearForward(l, x))));
    // x·Aᵀ = [3, 2]; dB = 3·(3 + 2) = 15; dA = 3·B·Σx = 0 since B = 0
    expect(loraB.grad!.toArray()).toEqual([15]);
    expect(loraA.grad!.toArray()).toEqual([0, 0]);
  });

  it("dropout: masks are reproducible per step (so checkpoint recompute agrees), inactive at inference", () => {
    const base = floatBase(4, 16, 20);
    const l = new LoRALinear(base);
    const ad = l.addAdapter({ r: 2, dropout: 0.5, seed: 5, loraB: randomArray(8, 21) });
    const m1 = dropoutMask(ad, 4000);
    expect(dropoutMask(ad, 4000)).toEqual(m1);
    const zeros = m1.filter((v) => v === 0).length;
    expect(zeros).toBeGreaterThan(1800);
    expect(zeros).toBeLessThan(2200);
    expect(m1.every((v) => v === 0 || v === 2)).toBe(true);
    ad.dropoutStep = 1;
    expect(dropoutMask(ad, 4000)).not.toEqual(m1);
    const x = tensor(randomArray(2 * 16, 22), [2, 16]);
    const plain = noGrad(() => linearForward(l, x)).toArray();
    const train = noGrad(() => linearForward(l, x, { training: true })).toArray();
    expect(train).not.toEqual(plain);
    const want = new Float32Array(8);
    l.forward(x.values(), 2, want);
    for (let i = 0; i < 8; i++) expect(plain[i]).toBeCloseTo(want[i], 5);
    // checkpointed and plain training steps give the same gradients
    const grads = (ckpt: boolean) => {
      const { loraA, loraB } = adapterTensors(ad);
      loraA.grad = null;
      loraB.grad = null;
      const xin = tensor(randomArray(2 * 16, 23), [2, 16], { requiresGrad: true });
      tidy(() => {
        const f = (t: Tensor) => linearForward(l, t, { training: true });
        backward(sum(ckpt ? checkpoint(f, [xin]) : f(xin)));
      });
      return [loraA.grad!.toArray(), loraB.grad!.toArray(), xin.grad!.toArray()];
    };
    expect(grads(true)).toEqual(grads(false));
  });

  it("trains a LoRA on a packed base toward a low-rank target; the base is untouched", () => {
    const N = 8;
    const K = 32;
    const base = quantBase(N, K, 30);
    const words = base.q.qweight.words.slice();
    const modules = new Map([["proj", base as ReturnType<typeof quantBase>]]);
    const model = applyLoRA(modules, { targetModules: ["proj"], r: 2, alpha: 2, seed: 1 });
    const layer = modules.get("proj") as unknown as LoRALinear;
    // target: y* = base(x) + x·(u vᵀ)ᵀ for a rank-1 u vᵀ
    const u = randomArray(N, 31);
    const v = randomArray(K, 32, 0.3);
    const xs = randomArray(64 * K, 33);
    const target = new Float32Array(64 * N);
    base.forward(xs, 64, target);
    for (let r = 0; r < 64; r++) {
      let d = 0;
      for (let k = 0; k < K; k++) d += v[k] * xs[r * K + k];
      for (let n = 0; n < N; n++) target[r * N + n] += u[n] * d;
    }
    const params = loraParameters(model);
    expect(params).toHaveLength(2);
    const opt = new Adam(params, { lr: 0.05 });
    const X = tensor(xs, [64, K]);
    const Y = tensor(target, [64, N]);
    const losses: number[] = [];
    for (let step = 0; step < 150; step++) {
      opt.zeroGrad();
      const loss = tidy(() => {
        const l = mse(linearForward(layer, X, { training: true }), Y);
        backward(l);
        return l.item();
      });
      losses.push(loss);
      opt.step();
    }
    expect(losses[0]).toBeGreaterThan(0.1);
    expect(losses[losses.length - 1]).toBeLessThan(losses[0] * 1e-3);
    expect(base.q.qweight.words).toEqual(words);
  });
});
