import { packMatrix } from "@int21/bitpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isF16Exact } from "../f16";
import { NOMINAL_K } from "./format";
import { FORMATS, formatNames, getFormat, makeFormat } from "./registry";

describe("format registry", () => {
  it("has 64 affine formats (+ 7 codebook formats) with unique stable ids and names", () => {
    expect(FORMATS.filter((f) => f.decode === "affine").length).toBe(64);
    expect(FORMATS.filter((f) => f.decode === "lut").map((f) => f.name)).toEqual([
      "nf4-g32-f16",
      "nf4-g32-f32",
      "nf4-g64-f16",
      "nf4-g64-f32",
      "nf4-g128-f16",
      "nf4-g128-f32",
      "iq4_nl",
    ]);
    expect(new Set(FORMATS.map((f) => f.id)).size).toBe(FORMATS.length);
    expect(new Set(formatNames()).size).toBe(FORMATS.length);
    // Stable ids: these never change.
    expect(getFormat("int4-g128-asym-f16").id).toBe(431);
    expect(getFormat("int2-g64-asym-f16").id).toBe(221);
    expect(getFormat("int8-pc-sym-f32").id).toBe(842);
    expect(getFormat("int3-g32-sym-f16").id).toBe(313);
  });

  it("looks formats up by name, id, record and parameters", () => {
    for (const f of FORMATS) {
      expect(getFormat(f.name)).toBe(f);
      expect(getFormat(f.id)).toBe(f);
      expect(getFormat({ ...f })).toBe(f);
      if (f.decode !== "affine") continue; // makeFormat builds INT formats only
      expect(
        makeFormat({
          bits: f.bits,
          groupSize: f.groupSize,
          symmetric: f.symmetric,
          scaleDtype: f.scaleDtype,
        }),
      ).toBe(f);
    }
  });

  it("rejects unknown formats and bad parameters with clear errors", () => {
    expect(() => getFormat("int5-g128-asym-f16")).toThrow(
      /unknown format "int5-g128-asym-f16"; known formats: int2-g32/,
    );
    expect(() => getFormat(999)).toThrow(/unknown format 999/);
    expect(() => getFormat({ ...getFormat(431), name: "other" })).toThrow(/does not match/);
    expect(() => makeFormat({ bits: 5 as 4, groupSize: 128, symmetric: false, scaleDtype: "f16" })).toThrow(
      /bits/,
    );
    expect(() => makeFormat({ bits: 4, groupSize: 48 as 64, symmetric: false, scaleDtype: "f16" })).toThrow(
      /groupSize/,
    );
    expect(() =>
      makeFormat({ bits: 4, groupSize: 64, symmetric: false, scaleDtype: "bf16" as "f16" }),
    ).toThrow(/scaleDtype/);
  });

  it("byte layouts and bits per weight (golden)", () => {
    expect(getFormat("int4-g128-asym-f16").layout).toBe("q: u32[16] | scale: f16 | zero: f16 → 4.25 bpw");
    expect(getFormat("int2-g64-asym-f16").layout).toBe("q: u32[4] | scale: f16 | zero: f16 → 2.5 bpw");
    expect(getFormat("int2-g32-sym-f32").layout).toBe("q: u32[2] | scale: f32 → 3 bpw");
    expect(getFormat("int3-g128-sym-f16").bitsPerWeight).toBe(3.125);
    expect(getFormat("int8-g32-asym-f32").bitsPerWeight).toBe(10);
    expect(getFormat("int4-pc-asym-f16").bitsPerWeight).toBe(4 + 32 / NOMINAL_K);
    expect(getFormat("int4-pc-asym-f16").bitsPerWeightAt(64)).toBe(4.5);
    expect(getFormat("int4-g128-asym-f16").bitsPerWeightAt(100)).toBe(4 + 32 / 100);
  });

  // The ggml block formats (decode "block") have no planar groups: formats/ggml-blocks.test.ts covers them.
  const planar = FORMATS.filter((f) => f.decode !== "block");

  it("bytesPerGroup equals the packed words of one group plus its parameters", () => {
    for (const f of planar) {
      const G = f.groupSize === -1 ? NOMINAL_K : f.groupSize;
      const packed = packMatrix(new Uint8Array(G), 1, G, f.bits);
      const params = (f.symmetric ? 1 : 2) * (f.scaleDtype === "f16" ? 2 : 4);
      expect(f.bytesPerGroup, f.name).toBe(packed.words.length * 4 + params);
      expect(f.bitsPerWeight, f.name).toBe((f.bytesPerGroup * 8) / G);
      expect(f.layout).toContain(`q: u32[${packed.words.length}]`);
    }
  });

  it("quantizeGroup golden vectors", () => {
    const a = getFormat("int2-g32-asym-f32");
    const codes = new Uint8Array(4);
    const p = a.quantizeGroup(new Float32Array([-1, 0, 0.5, 2]), 0, 4, 1, codes, 0);
    expect(p).toEqual({ scale: 1, zero: 1 });
    expect(Array.from(codes)).toEqual([0, 1, 2, 3]);
    const out = new Float32Array(4);
    a.dequantizeGroup(codes, 0, 4, 1, p, out, 0);
    expect(Array.from(out)).toEqual([-1, 0, 1, 2]);

    const s = getFormat("int4-g32-sym-f32");
    const c2 = new Uint8Array(3);
    const p2 = s.quantizeGroup(new Float32Array([-0.8, 0.3, 0.7]), 0, 3, 1, c2, 0);
    expect(p2.zero).toBe(8);
    expect(p2.scale).toBe(Math.fround(0.1));
    expect(Array.from(c2)).toEqual([0, 11, 15]);

    // all-zero group: positive scale, exact zeros
    const z = getFormat("int3-g64-asym-f16");
    const c3 = new Uint8Array(5);
    const p3 = z.quantizeGroup(new Float32Array(5), 0, 5, 1, c3, 0);
    expect(p3.scale).toBeGreaterThan(0);
    const o3 = new Float32Array(5).fill(9);
    z.dequantizeGroup(c3, 0, 5, 1, p3, o3, 0);
    expect(Array.from(o3)).toEqual([0, 0, 0, 0, 0]);
  });

  it("quantize → dequantize error stays within errorBound; f16 params are f16 values (property)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...planar),
        fc.float32Array({
          minLength: 1,
          maxLength: 140,
          min: -1e3,
          max: 1e3,
          noNaN: true,
          noDefaultInfinity: true,
        }),
        fc.constantFrom(1e-6, 1e-3, 1, 50),
        (f, raw, mul) => {
          const w = raw.map((x) => x * mul);
          const codes = new Uint8Array(w.length);
          const p = f.quantizeGroup(w, 0, w.length, 1, codes, 0);
          const out = new Float32Array(w.length);
          f.dequantizeGroup(codes, 0, w.length, 1, p, out, 0);
          let lo = Number.POSITIVE_INFINITY;
          let hi = Number.NEGATIVE_INFINITY;
          for (const x of w) {
            lo = Math.min(lo, x);
            hi = Math.max(hi, x);
          }
          const bound = f.errorBound(lo, hi);
          for (let i = 0; i < w.length; i++) expect(Math.abs(out[i] - w[i])).toBeLessThanOrEqual(bound);
          if (f.decode === "affine") {
            expect(p.scale).toBeGreaterThan(0);
            expect(p.zero >= 0 && p.zero <= f.qmax && Number.isInteger(p.zero)).toBe(true);
          } else {
            // Codebook formats: a signed, non-zero scale and no zero point.
            expect(Number.isFinite(p.scale) && p.scale !== 0).toBe(true);
            expect(p.zero).toBe(0);
          }
          if (f.scaleDtype === "f16") expect(isF16Exact(p.scale)).toBe(true);
        },
      ),
      { seed: 42, numRuns: 600 },
    );
  });

  it("throws a clear error when an f16 scale would overflow", () => {
    const f = getFormat("int2-g32-asym-f16");
    expect(() => f.quantizeGroup(new Float32Array([0, 3e5]), 0, 2, 1, new Uint8Array(2), 0)).toThrow(
      /int2-g32-asym-f16: a group needs scale 100000.*max 65504/,
    );
    expect(getFormat("int2-g32-asym-f32").params(0, 3e5).scale).toBe(1e5);
  });

  it("the bound is tight: half a step is reached on evenly spread values", () => {
    const f = getFormat("int2-g32-asym-f32");
    const w = Float32Array.from({ length: 32 }, (_, i) => -1 + (3 * i) / 31);
    const codes = new Uint8Array(32);
    const p = f.quantizeGroup(w, 0, 32, 1, codes, 0);
    const out = new Float32Array(32);
    f.dequantizeGroup(codes, 0, 32, 1, p, out, 0);
    const worst = Math.max(...w.map((x, i) => Math.abs(x - out[i])));
    expect(worst).toBeGreaterThan(0.4 * f.errorBound(-1, 2));
  });
});
