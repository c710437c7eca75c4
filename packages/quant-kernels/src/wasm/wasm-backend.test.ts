import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FORMATS, getFormat } from "../formats/registry";
import { createReferenceBackend } from "../reference/backend";
import { rtnQuantize } from "../rtn";
import { randomGIdx, randomUniform, randomWeights, runBackendConformance } from "../testing";
import { maxRelErr } from "../testing/tolerances";
import type { QuantizedLinear } from "../types";
import { type WasmBackend, createWasmBackend } from "./wasm-backend";

runBackendConformance("wasm (1 thread)", () => createWasmBackend({ threads: 1 }));
runBackendConformance("wasm (2 threads)", () => createWasmBackend({ threads: 2 }));
runBackendConformance("wasm (ordinary memory, as in non-isolated browsers)", () =>
  createWasmBackend({ threads: 1, sharedMemory: false }),
);

const ref = createReferenceBackend();

describe.each([1, 2])(
  "wasm backend, %i thread(s), shapes that take the threaded and tiled paths",
  (threads) => {
    let be: WasmBackend;
    beforeAll(async () => {
      be = await createWasmBackend({ threads });
    });
    afterAll(() => be.dispose());

    it("reports its thread count and supports every registered format", () => {
      expect(be.threads).toBe(threads);
      for (const f of FORMATS) {
        for (const k of ["sgemm", "dequantize", "qmatmul", "qmatmulT"] as const)
          expect(be.supports(k, f)).toBe(true);
      }
    });

    it("sgemm 300×520×260 (several KC blocks, edges, parallel split) matches the reference", () => {
      const M = 300;
      const N = 520;
      const K = 260;
      const A = randomUniform(M * K, 1);
      const B = randomUniform(N * K, 2);
      const want = randomUniform(M * N, 3);
      const got = want.slice();
      ref.sgemm({ M, N, K, A, B, C: want, transB: true, alpha: 0.5, beta: -1 });
      be.sgemm({ M, N, K, A, B, C: got, transB: true, alpha: 0.5, beta: -1 });
      expect(maxRelErr(got, want)).toBeLessThan(1e-5);
    });

    it("matvec 1×1030×700 with bConst keeps B resident and matches after B's first use", () => {
      const N = 1030;
      const K = 700;
      const x = randomUniform(K, 4);
      const B = randomUniform(N * K, 5);
      const want = new Float32Array(N);
      ref.sgemm({ M: 1, N, K, A: x, B, C: want, transB: true });
      const before = be.memoryBytes();
      for (let i = 0; i < 2; i++) {
        const got = new Float32Array(N);
        be.sgemm({ M: 1, N, K, A: x, B, C: got, transB: true, bConst: true });
        expect(maxRelErr(got, want)).toBeLessThan(1e-5);
      }
      expect(be.memoryBytes()).toBeGreaterThanOrEqual(before + N * K * 4);
      be.evict(B);
      expect(be.memoryBytes()).toBeLessThan(before + N * K * 4);
    });

    it("matvec with B not transposed, 1×1100×1000 (split across threads; kernels use per-thread C stacks)", () => {
      const N = 1100;
      const K = 1000;
      const x = randomUniform(K, 30);
      const B = randomUniform(K * N, 31);
      const want = new Float32Array(N);
      const got = new Float32Array(N);
      for (let i = 0; i < 3; i++) {
        ref.sgemm({ M: 1, N, K, A: x, B, C: want, alpha: 2 });
        be.sgemm({ M: 1, N, K, A: x, B, C: got, alpha: 2 });
        expect(maxRelErr(got, want)).toBeLessThan(1e-5);
      }
    });

    it.each([
      "int2-g64-asym-f16",
      "int3-g128-asym-f16",
      "int4-g128-sym-f32",
      "int8-pc-asym-f32",
      "nf4-g64-f32",
      "iq4_nl",
    ])("%s: fused and tiled qmatmul / qmatmulT on 520×1000 match the reference", (name) => {
      const f = getFormat(name);
      const N = 520;
      const K = 1000;
      const q = rtnQuantize(randomWeights(N * K, 7), N, K, f);
      for (const rows of [1, 2, 9]) {
        const x = randomUniform(rows * K, 8 + rows);
        const want = new Float32Array(rows * N);
        const got = new Float32Array(rows * N);
        ref.qmatmul(x, rows, q, want);
        be.qmatmul(x, rows, q, got);
        expect(maxRelErr(got, want)).toBeLessThan(1e-5);
        const g = randomUniform(rows * N, 20 + rows);
        const dwant = new Float32Array(rows * K);
        const dgot = new Float32Array(rows * K);
        ref.qmatmulT(g, rows, q, dwant);
        be.qmatmulT(g, rows, q, dgot);
        expect(maxRelErr(dgot, dwant)).toBeLessThan(1e-5);
      }
    });

    it.each(["int2-g32-sym-f16", "int4-g64-asym-f32", "int8-g128-asym-f16", "int3-pc-asym-f16"])(
      "%s: fused matvec over several 4096-column tiles of x (K = 4500, odd N) matches the reference",
      (name) => {
        const N = 9;
        const K = 4500;
        const q = rtnQuantize(randomWeights(N * K, 40), N, K, name);
        const x = randomUniform(K, 41);
        const want = new Float32Array(N);
        const got = new Float32Array(N);
        ref.qmatmul(x, 1, q, want);
        be.qmatmul(x, 1, q, got);
        expect(maxRelErr(got, want)).toBeLessThan(1e-5);
      },
    );

    it("act-order gIdx: qmatmul, qmatmulT and dequantize match the reference (property)", () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 70 }),
          fc.integer({ min: 1, max: 300 }),
          fc.integer({ min: 1, max: 5 }),
          // ggml block formats hold contiguous blocks only (no gIdx): wasm-blocks.test.ts covers them.
          fc.constantFrom(...FORMATS.filter((f) => f.groupSize !== -1 && f.decode !== "block")),
          fc.integer({ min: 0, max: 1000 }),
          (N, K, rows, f, seed) => {
            const gIdx = randomGIdx(K, f.groupSize, seed);
            const q: QuantizedLinear = rtnQuantize(randomWeights(N * K, seed), N, K, f, { gIdx });
            const x = randomUniform(rows * K, seed + 1);
            const want = new Float32Array(rows * N);
            const got = new Float32Array(rows * N);
            ref.qmatmul(x, rows, q, want);
            be.qmatmul(x, rows, q, got);
            expect(maxRelErr(got, want)).toBeLessThan(1e-5);
            const g = randomUniform(rows * N, seed + 2);
            const dwant = new Float32Array(rows * K);
            const dgot = new Float32Array(rows * K);
            ref.qmatmulT(g, rows, q, dwant);
            be.qmatmulT(g, rows, q, dgot);
            expect(maxRelErr(dgot, dwant)).toBeLessThan(1e-5);
            const w0 = new Float32Array(N * K);
            const w1 = new Float32Array(N * K);
            ref.dequantize(q, w0);
            be.dequantize(q, w1);
            expect(maxRelErr(w1, w0)).toBeLessThan(1e-6);
          },
        ),
        { seed: 42, numRuns: 25 },
      );
    });

    it("allocF32 views are used in place (zero-copy) and give the same result", () => {
      const N = 64;
      const K = 96;
      const q = rtnQuantize(randomWeights(N * K, 11), N, K, "int4-g32-asym-f16");
      const x = be.allocF32(K);
      const y = be.allocF32(N);
      x.set(randomUniform(K, 12));
      const want = new Float32Array(N);
      ref.qmatmul(x, 1, q, want);
      be.qmatmul(x, 1, q, y);
      expect(maxRelErr(y, want)).toBeLessThan(1e-5);
      be.freeF32(x);
      be.freeF32(y);
      expect(() => be.freeF32(y)).toThrow(/allocF32/);
    });
  },
);

