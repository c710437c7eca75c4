import type { Bits } from "@int21/bitpack";
import { createReferenceBackend, getFormat, rtnQuantize } from "@int21/quant-kernels";
import fc from "fast-check";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createGpuJsBackend, GPUJS_MAX_INDEX, type GpuJsBackend, type GpuJsMode } from "./gpujs-backend";
import {
  loopBackend,
  randomFloats,
  randomLayer,
  refDequantize,
  refQmatmul,
  refQmatmulT,
  refSgemm,
  worstError,
} from "./test-fixtures";

// gpu.js is an optional peer dependency: without it these blocks skip, and say so.
const gpujsMissing = await import("gpu.js").then(
  () => null,
  (e: Error) => e.message.split("\n")[0],
);
if (gpujsMissing)
  console.warn(`[@int21/gpu] skipping gpu.js tests: gpu.js is not installed (${gpujsMissing})`);

// float32 accumulation over K ≤ 200 terms of |x·w| ≤ 0.8: a relative 1e-5 of (1 + |want|) is ample.
const TOL = 1e-5;
const MODES: GpuJsMode[] = ["cpu", "webasm"];

describe.skipIf(gpujsMissing !== null).each(MODES)("gpu.js backend, mode %s", (mode) => {
  const warnings: string[] = [];
  const fallback = loopBackend();
  const ready = createGpuJsBackend({ mode, fallback, warn: (m) => warnings.push(m) });
  let backend: GpuJsBackend;
  afterAll(async () => (await ready).dispose());
  // Every case below must have run on gpu.js, not on the fallback.
  afterEach(() => expect(fallback.calls).toBe(0));

  it("runs in the requested mode (no fallback)", async () => {
    backend = await ready;
    expect(backend.fallbackReason).toBeNull();
    expect(warnings).toEqual([]);
    expect(backend.mode).toBe(mode);
    expect(backend.name).toBe(`gpujs-${mode}`);
    expect(
      backend.supports("qmatmul", randomLayer({ N: 1, K: 1, bits: 3, groupSize: 32, seed: 0 }).format),
    ).toBe(true);
  });

  const layerArb = fc.record({
    bits: fc.constantFrom<Bits>(1, 2, 3, 4, 8),
    N: fc.integer({ min: 1, max: 9 }),
    K: fc.integer({ min: 1, max: 80 }),
    groupSize: fc.constantFrom(32, 64, -1),
    symmetric: fc.boolean(),
    actOrder: fc.boolean(),
    rows: fc.integer({ min: 1, max: 3 }),
    seed: fc.integer(),
  });

  it("qmatmul, qmatmulT and dequantize equal the reference loops (formats × shapes × act-order)", async () => {
    backend = await ready;
    fc.assert(
      fc.property(layerArb, (s) => {
        const q = randomLayer(s);
        const x = randomFloats(s.rows * s.K, s.seed ^ 1);
        const g = randomFloats(s.rows * s.N, s.seed ^ 2);
        const y = new Float32Array(s.rows * s.N).fill(Number.NaN);
        const dx = new Float32Array(s.rows * s.K).fill(Number.NaN);
        const w = new Float32Array(s.N * s.K).fill(Number.NaN);
        backend.qmatmul(x, s.rows, q, y);
        backend.qmatmulT(g, s.rows, q, dx);
        backend.dequantize(q, w);
        expect(worstError(y, refQmatmul(x, s.rows, q), TOL)).toBeLessThanOrEqual(1);
        expect(worstError(dx, refQmatmulT(g, s.rows, q), TOL)).toBeLessThanOrEqual(1);
        expect(worstError(w, refDequantize(q), 1e-7)).toBeLessThanOrEqual(1);
      }),
      { seed: 42, numRuns: 25 },
    );
  });

  it("sgemm equals the reference (transposes, offsets, leading dimensions, alpha, beta)", async () => {
    backend = await ready;
    fc.assert(
      fc.property(
        fc.record({
          M: fc.integer({ min: 1, max: 7 }),
          N: fc.integer({ min: 1, max: 7 }),
          K: fc.integer({ min: 0, max: 20 }),
          transA: fc.boolean(),
          transB: fc.boolean(),
          pad: fc.integer({ min: 0, max: 3 }),
          off: fc.integer({ min: 0, max: 5 }),
          alpha: fc.constantFrom(1, -0.5, 2),
          beta: fc.constantFrom(0, 1, 0.25),
          seed: fc.integer(),
        }),
        (s) => {
          const [aRows, aCols] = s.transA ? [s.K, s.M] : [s.M, s.K];
          const [bRows, bCols] = s.transB ? [s.N, s.K] : [s.K, s.N];
          const lda = aCols + s.pad;
          const ldb = bCols + s.pad;
          const ldc = s.N + s.pad;
          const A = randomFloats(s.off + aRows * lda, s.seed);
          const B = randomFloats(s.off + bRows * ldb, s.seed ^ 5);
          const C = randomFloats(s.off + s.M * ldc, s.seed ^ 9);
          if (s.beta === 0) C.fill(Number.NaN);
          const args = {
            ...s,
            A,
            B,
            C,
            lda,
            ldb,
            ldc,
            aOffset: s.off,
            bOffset: s.off,
            cOffset: s.off,
          };
          const want = refSgemm(args);
          backend.sgemm(args);
          // entries outside the C view keep their old value (NaN compares via Object.is)
          for (let i = 0; i < C.length; i++) {
            if (Number.isNaN(want[i])) expect(C[i]).toBeNaN();
            else expect(Math.abs(C[i] - want[i])).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(want[i])));
          }
        },
      ),
      { seed: 42, numRuns: 30 },
    );
  });

  it("golden: a 2×3 INT2 layer by hand", async () => {
    backend = await ready;
    const q = randomLayer({ N: 2, K: 3, bits: 2, groupSize: -1, seed: 7 });
    const w = new Float32Array(6);
    backend.dequantize(q, w);
    // w[n,k] = scale_n * (code - zero_n), codes and parameters read back from the record
    const codes = [0, 1, 2].map((k) => (q.qweight.words[0] >>> (2 * k)) & 3);
    expect(w[1]).toBeCloseTo(q.scales[0] * (codes[1] - q.zeros[0]), 6);
    const y = new Float32Array(2);
    backend.qmatmul(new Float32Array([1, 0, 0]), 1, q, y);
    expect(y[0]).toBeCloseTo(w[0], 6);
    expect(y[1]).toBeCloseTo(w[3], 6);
  });

  it("rejects short buffers with an error naming the tensor", async () => {
    backend = await ready;
    const q = randomLayer({ N: 4, K: 10, bits: 4, groupSize: 32, seed: 1 });
    expect(() => backend.qmatmul(new Float32Array(10), 1, q, new Float32Array(3))).toThrow(
      /qmatmul: y needs 4 floats, has 3/,
    );
    expect(() => backend.qmatmulT(new Float32Array(3), 1, q, new Float32Array(10))).toThrow(
      /qmatmulT: g needs 1×4 = 4 floats/,
    );
    expect(() => backend.dequantize(q, new Float32Array(39))).toThrow(/dequantize: out needs 40 floats/);
    expect(() =>
      backend.sgemm({
        M: 2,
        N: 2,
        K: 2,
        A: new Float32Array(3),
        B: new Float32Array(4),
        C: new Float32Array(4),
      }),
    ).toThrow(/sgemm: A needs 4 elements, has 3/);
  });
});

