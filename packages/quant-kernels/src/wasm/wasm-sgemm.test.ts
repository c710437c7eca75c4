// The float GEMM's two builds (plain SIMD and relaxed SIMD, see wasm/gemm.c) against the reference:
// the conformance suite on the relaxed module, and shapes at the edges of the 6×8 micro-tile, of the
// A/B blocks (MC, KC, NC) and of the threads' column split, on both modules.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FLOAT32_TOLERANCES, type GemmCase, checkSgemmCase, runBackendConformance } from "../testing";
import { KC, MC, NC, NR } from "./layout";
import { type WasmBackend, createWasmBackend } from "./wasm-backend";
import { enableRelaxedSimd } from "./relaxed-simd";
import { relaxedSimdAvailable } from "./wasm-runtime";

// Node 20 has relaxed SIMD behind a flag (on by default from Node 22): turn it on so that this file
// exercises the relaxed module (wasm-backend.test.ts covers the default choice).
enableRelaxedSimd();

/** The micro-tile's rows (gemm.c's UMR); rows per A block are MC rounded down to a multiple of it. */
const UMR = 6;

it("the engine accepts relaxed SIMD once the flag is set", () => {
  expect(relaxedSimdAvailable()).toBe(true);
});

runBackendConformance("wasm relaxed SIMD (1 thread)", () =>
  createWasmBackend({ threads: 1, relaxedSimd: true }),
);
runBackendConformance(
  "wasm relaxed SIMD (ordinary memory)",
  () => createWasmBackend({ threads: 1, sharedMemory: false, relaxedSimd: true }),
  { formats: ["int4-g128-asym-f16"], numRuns: 4 },
);

const base: Omit<GemmCase, "M" | "N" | "K"> = {
  transA: false,
  transB: false,
  aOffset: 0,
  bOffset: 0,
  cOffset: 0,
  padA: 0,
  padB: 0,
  padC: 0,
  alpha: 1,
  beta: 0,
  seed: 7,
};

/** Shapes at the tile and block edges: each dimension one below, at and one above a boundary. */
const edgeShapes: [number, number, number][] = [
  [1, 1, 1],
  [UMR - 1, NR - 1, 1],
  [UMR + 1, NR + 1, 1],
  [2 * UMR, 2 * NR, 3],
  [UMR + 1, 3 * NR - 1, KC - 1],
  [UMR - 1, NR + 3, KC + 1],
  [MC - 1, NR, 5],
  [MC + 1, NR + 1, 2 * KC + 3],
  [Math.floor(MC / UMR) * UMR + 1, 9, 17],
  [3, NC + NR + 3, 4],
  [2, NC - 1, 2],
];

