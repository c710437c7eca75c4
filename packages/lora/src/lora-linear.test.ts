import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LoRAAdapter, LoRALinear } from "./lora-linear";
import { DenseLinear, randomArray, randomDense } from "./testing/dense-linear";

/** y = x·(W + Σ scaling·B·A)ᵀ, computed the plain way from the merged dense weight. */
function reference(base: DenseLinear, adapters: LoRAAdapter[], x: Float32Array, rows: number): Float32Array {
  const W = Float64Array.from(base.weight);
  const { outFeatures: N, inFeatures: K } = base;
  for (const a of adapters) {
    for (let n = 0; n < N; n++)
      for (let k = 0; k < K; k++) {
        let s = 0;
        for (let j = 0; j < a.r; j++) s += a.loraB[n * a.r + j] * a.loraA[j * K + k];
        W[n * K + k] += a.scaling * s;
      }
  }
  const y = new Float32Array(rows * N);
  for (let r = 0; r < rows; r++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[r * K + k] * W[n * K + k];
      y[r * N + n] = s;
    }
  return y;
}

describe("LoRAAdapter", () => {
  it("starts as a zero delta: A Kaiming-uniform within 1/√in, B zeros, scaling alpha/r", () => {
    const a = new LoRAAdapter(100, 30, { r: 4, alpha: 16, seed: 3 });
    expect(a.scaling).toBe(4);
    expect(a.loraA).toHaveLength(4 * 100);
    expect(a.loraB).toHaveLength(30 * 4);
    expect(a.loraB.every((v) => v === 0)).toBe(true);
    const bound = 1 / Math.sqrt(100);
    expect(Math.max(...a.loraA.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...a.loraA.map(Math.abs))).toBeGreaterThan(0.9 * bound);
    // uniform on ±bound: variance bound²/3
    const v = a.loraA.reduce((s, x) => s + x * x, 0) / a.loraA.length;
    expect(v).toBeGreaterThan((0.8 * (bound * bound)) / 3);
    expect(v).toBeLessThan((1.2 * (bound * bound)) / 3);
    expect(new LoRAAdapter(100, 30, { r: 4, seed: 3 }).loraA).toEqual(a.loraA);
    expect(new LoRAAdapter(100, 30, { r: 4, seed: 4 }).loraA).not.toEqual(a.loraA);
    expect(new LoRAAdapter(100, 30, { r: 4 }).scaling).toBe(1);
  });

  it("rejects bad options with the adapter's name", () => {
    expect(() => new LoRAAdapter(4, 4, { r: 0 })).toThrow(/adapter "default": rank r/);
    expect(() => new LoRAAdapter(4, 4, { r: 2, alpha: 0, name: "t" })).toThrow(/adapter "t": alpha/);
    expect(() => new LoRAAdapter(4, 4, { r: 2, dropout: 1 })).toThrow(/dropout must be in \[0, 1\)/);
    expect(() => new LoRAAdapter(4, 4, { r: 2, name: "a.b" })).toThrow(/must match/);
    expect(() => new LoRAAdapter(4, 4, { r: 2, loraA: [1, 2] })).toThrow(
      /loraA \[2 × 4\] has 2 values, expected 8/,
    );
    expect(() => new LoRAAdapter(2, 1, { r: 1, loraB: [Number.NaN] })).toThrow(/loraB.*not finite/);
  });

  it("addDeltaTo adds scaling·B·A", () => {
    const a = new LoRAAdapter(3, 2, { r: 1, alpha: 2, loraA: [1, 2, 3], loraB: [1, -1] });
    const w = new Float32Array(6);
    a.addDeltaTo(w);
    expect(Array.from(w)).toEqual([2, 4, 6, -2, -4, -6]);
  });
});

describe("LoRALinear", () => {
  it("equals the base while B is zero", () => {
    const base = randomDense(5, 7, 1);
    const l = new LoRALinear(base);
    l.addAdapter({ r: 2, seed: 1 });
    const x = randomArray(3 * 7, 2);
    const y0 = new Float32Array(15);
    const y1 = new Float32Array(15);
    base.forward(x, 3, y0);
    l.forward(x, 3, y1);
    expect(y1).toEqual(y0);
  });

  it("computes base(x) + Σ scaling·(x·Aᵀ)·Bᵀ for stacked adapters (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 1000 }),
        (N, K, r1, r2, rows, seed) => {
          const base = randomDense(N, K, seed);
          const a1 = new LoRAAdapter(K, N, {
            name: "lrec",
            r: r1,
            alpha: 3,
            seed,
            loraB: randomArray(N * r1, seed + 1),
            trainable: false,
          });
          const a2 = new LoRAAdapter(K, N, {
            name: "task",
            r: r2,
            alpha: 5,
            seed: seed + 2,
            loraB: randomArray(N * r2, seed + 3),
          });
          const l = new LoRALinear(base, [a1, a2]);
          const x = randomArray(rows * K, seed + 4);
          const y = new Float32Array(rows * N);
          l.forward(x, rows, y);
          const want = reference(base, [a1, a2], x, rows);
          for (let i = 0; i < y.length; i++)
            expect(Math.abs(y[i] - want[i])).toBeLessThan(1e-5 * (1 + Math.abs(want[i])));
        },
      ),
      { seed: 42, numRuns: 60 },
    );
  });

  it("skips disabled adapters and removes them", () => {
    const base = randomDense(4, 3, 5);
    const l = new LoRALinear(base);
    const a = l.addAdapter({ r: 2, loraB: randomArray(8, 9) });
    const x = randomArray(3, 6);
    const yb = new Float32Array(4);
    const y = new Float32Array(4);
    base.forward(x, 1, yb);
    l.forward(x, 1, y);
    expect(y).not.toEqual(yb);
    a.enabled = false;
    l.forward(x, 1, y);
    expect(y).toEqual(yb);
    a.enabled = true;
    expect(l.removeAdapter("default")).toBe(a);
    l.forward(x, 1, y);
    expect(y).toEqual(yb);
    expect(l.bytes()).toBe(base.bytes());
  });

  it("rejects mismatched adapters, duplicate names and short buffers", () => {
    const l = new LoRALinear(new DenseLinear(new Float32Array(6), 2, 3));
    l.addAdapter({ r: 1 });
    expect(() => l.addAdapter({ r: 1 })).toThrow(/already has an adapter named "default"/);
    expect(() => l.attach(new LoRAAdapter(2, 3, { r: 1, name: "x" }))).toThrow(
      /\[3 × 2\] weight, the layer is \[2 × 3\]/,
    );
    expect(() => l.adapter("nope")).toThrow(/no adapter named "nope"/);
    expect(() => l.forward(new Float32Array(2), 1, new Float32Array(2))).toThrow(/x needs 1×3/);
    expect(l.bytes()).toBe(24 + 4 * (3 + 2));
  });
});
