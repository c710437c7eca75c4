import { describe, expect, it } from "vitest";
import { backward } from "./engine";
import { linear } from "./linear";
import { mse } from "./loss";
import { memory } from "./memory";
import { slice } from "./view";
import { Adam, AdamW, clipGradNorm, SGD, scaleGrads } from "./optim";
import { parameter, type Tensor, tensor } from "./tensor";
import { expectClose, leaf, useReferenceBackend } from "./test-utils";

useReferenceBackend();

function setGrad(p: Tensor, g: number[]): void {
  p.grad = tensor(Float32Array.from(g), p.shape, { tag: "grad" });
}

/** Float64 Adam reference (L2 or decoupled decay) over `steps` gradients. */
function refAdam(
  p0: number[],
  grads: number[][],
  o: { lr: number; b1: number; b2: number; eps: number; wd: number; decoupled: boolean },
) {
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  grads.forEach((g, s) => {
    const t = s + 1;
    for (let i = 0; i < p.length; i++) {
      const gi = g[i] + (o.decoupled ? 0 : o.wd * p[i]);
      if (o.decoupled) p[i] *= 1 - o.lr * o.wd;
      m[i] = o.b1 * m[i] + (1 - o.b1) * gi;
      v[i] = o.b2 * v[i] + (1 - o.b2) * gi * gi;
      p[i] -= (o.lr * (m[i] / (1 - o.b1 ** t))) / (Math.sqrt(v[i] / (1 - o.b2 ** t)) + o.eps);
    }
  });
  return p;
}

const grads = [
  [0.5, -1, 0.25],
  [0.1, 0.3, -0.2],
  [-0.4, 0.2, 0.6],
];