describe("wasm backend lifecycle", () => {
  it("rejects a bad thread count with a clear error", async () => {
    await expect(createWasmBackend({ threads: 0 })).rejects.toThrow(/threads/);
    await expect(createWasmBackend({ threads: 2, sharedMemory: false })).rejects.toThrow(/SharedArrayBuffer/);
  });
  it("threads: 1 and the ordinary-memory module report themselves", async () => {
    const be = await createWasmBackend({ sharedMemory: false });
    expect(be.threads).toBe(1);
    expect(be.name).toBe("wasm-simd-1t");
    be.dispose();
  });
  it("throws after dispose instead of touching freed workers", async () => {
    const be = await createWasmBackend({ threads: 2 });
    be.dispose();
    expect(() =>
      be.sgemm({ M: 1, N: 1, K: 1, A: new Float32Array(1), B: new Float32Array(1), C: new Float32Array(1) }),
    ).toThrow(/disposed/);
  });
});

describe("wasm backend resident budget (maxResidentBytes)", () => {
  const ref = createReferenceBackend();
  const fmt = getFormat("int4-g32-asym-f16");
  const layers = [0, 1, 2, 3].map((i) => rtnQuantize(randomWeights(48 * 96, 100 + i), 48, 96, fmt));
  const x = randomUniform(2 * 96, 7);
  const want = layers.map((q) => {
    const y = new Float32Array(2 * 48);
    ref.qmatmul(x, 2, q, y);
    return y;
  });
  const run = (be: WasmBackend, i: number) => {
    const y = new Float32Array(2 * 48);
    be.qmatmul(x, 2, layers[i], y);
    for (let j = 0; j < y.length; j++) expect(Math.abs(y[j] - want[i][j])).toBeLessThan(1e-4);
  };

  it("budget 0 keeps only the layer in use, with the same results, and the heap stops growing", async () => {
    const be = await createWasmBackend({ threads: 1, maxResidentBytes: 0 });
    run(be, 0);
    const one = be.residentBytes();
    expect(one).toBeGreaterThan(48 * 96 * 0.5);
    const heap = be.memoryBytes();
    for (let round = 0; round < 3; round++) for (let i = 0; i < layers.length; i++) run(be, i);
    expect(be.residentBytes()).toBe(one); // same-shaped layers: exactly one resident
    expect(layers.filter((q) => be.isResident(q))).toEqual([layers[3]]);
    expect(be.memoryBytes()).toBeLessThanOrEqual(heap);
    be.dispose();
  });

  it("drops the least recently used layer first and never exceeds the budget", async () => {
    const probe = await createWasmBackend({ threads: 1 });
    run(probe, 0);
    const per = probe.residentBytes();
    probe.dispose();
    const be = await createWasmBackend({ threads: 1, maxResidentBytes: 2 * per });
    for (const i of [0, 1, 0, 2]) {
      run(be, i);
      expect(be.residentBytes()).toBeLessThanOrEqual(2 * per);
    }
    // 0 was used after 1, so 1 went when 2 came in
    expect(layers.map((q) => be.isResident(q))).toEqual([true, false, true, false]);
    run(be, 3); // evicts 0, the least recently used now
    expect(layers.map((q) => be.isResident(q))).toEqual([false, false, true, true]);
    be.dispose();
  });

  it("counts bConst float weights in the same budget and rejects a bad budget", async () => {
    const be = await createWasmBackend({ threads: 1, maxResidentBytes: 0 });
    const B = randomUniform(64 * 32, 3);
    const A = randomUniform(4 * 32, 4);
    const C = new Float32Array(4 * 64);
    be.sgemm({ M: 4, N: 64, K: 32, A, B, C, transB: true, bConst: true });
    expect(be.isResident(B)).toBe(true);
    run(be, 0);
    expect(be.isResident(B)).toBe(false);
    expect(be.isResident(layers[0])).toBe(true);
    be.evict(layers[0]);
    expect(be.residentBytes()).toBe(0);
    be.dispose();
    await expect(createWasmBackend({ threads: 1, maxResidentBytes: -1 })).rejects.toThrow(
      /maxResidentBytes must be a number ≥ 0, got -1/,
    );
    await expect(createWasmBackend({ threads: 1, maxResidentBytes: Number.NaN })).rejects.toThrow(
      /maxResidentBytes/,
    );
  });
});
