import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getFormat } from "../formats/registry";
import { type AttentionArgs, referenceAttention } from "../reference/decode-attention";
import {
  qmatvecI8Applies,
  qmatvecI8Exponent,
  referenceQmatvecI8,
  referenceQmatvecI16,
} from "../reference/decode-qmatvec";
import { referenceDequantize } from "../reference/dequantize";
import { referenceQmatmul } from "../reference/qmatmul";
import { rtnQuantize } from "../rtn";
import type { QuantizedLinear } from "../types";
import { makeRng } from "../testing/random";
import { enableRelaxedSimd } from "./relaxed-simd";
import { type WasmBackend, createWasmBackend } from "./wasm-backend";
import { ATTN_PARALLEL, type DecodeKernels, QMV_PARALLEL, decodeKernels } from "./wasm-decode";

// The int8-activation decode matvec needs the relaxed-SIMD module (Node 20: behind a flag this turns on).
const relaxed = enableRelaxedSimd();

interface Case {
  rows: number;
  pos: number;
  window: number;
  nKv: number;
  group: number;
  hs: number;
  extra: number;
  seed: number;
}

/**
 * `k.qmatvec(q, x)` against `reference(q, x)` (the same integer rounding of x): they differ only in float32
 * summation order, |Δ| ≤ 2e-6·`bound` + 1e-6 with `bound` ≥ Σ|x| (|w| ≤ ~1).
 */
function expectQmatvecMatches(
  k: DecodeKernels,
  q: QuantizedLinear,
  x: Float32Array,
  reference: (q: QuantizedLinear, x: Float32Array, y: Float32Array) => void,
  bound = x.reduce((a, v) => a + Math.abs(v), 0),
): void {
  const N = q.outFeatures;
  const want = new Float32Array(N);
  reference(q, x, want);
  const got = new Float32Array(N);
  k.qmatvec(q, x, got);
  for (let n = 0; n < N; n++) expect(Math.abs(got[n] - want[n])).toBeLessThanOrEqual(2e-6 * bound + 1e-6);
}

/**
 * Extreme codes against full-scale activations: weights ±1 (asymmetric RTN puts every code at 0 or 2^bits − 1,
 * symmetric at ±qmax; each row holds one flipped weight, so rows 0 and 1 sit almost all at one end) and |x| all
 * equal (every rounded activation at its bound): `k.qmatvec` must still match `reference` for the `formats`
 * ([name, K] pairs), which `applies` must accept.
 */
function extremeCodesProperty(
  k: DecodeKernels,
  formats: [string, number][],
  applies: (q: QuantizedLinear) => boolean,
  reference: (q: QuantizedLinear, x: Float32Array, y: Float32Array) => void,
) {
  return fc.property(
    fc.constantFrom(...formats),
    fc.integer({ min: 1, max: 40 }),
    fc.constantFrom("random", "low", "high"),
    fc.constantFrom("random", "plus", "minus"),
    fc.integer({ min: 1, max: 1 << 30 }),
    ([name, K], N, codes, signs, seed) => {
      const rng = makeRng(seed);
      const W = new Float32Array(N * K);
      for (let n = 0; n < N; n++)
        for (let c = 0; c < K; c++) {
          const v = codes === "random" ? (rng() < 0.5 ? -1 : 1) : codes === "low" ? -1 : 1;
          W[n * K + c] = c === n % K ? -v : v;
        }
      const q = rtnQuantize(W, N, K, getFormat(name));
      expect(applies(q)).toBe(true);
      const x = new Float32Array(K);
      for (let i = 0; i < K; i++) x[i] = signs === "plus" ? 3 : signs === "minus" ? -3 : rng() < 0.5 ? -3 : 3;
      expectQmatvecMatches(k, q, x, reference, 3 * K);
    },
  );
}

function uniform(rng: () => number, n: number, a: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = a * (2 * rng() - 1);
  return out;
}