describe("Adam / AdamW / SGD", () => {
  it("Adam's first step moves each weight by lr against the gradient's sign", () => {
    const p = parameter([1, 2, 3], [3]);
    const opt = new Adam([p], { lr: 0.1 });
    setGrad(p, [0.5, -1, 0.25]);
    opt.step();
    expectClose(p.toArray(), [0.9, 2.1, 2.9], 1e-6, 0);
  });

  for (const decoupled of [false, true]) {
    it(`${decoupled ? "AdamW (decoupled decay)" : "Adam (L2 decay)"} matches a float64 reference over 3 steps`, () => {
      const p = parameter([1, -2, 0.5], [3]);
      const o = { lr: 0.05, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 };
      const opt = decoupled ? new AdamW([p], o) : new Adam([p], o);
      for (const g of grads) {
        setGrad(p, g);
        opt.step();
      }
      const ref = refAdam([1, -2, 0.5], grads, {
        lr: 0.05,
        b1: 0.8,
        b2: 0.95,
        eps: 1e-6,
        wd: 0.1,
        decoupled,
      });
      expectClose(p.toArray(), ref, 1e-6, 1e-5);
    });
  }

  it("SGD with momentum and L2 decay matches the update rule", () => {
    const p = parameter([1, -2, 0.5], [3]);
    const opt = new SGD([p], { lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
    const ref = [1, -2, 0.5];
    const buf = [0, 0, 0];
    for (const g of grads) {
      setGrad(p, g);
      opt.step();
      for (let i = 0; i < 3; i++) {
        buf[i] = 0.9 * buf[i] + g[i] + 0.01 * ref[i];
        ref[i] -= 0.1 * buf[i];
      }
    }
    expectClose(p.toArray(), ref, 1e-6, 1e-5);
  });

  it("skips parameters without a gradient and rejects frozen ones", () => {
    const p = parameter([1, 2], [2]);
    new Adam([p]).step();
    expect(p.toArray()).toEqual([1, 2]);
    expect(() => new Adam([parameter([1], [1], { requiresGrad: false })])).toThrow(
      /adam: parameter 0 .* does not require grad/,
    );
  });

  it("state save/load resumes exactly; mismatches are rejected", () => {
    const a = parameter([1, -2, 0.5], [3]);
    const b = parameter([1, -2, 0.5], [3]);
    const optA = new AdamW([a], { lr: 0.05 });
    setGrad(a, grads[0]);
    optA.step();
    b.data.set(a.data);
    const state = optA.stateDict();
    expect(state.meta).toMatchObject({ kind: "adamw", step: 1, shapes: [[3]] });
    expect(JSON.parse(JSON.stringify(state.meta))).toEqual(state.meta);
    expect(Object.keys(state.tensors).sort()).toEqual(["m.0", "v.0"]);
    const optB = new AdamW([b], { lr: 1 });
    optB.loadStateDict(state);
    expect(optB.lr).toBe(0.05);
    for (const g of grads.slice(1)) {
      setGrad(a, g);
      setGrad(b, g);
      optA.step();
      optB.step();
    }
    expect(b.toArray()).toEqual(a.toArray());
    expect(() => new Adam([b]).loadStateDict(state)).toThrow(
      /adam: cannot load state of a 'adamw' optimizer/,
    );
    expect(() => new AdamW([parameter([1, 2], [2])]).loadStateDict(state)).toThrow(
      /state parameter 0 has shape \[3\], parameter is \[2\]/,
    );
    const bad = { ...state, tensors: { "m.0": new Float32Array(2) } };
    expect(() => new AdamW([b]).loadStateDict(bad)).toThrow(
      /state buffer 'm.0' has 2 values, parameter 0 has 3/,
    );
  });

  it("optimizer state is counted in the ledger and released by dispose()", () => {
    const p = leaf([100], 1);
    const before = memory().byTag.optimizer ?? 0;
    const opt = new Adam([p]);
    setGrad(p, new Array(100).fill(1));
    opt.step();
    expect((memory().byTag.optimizer ?? 0) - before).toBe(800);
    opt.dispose();
    expect(memory().byTag.optimizer ?? 0).toBe(before);
  });

  it("zeroGrad zeroes, or frees the buffers", () => {
    const p = parameter([1, 2], [2]);
    const opt = new SGD([p]);
    setGrad(p, [3, 4]);
    opt.zeroGrad();
    expect(p.grad!.toArray()).toEqual([0, 0]);
    opt.zeroGrad({ free: true });
    expect(p.grad).toBeNull();
  });
});

describe("gradient accumulation", () => {
  it("two half-batches with scaleGrads(1/2) give the full batch's mean-loss gradient", () => {
    const w = leaf([3, 4], 1);
    const x = leaf([4, 4], 2, { grad: false });
    const y = leaf([4, 3], 3, { grad: false });
    backward(mse(linear(x, w), y));
    const full = w.grad!.toArray();
    const opt = new SGD([w]);
    opt.zeroGrad();
    for (const half of [0, 2])
      backward(mse(linear(slice(x, 0, half, half + 2), w), slice(y, 0, half, half + 2)));
    scaleGrads([w], 0.5);
    expectClose(w.grad!.toArray(), full, 1e-6, 1e-5);
  });
});

describe("clipGradNorm / scaleGrads", () => {
  it("returns the global norm and scales down only above maxNorm", () => {
    const a = parameter([0, 0], [2]);
    const b = parameter([0], [1]);
    setGrad(a, [3, 0]);
    setGrad(b, [4]);
    expect(clipGradNorm([a, b], 10)).toBeCloseTo(5, 6);
    expect(a.grad!.toArray()).toEqual([3, 0]);
    expect(clipGradNorm([a, b], 1)).toBeCloseTo(5, 6);
    expectClose([...a.grad!.toArray(), ...b.grad!.toArray()], [0.6, 0, 0.8], 1e-6, 0);
    scaleGrads([a, b], 2);
    expectClose(b.grad!.toArray(), [1.6], 1e-6, 0);
  });

  it("throws on a non-finite gradient, naming the parameter", () => {
    const a = parameter([0, 0], [2], { name: "wq" });
    setGrad(a, [1, Number.NaN]);
    expect(() => clipGradNorm([a], 1)).toThrow(
      /clipGradNorm: gradient of parameter 0 \(Tensor\[2\] 'wq'\) is not finite/,
    );
  });
});
