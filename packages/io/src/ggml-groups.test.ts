import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GGML_GROUP_TYPES, ggmlToGroups } from "./ggml-groups";
import { GGML_TYPES, type GgmlTypeName } from "./ggml-types";
import { f32BitsToF16 } from "./half";

/** Byte offsets of each block's f16 fields (set to finite values so that comparisons are meaningful). */
const HALF_FIELDS: Record<string, number[]> = {
  Q8_0: [0],
  Q4_0: [0],
  Q4_1: [0, 2],
  Q5_0: [0],
  Q5_1: [0, 2],
  Q2_K: [80, 82],
  Q3_K: [108],
  Q4_K: [0, 2],
  Q5_K: [0, 2],
  Q6_K: [208],
};

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function blocks(type: GgmlTypeName, bytes: number[], halves: number[]): Uint8Array {
  const t = GGML_TYPES[type];
  const src = Uint8Array.from(bytes);
  const nBlocks = src.length / t.blockBytes;
  let h = 0;
  for (let b = 0; b < nBlocks; b++) {
    for (const off of HALF_FIELDS[type]) {
      f32[0] = halves[h++ % halves.length];
      const bits = f32BitsToF16(u32[0]);
      src[b * t.blockBytes + off] = bits & 255;
      src[b * t.blockBytes + off + 1] = bits >> 8;
    }
  }
  return src;
}

describe("ggmlToGroups", () => {
  for (const type of GGML_GROUP_TYPES) {
    it(`${type}: scale * (q - zero) equals the dequantized weights (property)`, () => {
      const t = GGML_TYPES[type];
      const arb = fc.integer({ min: 1, max: 3 }).chain((n) =>
        fc.tuple(
          fc.array(fc.integer({ min: 0, max: 255 }), {
            minLength: n * t.blockBytes,
            maxLength: n * t.blockBytes,
          }),
          fc.array(fc.double({ min: -2, max: 2, noNaN: true }), { minLength: 1, maxLength: 6 }),
        ),
      );
      fc.assert(
        fc.property(arb, ([bytes, halves]) => {
          const src = blocks(type, bytes, halves);
          const count = (src.length / t.blockBytes) * t.blockSize;
          const want = t.dequantize?.(src, new Float32Array(count), count) as Float32Array;
          const g = ggmlToGroups(type, src, count);
          expect(g.q.length).toBe(count);
          expect(g.scales.length).toBe(count / g.groupSize);
          for (let i = 0; i < count; i++) {
            const k = Math.floor(i / g.groupSize);
            if (g.q[i] >= 1 << g.bits) expect.fail(`code ${g.q[i]} at ${i} exceeds ${g.bits} bits`);
            const got = Math.fround(g.scales[k] * (g.q[i] - g.zeros[k]));
            if (g.exact) {
              if (got !== want[i] && !(got === 0 && want[i] === 0))
                expect.fail(`${type} weight ${i}: ${got} != ${want[i]}`);
            } else {
              const scale = Math.abs(g.scales[k] * g.q[i]) + Math.abs(g.scales[k] * g.zeros[k]);
              expect(Math.abs(got - want[i])).toBeLessThanOrEqual(2 ** -21 * scale + 1e-30);
            }
          }
        }),
        { seed: 42, numRuns: 40 },
      );
    });
  }

  it("reports exactness and code width per type", () => {
    const info = (type: GgmlTypeName) => {
      const t = GGML_TYPES[type];
      const g = ggmlToGroups(type, new Uint8Array(t.blockBytes), t.blockSize);
      return [g.bits, g.groupSize, g.exact];
    };
    expect(info("Q4_0")).toEqual([4, 32, true]);
    expect(info("Q8_0")).toEqual([8, 32, true]);
    expect(info("Q3_K")).toEqual([3, 16, true]);
    expect(info("Q6_K")).toEqual([6, 16, true]);
    expect(info("Q4_K")).toEqual([4, 32, false]);
    expect(info("Q2_K")).toEqual([2, 16, false]);
  });

  it("refuses types without an integer-group form and partial blocks", () => {
    expect(() => ggmlToGroups("IQ2_XXS", new Uint8Array(66), 256)).toThrow(
      /IQ2_XXS has no integer-group form/,
    );
    expect(() => ggmlToGroups("Q4_0", new Uint8Array(18), 16)).toThrow(
      /count 16 is not a multiple of the block size 32/,
    );
    expect(() => ggmlToGroups("Q6_K", new Uint8Array(100), 256)).toThrow(
      /source has 100 bytes, 256 weights need 210/,
    );
  });
});