/** A random cache (slot layout of run-state: ring of window + rows − 1 slots, or every position). */
function makeCase(k: DecodeKernels | undefined, c: Case) {
  const rng = makeRng(c.seed);
  const nHeads = c.nKv * c.group;
  const kv = c.nKv * c.hs;
  const full = c.pos + c.rows;
  const cacheLen = c.window > 0 ? Math.min(full, c.window + c.rows - 1) : full + c.extra;
  const offset = 3 * kv;
  const n = offset + cacheLen * kv;
  const alloc = (m: number) => (k ? k.allocF32(m) : new Float32Array(m));
  const keys = alloc(n);
  const values = alloc(n);
  keys.set(uniform(rng, n, 2));
  values.set(uniform(rng, n, 1));
  const q = uniform(rng, c.rows * nHeads * c.hs, 2);
  const args: AttentionArgs = {
    q,
    out: new Float32Array(c.rows * nHeads * c.hs),
    keys,
    values,
    offset,
    cacheLen,
    rows: c.rows,
    pos: c.pos,
    window: c.window,
    nHeads,
    nKvHeads: c.nKv,
    headSize: c.hs,
    scale: 1 / Math.sqrt(c.hs),
  };
  return args;
}

const caseArb = fc.record({
  rows: fc.integer({ min: 1, max: 6 }),
  pos: fc.integer({ min: 0, max: 70 }),
  window: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 12 })),
  nKv: fc.integer({ min: 1, max: 3 }),
  group: fc.integer({ min: 1, max: 3 }),
  hs: fc.oneof(fc.integer({ min: 1, max: 70 }), fc.constantFrom(32, 48, 64, 128)),
  extra: fc.integer({ min: 0, max: 3 }),
  seed: fc.integer({ min: 1, max: 1 << 30 }),
});

describe.each([1, 2])("wasm attention (decode_attn.c), %i thread(s)", (threads) => {
  let be: WasmBackend;
  let k: DecodeKernels;
  beforeAll(async () => {
    be = await createWasmBackend({ threads });
    const kernels = decodeKernels(be);
    if (!kernels) throw new Error("no decode kernels on a shared-memory wasm backend");
    k = kernels;
  });
  afterAll(() => be.dispose());

  it("matches the scalar reference (GQA, sliding-window rings, any head size)", () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const a = makeCase(k, c);
        const want = new Float32Array(a.out.length);
        referenceAttention({ ...a, out: want });
        k.attention(a);
        // outputs are convex combinations of values in [−1, 1]: an absolute bound is a relative one
        for (let i = 0; i < want.length; i++) expect(Math.abs(a.out[i] - want[i])).toBeLessThan(2e-6);
        k.freeF32(a.keys);
        k.freeF32(a.values);
      }),
      { seed: 42, numRuns: 60 },
    );
  });

  it("a prefill block large enough for the threads matches too, with q and out in wasm memory", () => {
    const c = { rows: 96, pos: 40, window: 0, nKv: 2, group: 3, hs: 48, extra: 0, seed: 7 };
    expect(c.rows * (c.pos + c.rows) * c.nKv * c.group * c.hs).toBeGreaterThan(ATTN_PARALLEL);
    const a = makeCase(k, c);
    const q = k.allocF32(a.q.length);
    q.set(a.q);
    const out = k.allocF32(a.out.length);
    const want = new Float32Array(a.out.length);
    referenceAttention({ ...a, out: want });
    k.attention({ ...a, q, out });
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(out[i] - want[i]));
    expect(worst).toBeLessThan(2e-6);
    for (const v of [q, out, a.keys, a.values]) k.freeF32(v);
  });

  it("softmax stays exact-ish for large score gaps (exp underflow) and refuses bad calls", () => {
    const c = { rows: 1, pos: 9, window: 0, nKv: 1, group: 1, hs: 8, extra: 0, seed: 3 };
    const a = makeCase(k, c);
    a.q.fill(60);
    const want = new Float32Array(a.out.length);
    referenceAttention({ ...a, out: want });
    k.attention(a);
    for (let i = 0; i < want.length; i++) expect(Math.abs(a.out[i] - want[i])).toBeLessThan(1e-5);
    expect(() => k.attention({ ...a, keys: new Float32Array(a.keys.length) })).toThrow(/wasm memory/);
    expect(() => k.attention({ ...a, nHeads: 3, nKvHeads: 2 })).toThrow(/multiple of nKvHeads/);
    expect(() => k.attention({ ...a, pos: a.cacheLen })).toThrow(/cache slots/);
    expect(() => k.attention({ ...a, q: new Float32Array(2) })).toThrow(/q has 2 floats/);
  });
});