describe.each([
  ["relaxed", true, 1],
  ["relaxed", true, 2],
  ["plain", false, 1],
  ["plain", false, 2],
] as const)("wasm sgemm, %s SIMD, %i thread(s)", (_name, relaxedSimd, threads) => {
  let be: WasmBackend;
  beforeAll(async () => {
    be = await createWasmBackend({ threads, relaxedSimd });
  });
  afterAll(() => be?.dispose());

  it("runs the module it was asked for", () => {
    expect(be.relaxedSimd).toBe(relaxedSimd);
  });

  it("matches the reference at the micro-tile and block edges, every transpose", () => {
    for (const [M, N, K] of edgeShapes) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          checkSgemmCase(be, { ...base, M, N, K, transA, transB, alpha: -0.5, beta: 2 }, FLOAT32_TOLERANCES);
        }
      }
    }
  }, 60_000);

  it("matches the reference over random shapes that cross KC (fast-check)", () => {
    const shape = fc.record({
      M: fc.integer({ min: 1, max: 3 * UMR + 1 }),
      N: fc.integer({ min: 1, max: 3 * NR + 1 }),
      K: fc.integer({ min: 1, max: KC + 40 }),
      transA: fc.boolean(),
      transB: fc.boolean(),
      aOffset: fc.integer({ min: 0, max: 3 }),
      bOffset: fc.integer({ min: 0, max: 3 }),
      cOffset: fc.integer({ min: 0, max: 3 }),
      padA: fc.integer({ min: 0, max: 2 }),
      padB: fc.integer({ min: 0, max: 2 }),
      padC: fc.integer({ min: 0, max: 2 }),
      alpha: fc.constantFrom(1, -1, 0.5),
      beta: fc.constantFrom(0, 1, -0.5),
      seed: fc.integer({ min: 0, max: 1e9 }),
    });
    fc.assert(
      fc.property(shape, (c) => checkSgemmCase(be, c, FLOAT32_TOLERANCES)),
      { seed: 17, numRuns: 60 },
    );
  }, 60_000);

  it("beta 0 stores the first K block into C: bit for bit beta 1 over a zeroed C, whatever C held (fast-check)", () => {
    // gemm.c's update_c writes alpha·acc + 0 on the first K block of a beta-0 product instead of
    // zeroing C and adding: the same bits (−0 included), and NaN / garbage in C never read
    const shape = fc.record({
      M: fc.integer({ min: 2, max: 2 * UMR + 1 }),
      N: fc.integer({ min: 1, max: 2 * NR + 1 }),
      K: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: KC - 2, max: 2 * KC + 2 })),
      transA: fc.boolean(),
      transB: fc.boolean(),
      alpha: fc.constantFrom(1, -1, 0.5),
      seed: fc.integer({ min: 0, max: 1e9 }),
    });
    fc.assert(
      fc.property(shape, ({ M, N, K, transA, transB, alpha, seed }) => {
        const A = Float32Array.from({ length: M * K }, (_, i) => Math.sin(seed + i * 1.3));
        const B = Float32Array.from({ length: K * N }, (_, i) => Math.cos(seed + i * 0.7));
        // some products exactly −0 (a zero row of A times negative B entries)
        for (let k = 0; k < K; k++) A[transA ? k * M : k] = 0;
        const garbage = Float32Array.from({ length: M * N }, (_, i) => (i % 3 === 0 ? Number.NaN : i - 7.5));
        const zeroed = new Float32Array(M * N);
        const args = { M, N, K, A, B, transA, transB, alpha };
        be.sgemm({ ...args, C: garbage, beta: 0 });
        be.sgemm({ ...args, C: zeroed, beta: 1 });
        expect(new Uint32Array(garbage.buffer)).toEqual(new Uint32Array(zeroed.buffer));
      }),
      { seed: 29, numRuns: 40 },
    );
  }, 60_000);

  it("a row of C has the same bits whether a full 6×8 tile (written by the micro-kernel) or an edge tile holds it (fast-check)", () => {
    // full tiles go straight from the micro-kernel's registers into C (micro_kernel_c), edge tiles
    // through its accumulator buffer (update_c): the same multiply and add, so M (and N) must not
    // change a single bit of the rows (columns) both products have
    const shape = fc.record({
      // (M = 1 is the GEMV path, another summation order)
      M: fc.integer({ min: 2, max: 3 * UMR }),
      N: fc.integer({ min: 1, max: 3 * NR }),
      K: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: KC - 2, max: KC + 9 })),
      transA: fc.boolean(),
      transB: fc.boolean(),
      alpha: fc.constantFrom(1, -0.5),
      beta: fc.constantFrom(0, 1, -0.5),
      seed: fc.integer({ min: 0, max: 1e9 }),
    });
    fc.assert(
      fc.property(shape, ({ M, N, K, transA, transB, alpha, beta, seed }) => {
        const M2 = M + 1;
        const N2 = N + 1;
        // A: M2 rows of K (row i the same in both products), B: K × N2 (column j the same)
        const aAt = (i: number, k: number) => Math.sin(seed + i * 1.7 + k * 0.3);
        const bAt = (k: number, j: number) => Math.cos(seed + k * 0.9 + j * 2.1);
        const mk = (m: number, n: number) => {
          const A = new Float32Array(m * K);
          for (let i = 0; i < m; i++)
            for (let k = 0; k < K; k++) A[transA ? k * m + i : i * K + k] = aAt(i, k);
          const B = new Float32Array(K * n);
          for (let k = 0; k < K; k++)
            for (let j = 0; j < n; j++) B[transB ? j * K + k : k * n + j] = bAt(k, j);
          const C = Float32Array.from({ length: m * n }, (_, e) =>
            Math.tan(Math.floor(e / n) + (e % n) * 0.37),
          );
          be.sgemm({ M: m, N: n, K, A, B, C, transA, transB, alpha, beta });
          return C;
        };
        const small = mk(M, N);
        const big = mk(M2, N2);
        for (let i = 0; i < M; i++) {
          for (let j = 0; j < N; j++) {
            if (!Object.is(small[i * N + j], big[i * N2 + j]))
              expect.fail(
                `C[${i}][${j}]: ${small[i * N + j]} (${M}×${N}) vs ${big[i * N2 + j]} (${M2}×${N2})`,
              );
          }
        }
      }),
      { seed: 31, numRuns: 40 },
    );
  }, 60_000);

  it("one-row products (the decode matvec, 8 rows of B per pass) match the reference (fast-check)", () => {
    // N around multiples of the pass's 8 rows and of the threads' 64-row chunks, K around multiples of 4
    const shape = fc.record({
      M: fc.constant(1),
      N: fc.oneof(fc.integer({ min: 1, max: 3 * 8 + 1 }), fc.integer({ min: 60, max: 200 })),
      K: fc.integer({ min: 1, max: 70 }),
      transA: fc.boolean(),
      transB: fc.constant(true),
      aOffset: fc.integer({ min: 0, max: 3 }),
      bOffset: fc.integer({ min: 0, max: 3 }),
      cOffset: fc.integer({ min: 0, max: 3 }),
      padA: fc.integer({ min: 0, max: 2 }),
      padB: fc.integer({ min: 0, max: 5 }),
      padC: fc.integer({ min: 0, max: 2 }),
      alpha: fc.constantFrom(1, -1, 0.5),
      beta: fc.constantFrom(0, 1, -0.5),
      seed: fc.integer({ min: 0, max: 1e9 }),
    });
    fc.assert(
      fc.property(shape, (c) => checkSgemmCase(be, c, FLOAT32_TOLERANCES)),
      { seed: 23, numRuns: 80 },
    );
    // large enough to be split across threads in 64-row chunks (N·K ≥ GEMV_PARALLEL_ELEMS), N not a multiple of 8
    checkSgemmCase(
      be,
      { ...base, M: 1, N: 1101, K: 1003, transB: true, padB: 1, beta: 1 },
      FLOAT32_TOLERANCES,
    );
  }, 60_000);

  it("a product large enough for the threads' column split (130×300×600)", () => {
    checkSgemmCase(be, { ...base, M: 130, N: 600, K: 300, transB: true, beta: 1 }, FLOAT32_TOLERANCES);
  }, 60_000);
});
