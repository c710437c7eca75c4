import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FORMATS, getFormat } from "./formats/registry";
import { referenceDequantize } from "./reference/dequantize";
import { createRtnQuantizer, groupMembers, rtnQuantize } from "./rtn";
import { randomGIdx, randomWeights } from "./testing/random";

function sqError(W: Float32Array, q: ReturnType<typeof rtnQuantize>): number {
  const out = new Float32Array(W.length);
  referenceDequantize(q, out);
  let e = 0;
  for (let i = 0; i < W.length; i++) e += (W[i] - out[i]) ** 2;
  return e;
}

describe("rtnQuantize", () => {
  it("golden: a 2×4 INT2 per-channel asymmetric matrix", () => {
    const W = new Float32Array([-1, 0, 0.5, 2, 0.25, 0.5, 1.5, 0]);
    const q = rtnQuantize(W, 2, 4, "int2-pc-asym-f32");
    expect(Array.from(q.scales)).toEqual([1, 0.5]);
    expect(Array.from(q.zeros)).toEqual([1, 0]);
    const out = new Float32Array(8);
    referenceDequantize(q, out);
    expect(Array.from(out)).toEqual([-1, 0, 1, 2, 0.5, 0.5, 1.5, 0]); // 0.25 → code round(0.5) = 1
  });

  it("MSE clipping never increases the squared error and helps heavy-tailed INT2/INT3 (property)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...FORMATS.filter((f) => f.bits <= 4)),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 0, max: 1e9 }),
        (f, N, K, seed) => {
          const W = randomWeights(N * K, seed, 0.05, 0.03);
          const plain = sqError(W, rtnQuantize(W, N, K, f));
          const clipped = sqError(W, rtnQuantize(W, N, K, f, { mseClip: true, grid: 40 }));
          expect(clipped).toBeLessThanOrEqual(plain * (1 + 1e-9) + 1e-30);
        },
      ),
      { seed: 42, numRuns: 60 },
    );
    const W = randomWeights(64 * 256, 3, 0.05, 0.03);
    for (const name of ["int2-g128-asym-f16", "int3-pc-sym-f32"]) {
      const plain = sqError(W, rtnQuantize(W, 64, 256, name));
      const clipped = sqError(W, rtnQuantize(W, 64, 256, name, { mseClip: true }));
      expect(clipped, name).toBeLessThan(0.9 * plain);
    }
  });

  it("groups by gIdx (act-order) and stores it", () => {
    const K = 200;
    const gIdx = randomGIdx(K, 64, 9);
    const members = groupMembers(getFormat("int4-g64-asym-f16"), K, gIdx);
    expect(members.map((m) => m.length)).toEqual([64, 64, 64, 8]);
    const W = randomWeights(5 * K, 1);
    const q = rtnQuantize(W, 5, K, "int4-g64-asym-f16", { gIdx });
    expect(q.gIdx).toBe(gIdx);
    // Each act-order group is the min/max of its own members.
    const f = getFormat("int4-g64-asym-f16");
    for (let g = 0; g < 4; g++) {
      let lo = Number.POSITIVE_INFINITY;
      let hi = Number.NEGATIVE_INFINITY;
      for (const k of members[g]) {
        lo = Math.min(lo, W[k]);
        hi = Math.max(hi, W[k]);
      }
      expect(q.scales[g]).toBe(f.params(lo, hi).scale);
    }
  });

  it("as a Quantizer value, and rejects bad weights", () => {
    const rtn = createRtnQuantizer({ mseClip: true });
    expect(rtn.name).toBe("rtn-mse");
    const q = rtn.quantize(randomWeights(4 * 40, 2), 4, 40, "int8-g32-sym-f16");
    expect(q.outFeatures).toBe(4);
    expect(() => rtnQuantize(new Float32Array(10), 3, 4, "int4-g32-asym-f16")).toThrow(/N×K = 3×4 = 12/);
    expect(() => rtnQuantize(new Float32Array([1, Number.NaN]), 1, 2, "int4-g32-asym-f16")).toThrow(
      /weight\[1\] \(row 0, col 1\)/,
    );
    expect(() =>
      rtnQuantize(new Float32Array(4), 2, 2, "int4-g32-asym-f16", { mseClip: true, maxShrink: 1.5 }),
    ).toThrow(/maxShrink/);
  });
});