it("an ordinary-memory wasm backend has no decode kernels (a cache could not stay put)", async () => {
  const be = await createWasmBackend({ threads: 1, sharedMemory: false });
  expect(decodeKernels(be)).toBeUndefined();
  be.dispose();
});

describe.each([
  [1, false],
  [2, false],
  [1, relaxed],
])(
  "wasm decode qmatvec (decode_qmv.c, int16 activations), %i thread(s), relaxed SIMD %s",
  (threads, relaxedSimd) => {
    let be: WasmBackend;
    let k: DecodeKernels;
    beforeAll(async () => {
      be = await createWasmBackend({ threads, relaxedSimd });
      k = decodeKernels(be) as DecodeKernels;
    });
    afterAll(() => be.dispose());

    const FMTS = [
      "int4-g128-asym-f16",
      "int4-g32-sym-f32",
      "int4-pc-asym-f16",
      "int3-g64-asym-f16",
      "int2-g64-asym-f16",
      "int2-g128-sym-f16",
      "int2-pc-asym-f32",
      "int8-g64-asym-f16",
      "int8-g32-sym-f32",
      "int8-pc-asym-f16",
    ];

    it("matches the scalar reference (and the float matvec within the int16 rounding bound)", () => {
      fc.assert(
        fc.property(
          fc.constantFrom(...FMTS),
          fc.integer({ min: 1, max: 80 }),
          fc.integer({ min: 1, max: 400 }),
          fc.integer({ min: 1, max: 1 << 30 }),
          fc.boolean(),
          (name, N, K, seed, zeroGroup) => {
            const rng = makeRng(seed);
            const q = rtnQuantize(uniform(rng, N * K, 1), N, K, getFormat(name));
            const x = uniform(rng, K, 3);
            if (zeroGroup) x.fill(0, 0, Math.min(K, 64));
            if (!k.qmatvecSupports(q)) return;
            const want = new Float32Array(N);
            referenceQmatvecI16(q, x, want);
            const exact = new Float32Array(N);
            referenceQmatmul(x, 1, q, exact);
            const got = new Float32Array(N);
            k.qmatvec(q, x, got);
            let mag = 0;
            for (let i = 0; i < K; i++) mag += Math.abs(x[i]);
            for (let n = 0; n < N; n++) {
              // |w| ≤ ~1: float32 sums of K terms against the reference, the int16 bound against the exact one
              expect(Math.abs(got[n] - want[n])).toBeLessThanOrEqual(2e-6 * mag + 1e-6);
              expect(Math.abs(got[n] - exact[n])).toBeLessThanOrEqual((3 / 32767) * K + 2e-6 * mag);
            }
          },
        ),
        { seed: 42, numRuns: 80 },
      );
    });

    it("the four-row (4/8-bit) and two-row (2-bit) kernels (whole groups of 1–8 blocks) match the scalar reference, odd row counts included", () => {
      fc.assert(
        fc.property(
          fc.constantFrom(
            "int4-g128-asym-f16",
            "int4-g64-asym-f16",
            "int3-g128-asym-f16",
            "int2-g64-asym-f16",
            "int2-g128-sym-f16",
            "int8-g64-asym-f16",
            "int8-g128-asym-f16",
          ),
          fc.integer({ min: 1, max: 70 }),
          fc.integer({ min: 1, max: 6 }),
          fc.integer({ min: 1, max: 1 << 30 }),
          (name, N, groups, seed) => {
            const rng = makeRng(seed);
            const f = getFormat(name);
            const K = f.groupSize * groups;
            const q = rtnQuantize(uniform(rng, N * K, 1), N, K, f);
            expect(k.qmatvecSupports(q)).toBe(true);
            const x = uniform(rng, K, 3);
            expectQmatvecMatches(k, q, x, referenceQmatvecI16);
          },
        ),
        { seed: 7, numRuns: 60 },
      );
    });

    it("extreme codes against full-scale activations (the offset decode's correction at the int32 bound) match the reference", () => {
      fc.assert(
        extremeCodesProperty(
          k,
          [
            ["int8-pc-asym-f16", 512],
            ["int8-g64-asym-f16", 448],
            ["int4-g128-asym-f16", 384],
            ["int3-g64-asym-f16", 192],
            ["int2-g128-sym-f16", 256],
            ["int2-g64-asym-f16", 100],
          ],
          (q) => k.qmatvecSupports(q),
          referenceQmatvecI16,
        ),
        { seed: 11, numRuns: 60 },
      );
    });

    it("x and y in wasm memory (read and written in place, or copied when padded or overlapping) give the same result", () => {
      fc.assert(
        fc.property(
          fc.constantFrom(
            "int4-g128-asym-f16",
            "int2-g64-asym-f16",
            "int8-g64-asym-f16",
            "int3-g64-asym-f16",
          ),
          fc.integer({ min: 1, max: 70 }),
          fc.integer({ min: 1, max: 300 }),
          fc.constantFrom("separate", "overlap", "x only"),
          fc.integer({ min: 1, max: 1 << 30 }),
          (name, N, K, where, seed) => {
            const rng = makeRng(seed);
            const q = rtnQuantize(uniform(rng, N * K, 1), N, K, getFormat(name));
            if (!k.qmatvecSupports(q)) return;
            const x = uniform(rng, K, 3);
            const want = new Float32Array(N);
            k.qmatvec(q, x, want);
            // "overlap": y starts inside x's floats, so x must be read from a copy
            const buf = k.allocF32(K + N + 8);
            const xw = buf.subarray(0, K);
            xw.set(x);
            const yw =
              where === "overlap"
                ? buf.subarray(K >> 1, (K >> 1) + N)
                : where === "separate"
                  ? buf.subarray(K + 8, K + 8 + N)
                  : new Float32Array(N);
            k.qmatvec(q, xw, yw);
            for (let n = 0; n < N; n++) expect(yw[n]).toBe(want[n]);
            if (where !== "overlap") for (let i = 0; i < K; i++) expect(xw[i]).toBe(x[i]);
            k.freeF32(buf);
          },
        ),
        { seed: 13, numRuns: 60 },
      );
    });

    it("covers the shapes of a model (classifier-size layer across the threads) and refuses other formats", () => {
      const rng = makeRng(5);
      const N = 8000;
      const K = 288;
      expect(N * K).toBeGreaterThan(QMV_PARALLEL);
      const q = rtnQuantize(uniform(rng, N * K, 1), N, K, getFormat("int4-g128-asym-f16"));
      const x = uniform(rng, K, 1);
      const want = new Float32Array(N);
      referenceQmatvecI16(q, x, want);
      const got = k.allocF32(N);
      k.qmatvec(q, x, got);
      let worst = 0;
      for (let n = 0; n < N; n++) worst = Math.max(worst, Math.abs(got[n] - want[n]));
      expect(worst).toBeLessThan(1e-4);
      k.freeF32(got);
      // int8 per-channel over 600 columns could overflow int32 sums: refused like codebooks and split blocks
      for (const [name, K2, ok] of [
        ["int8-g64-asym-f16", 100, true],
        ["int8-pc-asym-f16", 600, false],
        ["nf4-g64-f16", 100, false],
        ["int4-g32-asym-f16", 100, true],
        ["int2-g32-asym-f16", 100, false],
      ] as const) {
        const r = rtnQuantize(uniform(rng, 4 * K2, 1), 4, K2, getFormat(name));
        expect(k.qmatvecSupports(r)).toBe(ok);
        if (!ok)
          expect(() => k.qmatvec(r, new Float32Array(K2), new Float32Array(4))).toThrow(
            /not a 1–8-bit affine/,
          );
      }
    });
  },
);

