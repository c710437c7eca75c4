import { packMatrix } from "@int21/bitpack";
import { describe, expect, it } from "vitest";
import { getFormat } from "./formats/registry";
import {
  bitsPerWeight,
  bytes,
  createQuantizedLinear,
  groupCount,
  packQuantizedLinear,
} from "./quantized-linear";

const f4 = getFormat("int4-g64-asym-f16");

function base(N = 3, K = 100) {
  const nG = groupCount(f4, K);
  return {
    format: f4,
    outFeatures: N,
    inFeatures: K,
    qweight: packMatrix(new Uint8Array(N * K).fill(5), N, K, 4),
    scales: new Float32Array(N * nG).fill(0.5),
    zeros: new Float32Array(N * nG).fill(8),
  };
}

describe("createQuantizedLinear", () => {
  it("builds a frozen record; tail group when groupSize does not divide K", () => {
    const q = createQuantizedLinear(base());
    expect(Object.isFrozen(q)).toBe(true);
    expect(groupCount(f4, 100)).toBe(2); // columns 0..63 and the 36-column tail 64..99
    expect(groupCount(getFormat("int4-pc-asym-f16"), 100)).toBe(1);
    expect(q.format).toBe(f4);
  });

  it("accepts a format name or id and fills symmetric zeros", () => {
    const N = 2;
    const K = 32;
    const q = createQuantizedLinear({
      format: "int2-g32-sym-f32",
      outFeatures: N,
      inFeatures: K,
      qweight: packMatrix(new Uint8Array(N * K), N, K, 2),
      scales: new Float32Array(2).fill(0.25),
    });
    expect(Array.from(q.zeros)).toEqual([2, 2]);
    expect(createQuantizedLinear({ ...base(), format: 421 }).format.name).toBe("int4-g64-asym-f16");
  });

  it("rejects inconsistent shapes, bad parameters and bad gIdx, naming the tensor", () => {
    const b = base();
    const bad = (patch: object, re: RegExp) =>
      expect(() => createQuantizedLinear({ ...b, ...patch })).toThrow(re);
    bad({ outFeatures: 0 }, /outFeatures must be a positive integer/);
    bad({ inFeatures: 2.5 }, /inFeatures/);
    bad(
      { qweight: packMatrix(new Uint8Array(300), 3, 100, 3) },
      /3-bit codes but format int4-g64-asym-f16 needs 4/,
    );
    bad({ qweight: packMatrix(new Uint8Array(400), 4, 100, 4) }, /qweight is 4×100, expected .* 3×100/);
    bad({ qweight: { ...b.qweight, words: new Uint32Array(10) } }, /qweight needs 39 words/);
    bad({ scales: new Float32Array(5).fill(1) }, /scales has 5 entries, expected N×nGroups = 3×2 = 6/);
    const nan = b.scales.slice();
    nan[3] = Number.NaN;
    bad({ scales: nan }, /scales\[3\] \(row 1, group 1\) = NaN is not finite and positive/);
    bad({ scales: b.scales.map(() => 0) }, /scales\[0\].*positive/);
    bad({ scales: b.scales.map(() => -1) }, /scales\[0\].*positive/);
    bad({ scales: b.scales.map(() => 0.1) }, /not an f16 value/);
    bad({ zeros: b.zeros.map(() => 16) }, /zeros\[0\].* outside \[0, 15\]/);
    bad({ zeros: b.zeros.map(() => Number.POSITIVE_INFINITY) }, /zeros\[0\]/);
    bad({ zeros: undefined }, /zeros are required for the asymmetric format/);
    bad({ gIdx: new Int32Array(99) }, /gIdx has 99 entries, expected inFeatures = 100/);
    bad({ gIdx: new Int32Array(100).fill(2) }, /gIdx\[0\] = 2 is outside \[0, 2\)/);
    bad({ format: "int4-g64-asym-f17" }, /unknown format/);
  });

  it("symmetric formats require zero = 2^(bits-1)", () => {
    const b = base();
    expect(() =>
      createQuantizedLinear({ ...b, format: "int4-g64-sym-f16", zeros: b.zeros.map(() => 7) }),
    ).toThrow(/zeros\[0\] = 7, but the symmetric format int4-g64-sym-f16 has zero 8/);
  });

  it("bytes and bitsPerWeight count words, scales, zeros and gIdx (golden)", () => {
    const N = 4;
    const K = 256;
    const f = getFormat("int4-g128-asym-f16");
    const q = packQuantizedLinear(
      f,
      N,
      K,
      new Uint8Array(N * K),
      new Float32Array(N * 2).fill(1),
      new Float32Array(N * 2),
    );
    expect(bytes(q)).toBe(4 * 32 * 4 + 8 * 2 + 8 * 2); // 544
    expect(bitsPerWeight(q)).toBe(4.25);
    expect(bitsPerWeight(q)).toBe(f.bitsPerWeight);
    // tail group + padding: K = 100 at 4 bits → 13 words per row; 2 groups of f32 scales, no zeros.
    const s = getFormat("int4-g64-sym-f32");
    const q2 = packQuantizedLinear(s, 3, 100, new Uint8Array(300), new Float32Array(6).fill(1), undefined);
    expect(bytes(q2)).toBe(3 * 13 * 4 + 6 * 4);
    const g = packQuantizedLinear(
      s,
      3,
      100,
      new Uint8Array(300),
      new Float32Array(6).fill(1),
      undefined,
      new Int32Array(100),
    );
    expect(bytes(g)).toBe(bytes(q2) + 400);
  });
});
