import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { dequantizeRows } from "./dequantize-rows";
import { FORMATS } from "./formats/registry";
import { packQuantizedLinear } from "./quantized-linear";
import { createReferenceBackend } from "./reference/backend";
import { rtnQuantize } from "./rtn";
import { makeRng, randomGIdx, randomWeights } from "./testing/random";

const ref = createReferenceBackend();

describe("dequantizeRows", () => {
  it("golden: gathers rows 1, 0, 1 of a 2×4 INT2 per-channel asymmetric matrix", () => {
    // row 0: scale 1, zero 1, codes 0 1 2 3 → -1 0 1 2; row 1: scale 0.5, zero 0, codes 1 1 3 0.
    const q = packQuantizedLinear(
      "int2-pc-asym-f32",
      2,
      4,
      [0, 1, 2, 3, 1, 1, 3, 0],
      new Float32Array([1, 0.5]),
      new Float32Array([1, 0]),
    );
    const out = new Float32Array(12);
    dequantizeRows(q, [1, 0, 1], out);
    expect(Array.from(out)).toEqual([0.5, 0.5, 1.5, 0, -1, 0, 1, 2, 0.5, 0.5, 1.5, 0]);
  });

  it("equals the matching rows of the reference dequantize of the whole matrix, every format (property)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...FORMATS),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 0, max: 12 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 1e9 }),
        (f, N, K0, T, actOrder, seed) => {
          // ggml block formats: whole blocks (1–2), no act-order.
          const block = f.decode === "block";
          const K = block ? f.groupSize * (1 + (K0 % 2)) : K0;
          const W = randomWeights(N * K, seed, 0.05, 0.02);
          const gIdx = actOrder && !block ? randomGIdx(K, f.groupSize, seed ^ 0x5bd1) : undefined;
          const q = rtnQuantize(W, N, K, f, { gIdx });
          const full = new Float32Array(N * K);
          ref.dequantize(q, full);
          const rng = makeRng(seed);
          const rows = Array.from({ length: T }, () => Math.floor(rng() * N));
          const out = new Float32Array(T * K).fill(Number.NaN);
          dequantizeRows(q, Int32Array.from(rows), out);
          for (let i = 0; i < T; i++) {
            const want = full.subarray(rows[i] * K, (rows[i] + 1) * K);
            expect(Array.from(out.subarray(i * K, (i + 1) * K)), `${f.name} row ${rows[i]}`).toEqual(
              Array.from(want),
            );
          }
        },
      ),
      { seed: 42, numRuns: 300 },
    );
  });

  it("rejects out-of-range or fractional row ids and a wrong out length, naming them", () => {
    const q = rtnQuantize(randomWeights(5 * 70, 1), 5, 70, "int4-g64-asym-f16");
    expect(() => dequantizeRows(q, [0, 5], new Float32Array(140))).toThrow(
      /rows\[1\] = 5 is not a row id in \[0, 5\)/,
    );
    expect(() => dequantizeRows(q, [-1], new Float32Array(70))).toThrow(/rows\[0\] = -1/);
    expect(() => dequantizeRows(q, [1.5], new Float32Array(70))).toThrow(/rows\[0\] = 1.5/);
    expect(() => dequantizeRows(q, [Number.NaN], new Float32Array(70))).toThrow(/rows\[0\] = NaN/);
    expect(() => dequantizeRows(q, [0, 1], new Float32Array(139))).toThrow(
      /out has 139 floats, expected rows.length × K = 2 × 70 = 140/,
    );
    expect(() => dequantizeRows(q, [0], new Float64Array(70) as unknown as Float32Array)).toThrow(
      /out must be a Float32Array/,
    );
    const empty = new Float32Array(0);
    dequantizeRows(q, [], empty);
    expect(empty.length).toBe(0);
  });
});