/**
 * `|y − W·x|` allowed by rounding x to int8 with one step per 32-column block b of group g, the group's step
 * `dx[g] = max_g |x| / 127` over 2^e[b] (e[b] the largest e ≤ E with `max_b |x| · 2^e ≤ max_g |x|`):
 * `Σ_b dx[g]·2^−e[b]/2 · Σ_{k∈b} |w[n,k]|` (+ float slack). With `perGroup`, the bound of one step per group
 * (e[b] = 0: the previous int8 path's, always at least as large).
 */
function int8Bound(q: ReturnType<typeof rtnQuantize>, x: Float32Array, perGroup = false): Float64Array {
  const N = q.outFeatures;
  const K = q.inFeatures;
  const w = new Float32Array(N * K);
  referenceDequantize(q, w);
  const gs = q.format.groupSize === -1 ? K : q.format.groupSize;
  const E = perGroup ? 0 : qmatvecI8Exponent(q);
  const out = new Float64Array(N);
  for (let g0 = 0; g0 < K; g0 += gs) {
    const g1 = Math.min(K, g0 + gs);
    let mx = 0;
    for (let k = g0; k < g1; k++) mx = Math.max(mx, Math.abs(x[k]));
    for (let b0 = g0; b0 < g1; b0 += 32) {
      const b1 = Math.min(g1, b0 + 32);
      let mb = 0;
      for (let k = b0; k < b1; k++) mb = Math.max(mb, Math.abs(x[k]));
      let e = 0;
      while (e < E && mb * 2 ** (e + 1) <= mx) e++;
      const step = (mx / 127) * 2 ** -e;
      for (let n = 0; n < N; n++) {
        let sw = 0;
        for (let k = b0; k < b1; k++) sw += Math.abs(w[n * K + k]);
        out[n] += (step / 2) * sw * (1 + 1e-5) + 1e-5 * mx * sw;
      }
    }
  }
  return out;
}