describe.skipIf(gpujsMissing !== null)("gpu.js backend size limit", () => {
  it("runs problems with an index at or above 2^24 on the fallback (float32 indices would round)", async () => {
    const fallback = loopBackend();
    const b = await createGpuJsBackend({ mode: "cpu", fallback, warn: () => {} });
    const A = new Float32Array(GPUJS_MAX_INDEX);
    A[GPUJS_MAX_INDEX - 1] = 3;
    const C = new Float32Array(1);
    b.sgemm({ M: 1, N: 1, K: 1, A, B: new Float32Array([2]), C, aOffset: GPUJS_MAX_INDEX - 1 });
    expect(C[0]).toBe(6);
    expect(fallback.calls).toBe(1);
    b.sgemm({ M: 1, N: 1, K: 1, A, B: new Float32Array([2]), C, aOffset: 5 });
    expect(fallback.calls).toBe(1);
    b.dispose();
  });
});

describe("gpu.js backend fallback", () => {
  it("says once why a mode is unavailable and runs every kernel on the fallback", async () => {
    const warnings: string[] = [];
    const fallback = loopBackend();
    // A module whose GPU cannot be constructed stands for a mode this machine lacks (no GL context).
    const broken = {
      GPU: class {
        constructor() {
          throw new Error('A requested mode of "webgl2" and is not supported');
        }
      },
    };
    const b = await createGpuJsBackend({
      mode: "webgl2",
      fallback,
      gpujs: broken as never,
      warn: (m) => warnings.push(m),
    });
    expect(b.fallbackReason).toMatch(/gpu.js mode "webgl2" is unavailable/);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/running on the test-loops backend instead/);
    expect(b.supports("qmatmul")).toBe(false);
    const q = randomLayer({ N: 3, K: 20, bits: 2, groupSize: 32, seed: 2 });
    const x = randomFloats(20, 1);
    const y = new Float32Array(3);
    b.qmatmul(x, 1, q, y);
    expect(fallback.calls).toBe(1);
    expect(worstError(y, refQmatmul(x, 1, q), TOL)).toBeLessThanOrEqual(1);
    expect(warnings).toHaveLength(1);
    b.dispose();
  });
});

describe.skipIf(gpujsMissing !== null)("gpu.js backend and codebook formats", () => {
  it("reports NF4 / IQ4_NL unsupported and runs them on its fallback (the codebook result, not an affine one)", async () => {
    const ref = createReferenceBackend();
    let calls = 0;
    const fallback = {
      ...ref,
      qmatmul: (...a: Parameters<typeof ref.qmatmul>) => {
        calls++;
        ref.qmatmul(...a);
      },
    };
    const b = await createGpuJsBackend({ mode: "cpu", fallback });
    try {
      for (const name of ["nf4-g64-f32", "iq4_nl"]) {
        const f = getFormat(name);
        for (const k of ["dequantize", "qmatmul", "qmatmulT"] as const) expect(b.supports(k, f)).toBe(false);
        const q = rtnQuantize(randomFloats(5 * 64, 3), 5, 64, f);
        const x = randomFloats(2 * 64, 4);
        const want = new Float32Array(10);
        ref.qmatmul(x, 2, q, want);
        const got = new Float32Array(10);
        b.qmatmul(x, 2, q, got);
        expect(got).toEqual(want);
      }
      expect(calls).toBe(2);
      expect(b.supports("qmatmul", getFormat("int4-g32-asym-f16"))).toBe(true);
    } finally {
      b.dispose();
    }
  });
});
