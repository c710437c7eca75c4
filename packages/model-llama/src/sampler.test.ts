import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Sampler, XorShiftRng, argmax, softmaxInPlace } from "./sampler";

/** xorshift* written with 32-bit halves instead of BigInt: an independent check of the RNG. */
function* xorshift32Halves(seed: number): Generator<number> {
  let hi = 0;
  let lo = seed >>> 0;
  const shr = (h: number, l: number, n: number): [number, number] =>
    n < 32 ? [h >>> n, ((l >>> n) | (h << (32 - n))) >>> 0] : [0, h >>> (n - 32)];
  const shl = (h: number, l: number, n: number): [number, number] =>
    n < 32 ? [((h << n) | (l >>> (32 - n))) >>> 0, (l << n) >>> 0] : [(l << (n - 32)) >>> 0, 0];
  const M = [0x2545f491, 0x4f6cdd1d];
  for (;;) {
    let [a, b] = shr(hi, lo, 12);
    hi ^= a;
    lo ^= b;
    [a, b] = shl(hi, lo, 25);
    hi = (hi ^ a) >>> 0;
    lo = (lo ^ b) >>> 0;
    [a, b] = shr(hi, lo, 27);
    hi = (hi ^ a) >>> 0;
    lo = (lo ^ b) >>> 0;
    // high 32 bits of the low 64 bits of (hi:lo)·M, from 16-bit limbs
    const x = [lo & 0xffff, lo >>> 16, hi & 0xffff, hi >>> 16];
    const y = [M[1] & 0xffff, M[1] >>> 16, M[0] & 0xffff, M[0] >>> 16];
    const r = [0, 0, 0, 0];
    for (let i = 0; i < 4; i++) for (let j = 0; i + j < 4; j++) r[i + j] += x[i] * y[j];
    let carry = 0;
    for (let i = 0; i < 4; i++) {
      const t = r[i] + carry;
      r[i] = t % 65536;
      carry = Math.floor(t / 65536);
    }
    yield (r[2] + r[3] * 65536) >>> 0;
  }
}

describe("XorShiftRng", () => {
  it("matches a 32-bit-halves implementation of llama2.c's xorshift*", () => {
    for (const seed of [1, 42, 133742, 0xffffffff]) {
      const a = new XorShiftRng(seed);
      const b = xorshift32Halves(seed);
      for (let i = 0; i < 50; i++) expect(a.nextU32()).toBe(b.next().value);
    }
  });
  it("gives floats in [0, 1) and refuses seed 0", () => {
    const r = new XorShiftRng(9);
    for (let i = 0; i < 1000; i++) {
      const f = r.nextF32();
      expect(f >= 0 && f < 1).toBe(true);
    }
    expect(() => new XorShiftRng(0)).toThrow(/non-zero/);
  });
});

describe("Sampler", () => {
  it("greedy is argmax (first maximum)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 40 }),
        (xs) => {
          const l = Float32Array.from(xs);
          const s = new Sampler(l.length, { temperature: 0 });
          const t = s.sample(l);
          expect(l[t]).toBe(Math.max(...l));
          expect(l.indexOf(l[t])).toBe(t);
        },
      ),
      { seed: 42, numRuns: 100 },
    );
  });

  it("softmax sums to 1 and is shift invariant", () => {
    const a = Float32Array.from([1, 2, 3, -1]);
    const b = Float32Array.from([101, 102, 103, 99]);
    softmaxInPlace(a, 4);
    softmaxInPlace(b, 4);
    expect(a.reduce((x, y) => x + y, 0)).toBeCloseTo(1, 6);
    for (let i = 0; i < 4; i++) expect(a[i]).toBeCloseTo(b[i], 6);
    expect(argmax(a, 4)).toBe(2);
  });

  it("samples the softmax distribution (frequencies within 4σ, fixed seed)", () => {
    const logits = [0, 1, 2, 0.5, -1];
    const p = Float64Array.from(logits.map(Math.exp));
    const z = p.reduce((x, y) => x + y, 0);
    const s = new Sampler(5, { temperature: 1, topP: 0, seed: 12345 });
    const counts = [0, 0, 0, 0, 0];
    const n = 20000;
    for (let i = 0; i < n; i++) counts[s.sample(Float32Array.from(logits))]++;
    for (let i = 0; i < 5; i++) {
      const q = p[i] / z;
      expect(Math.abs(counts[i] / n - q)).toBeLessThan(4 * Math.sqrt((q * (1 - q)) / n));
    }
  });

  it("temperature sharpens, top-k and top-p restrict the support", () => {
    const logits = [3, 2.9, 2.8, 0, -1, -2];
    const draw = (o: ConstructorParameters<typeof Sampler>[1], n = 3000) => {
      const s = new Sampler(6, { seed: 5, ...o });
      const seen = new Set<number>();
      for (let i = 0; i < n; i++) seen.add(s.sample(Float32Array.from(logits)));
      return seen;
    };
    expect([...draw({ temperature: 1, topP: 0, topK: 2 })].sort()).toEqual([0, 1]);
    // p ≈ [.35 .32 .29 .02 .006 .002]: the first three hold > 0.9, so 0.9 keeps exactly them
    expect([...draw({ temperature: 1, topP: 0.9 })].sort()).toEqual([0, 1, 2]);
    expect([...draw({ temperature: 1, topP: 0.5 })].sort()).toEqual([0, 1]);
    expect([...draw({ temperature: 1, topP: 0.5, topK: 3 })].sort()).toEqual([0, 1]);
    expect(draw({ temperature: 1, topP: 0 }).size).toBe(6);
    expect([...draw({ temperature: 0.002, topP: 0 })]).toEqual([0]);
  });

  it("rejects bad options and non-finite logits", () => {
    expect(() => new Sampler(4, { temperature: -1 })).toThrow(/temperature/);
    expect(() => new Sampler(4, { topK: 1.5 })).toThrow(/topK/);
    expect(() => new Sampler(0)).toThrow(/vocabSize/);
    expect(() => new Sampler(4, { seed: 0 })).toThrow(/non-zero/);
    expect(() => new Sampler(2, { seed: 1 }).sample(Float32Array.from([0, Number.NaN]))).toThrow(
      /logit 1 is not finite/,
    );
    expect(() => new Sampler(3, { seed: 1 }).sample(new Float32Array(2))).toThrow(/2 entries, expected 3/);
  });

  it("masks the padding rows of a padded vocabulary (logits past vocabSize are never drawn)", () => {
    // rows 3 and 4 are padding with the largest logits: a sampler over all 5 rows would pick them
    const logits = () => Float32Array.from([0.1, 0.5, 0.2, 9, 8]);
    expect(new Sampler(5, { temperature: 0 }).sample(logits())).toBe(3);
    expect(new Sampler(3, { temperature: 0 }).sample(logits())).toBe(1);
    for (const opts of [{ topP: 0 }, { topP: 0.9 }, { topK: 2 }]) {
      const s = new Sampler(3, { temperature: 1, seed: 5, ...opts });
      const seen = new Set<number>();
      for (let i = 0; i < 300; i++) seen.add(s.sample(logits()));
      expect(Math.max(...seen)).toBeLessThan(3);
      expect(seen.size).toBeGreaterThan(1);
    }
    // the softmax covers the real tokens only: their probabilities sum to 1
    const p = logits();
    new Sampler(3, { temperature: 1, topP: 0, seed: 1 }).sample(p);
    expect(p[0] + p[1] + p[2]).toBeCloseTo(1, 6);
    expect(p[3]).toBe(9);
  });
});