describe.runIf(relaxed).each([1, 2])(
  "wasm decode qmatvec with int8 activations (decode_qmv8.c, relaxed SIMD), %i thread(s)",
  (threads) => {
    let be: WasmBackend;
    let k: DecodeKernels;
    beforeAll(async () => {
      be = await createWasmBackend({ threads, relaxedSimd: true, decodeActivations: "int8" });
      k = decodeKernels(be) as DecodeKernels;
    });
    afterAll(() => be.dispose());

    it("matches the int8 scalar reference, and the float matvec within the int8 rounding bound", () => {
      // a fresh module: the first calls run in V8's baseline compiler (Liftoff), whose int32 relaxed dot product
      // is wrong on Node 20; the kernel must match from the first call on
      expect(k.qmatvecActivations).toBe("int8");
      fc.assert(
        fc.property(
          fc.constantFrom(
            "int4-g128-asym-f16",
            "int4-g32-sym-f32",
            "int4-pc-asym-f16",
            "int3-g64-asym-f16",
            "int3-pc-sym-f16",
          ),
          fc.integer({ min: 1, max: 80 }),
          fc.integer({ min: 1, max: 400 }),
          fc.integer({ min: 1, max: 1 << 30 }),
          fc.boolean(),
          (name, N, K, seed, zeroGroup) => {
            const rng = makeRng(seed);
            const q = rtnQuantize(uniform(rng, N * K, 1), N, K, getFormat(name));
            const x = uniform(rng, K, 3);
            if (zeroGroup) x.fill(0, 0, Math.min(K, 64));
            if (!qmatvecI8Applies(q)) return;
            const want = new Float32Array(N);
            referenceQmatvecI8(q, x, want);
            const exact = new Float32Array(N);
            referenceQmatmul(x, 1, q, exact);
            const bound = int8Bound(q, x);
            const got = new Float32Array(N);
            k.qmatvec(q, x, got);
            let mag = 0;
            for (let i = 0; i < K; i++) mag += Math.abs(x[i]);
            for (let n = 0; n < N; n++) {
              expect(Math.abs(got[n] - want[n])).toBeLessThanOrEqual(2e-6 * mag + 1e-6);
              expect(Math.abs(got[n] - exact[n])).toBeLessThanOrEqual(bound[n] + 2e-6 * mag + 1e-6);
            }
          },
        ),
        { seed: 42, numRuns: 80 },
      );
    });

    it("blocks of very different magnitudes in a group (an outlier, zero blocks) keep their own int8 steps: the reference matched, the per-block bound met", () => {
      fc.assert(
        fc.property(
          fc.constantFrom("int4-g128-asym-f16", "int4-pc-asym-f16", "int3-g64-asym-f16", "int4-g32-sym-f16"),
          fc.integer({ min: 1, max: 40 }),
          fc.integer({ min: 1, max: 12 }),
          fc.array(fc.integer({ min: -1, max: 20 }), { minLength: 12, maxLength: 12 }),
          fc.integer({ min: 1, max: 1 << 30 }),
          (name, N, blocks, shifts, seed) => {
            const rng = makeRng(seed);
            const K = 32 * blocks;
            const q = rtnQuantize(uniform(rng, N * K, 1), N, K, getFormat(name));
            expect(qmatvecI8Applies(q)).toBe(true);
            // block b scaled by 2^−shift (−1: a zero block), so a group's blocks sit up to 2^20 apart
            const x = uniform(rng, K, 4);
            for (let b = 0; b < blocks; b++)
              for (let i = 32 * b; i < 32 * b + 32; i++) x[i] = shifts[b] < 0 ? 0 : x[i] * 2 ** -shifts[b];
            expectQmatvecMatches(k, q, x, referenceQmatvecI8);
            const exact = new Float32Array(N);
            referenceQmatmul(x, 1, q, exact);
            const want = new Float32Array(N);
            referenceQmatvecI8(q, x, want);
            const bound = int8Bound(q, x);
            const groupBound = int8Bound(q, x, true);
            for (let n = 0; n < N; n++) {
              expect(Math.abs(want[n] - exact[n])).toBeLessThanOrEqual(bound[n] + 1e-6);
              expect(bound[n]).toBeLessThanOrEqual(groupBound[n] * (1 + 1e-9));
            }
          },
        ),
        { seed: 13, numRuns: 60 },
      );
    });

    it("an outlier column: the other blocks of its 128-column group round to 1/64 of the group's step or finer", () => {
      const rng = makeRng(21);
      const N = 16;
      const K = 256;
      const q = rtnQuantize(uniform(rng, N * K, 1), N, K, getFormat("int4-g128-asym-f16"));
      expect(qmatvecI8Exponent(q)).toBe(14);
      const x = uniform(rng, K, 1);
      x[3] = 100; // column 3: ~100× its group's other values
      x[200] = -60;
      const exact = new Float32Array(N);
      referenceQmatmul(x, 1, q, exact);
      const got = new Float32Array(N);
      k.qmatvec(q, x, got);
      const bound = int8Bound(q, x);
      const groupBound = int8Bound(q, x, true);
      for (let n = 0; n < N; n++) {
        expect(Math.abs(got[n] - exact[n])).toBeLessThanOrEqual(bound[n] + 1e-5);
        // three of each group's four blocks take a step 2^6 (or more) finer than the group's
        expect(bound[n]).toBeLessThan(groupBound[n] * 0.3);
      }
    });

    it("the four-row kernel over whole groups (one to many int16 runs a group), odd row counts included, matches the reference", () => {
      fc.assert(
        fc.property(
          fc.constantFrom(
            "int4-g128-asym-f16",
            "int4-g32-asym-f16",
            "int3-g128-asym-f16",
            "int4-pc-asym-f16",
            "int3-pc-asym-f16",
          ),
          fc.integer({ min: 1, max: 70 }),
          fc.integer({ min: 1, max: 24 }),
          fc.integer({ min: 1, max: 1 << 30 }),
          (name, N, blocks, seed) => {
            const rng = makeRng(seed);
            const f = getFormat(name);
            const K = f.groupSize === -1 ? 32 * blocks : f.groupSize * Math.ceil(blocks / 4);
            const q = rtnQuantize(uniform(rng, N * K, 1), N, K, f);
            expect(qmatvecI8Applies(q)).toBe(true);
            const x = uniform(rng, K, 3);
            expectQmatvecMatches(k, q, x, referenceQmatvecI8);
          },
        ),
        { seed: 7, numRuns: 60 },
      );
    });

    it("extreme codes against full-scale activations (the int16 sums at their bound) match the reference", () => {
      fc.assert(
        extremeCodesProperty(
          k,
          [
            ["int4-g128-asym-f16", 384],
            ["int4-pc-asym-f16", 1024],
            ["int3-g64-asym-f16", 192],
            ["int4-g32-sym-f16", 96],
          ],
          qmatvecI8Applies,
          referenceQmatvecI8,
        ),
        { seed: 11, numRuns: 60 },
      );
    });

    it("a classifier-size layer across the threads, x and y in wasm memory, and 1–2- and 5–8-bit layers on int16", () => {
      const rng = makeRng(5);
      const N = 8000;
      const K = 288;
      expect(N * K).toBeGreaterThan(QMV_PARALLEL);
      const q = rtnQuantize(uniform(rng, N * K, 1), N, K, getFormat("int4-g32-asym-f16"));
      const x = uniform(rng, K, 1);
      const want = new Float32Array(N);
      referenceQmatvecI8(q, x, want);
      const xw = k.allocF32(K);
      xw.set(x);
      const got = k.allocF32(N);
      k.qmatvec(q, xw, got);
      let worst = 0;
      for (let n = 0; n < N; n++) worst = Math.max(worst, Math.abs(got[n] - want[n]));
      expect(worst).toBeLessThan(1e-4);
      k.freeF32(got);
      k.freeF32(xw);
      // int8 codes do not fit the 7-bit operand, and 2-bit ones run no faster: such layers keep int16 activations
      for (const name of ["int8-g64-asym-f16", "int2-g64-asym-f16", "int2-pc-sym-f16"]) {
        const q8 = rtnQuantize(uniform(rng, 40 * 128, 1), 40, 128, getFormat(name));
        expect(qmatvecI8Applies(q8)).toBe(false);
        expect(k.qmatvecSupports(q8)).toBe(true);
        const x8 = uniform(rng, 128, 2);
        const want8 = new Float32Array(40);
        referenceQmatvecI16(q8, x8, want8);
        const got8 = new Float32Array(40);
        k.qmatvec(q8, x8, got8);
        for (let n = 0; n < 40; n++) expect(Math.abs(got8[n] - want8[n])).toBeLessThan(1e-4);
      }
    });
  },
);

it("decodeActivations: int16 by default, int8 only on the relaxed-SIMD module, anything else refused", async () => {
  const plain = await createWasmBackend({ threads: 1, relaxedSimd: false });
  try {
    expect(decodeKernels(plain)?.qmatvecActivations).toBe("int16");
  } finally {
    plain.dispose();
  }
  await expect(
    createWasmBackend({ threads: 1, relaxedSimd: false, decodeActivations: "int8" }),
  ).rejects.toThrow(/decodeActivations "int8" needs the relaxed-SIMD module/);
  await expect(
    createWasmBackend({ threads: 1, decodeActivations: "int4" as unknown as "int8" }),
  ).rejects.toThrow(/decodeActivations must be "int8" or "int16", got int4/);
  const rq = rtnQuantize(new Float32Array(4 * 64), 4, 64, getFormat("nf4-g64-f16"));
  expect(qmatvecI8Applies(rq)).toBe(false);
  expect(() => referenceQmatvecI8(rq, new Float32Array(64), new Float32Array(4))).toThrow(
    /not a 3–4-bit affine format/,
  );
});
