// The tiled qmatmul / qmatmulT split over threads (wasm/run.c's qmm_col_chunk: two items of columns per
// thread, at most 512 columns, 64-aligned; 256-aligned over K for ggml block formats): every output
// column lands in one item whatever the split, so 1 and 2 threads give bit-identical results, and
// both match the scalar reference.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createReferenceBackend } from "../reference/backend";
import { rtnQuantize } from "../rtn";
import { randomUniform, randomWeights } from "../testing";
import { maxRelErr } from "../testing/tolerances";
import { type WasmBackend, createWasmBackend } from "./wasm-backend";
import { FUSED_MAX_ROWS, QMATMUL_PARALLEL } from "./wasm-qmatmul";

const ref = createReferenceBackend();

describe("tiled qmatmul / qmatmulT split over threads", () => {
  let one: WasmBackend;
  let two: WasmBackend;
  beforeAll(async () => {
    one = await createWasmBackend({ threads: 1 });
    two = await createWasmBackend({ threads: 2 });
  });
  afterAll(() => {
    one.dispose();
    two.dispose();
  });

  /** Rows enough for the threaded path (work ≥ QMATMUL_PARALLEL) and above the fused matvec's rows. */
  const rowsFor = (N: number, K: number, extra: number) =>
    Math.max(FUSED_MAX_ROWS + 1, Math.ceil(QMATMUL_PARALLEL / (N * K))) + extra;

  it("1 and 2 threads agree bit for bit and match the reference (property: N, K across item edges)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("int4-g128-asym-f16", "int2-g64-asym-f16", "int8-g64-asym-f16", "int3-g128-asym-f16"),
        fc.integer({ min: 40, max: 1100 }),
        fc.integer({ min: 40, max: 700 }),
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 1, max: 1000 }),
        (name, N, K, extra, seed) => {
          const rows = rowsFor(N, K, extra);
          const q = rtnQuantize(randomWeights(N * K, seed), N, K, name);
          const x = randomUniform(rows * K, seed + 1);
          const want = new Float32Array(rows * N);
          const y1 = new Float32Array(rows * N);
          const y2 = new Float32Array(rows * N);
          ref.qmatmul(x, rows, q, want);
          one.qmatmul(x, rows, q, y1);
          two.qmatmul(x, rows, q, y2);
          expect(y2).toEqual(y1);
          expect(maxRelErr(y1, want)).toBeLessThan(1e-5);
          const g = randomUniform(rows * N, seed + 2);
          const dwant = new Float32Array(rows * K);
          const d1 = new Float32Array(rows * K);
          const d2 = new Float32Array(rows * K);
          ref.qmatmulT(g, rows, q, dwant);
          one.qmatmulT(g, rows, q, d1);
          two.qmatmulT(g, rows, q, d2);
          expect(d2).toEqual(d1);
          expect(maxRelErr(d1, dwant)).toBeLessThan(1e-5);
        },
      ),
      { numRuns: 8 },
    );
  }, 60_000);

  it("a ggml block format (q4_k, 256-column blocks) over K = 1280 (items on 256-column edges) agrees too", () => {
    const N = 300;
    const K = 1280;
    const rows = rowsFor(N, K, 1);
    const q = rtnQuantize(randomWeights(N * K, 77), N, K, "q4_k");
    const g = randomUniform(rows * N, 78);
    const dwant = new Float32Array(rows * K);
    const d1 = new Float32Array(rows * K);
    const d2 = new Float32Array(rows * K);
    ref.qmatmulT(g, rows, q, dwant);
    one.qmatmulT(g, rows, q, d1);
    two.qmatmulT(g, rows, q, d2);
    expect(d2).toEqual(d1);
    expect(maxRelErr(d1, dwant)).toBeLessThan(1e-5);
    const x = randomUniform(rows * K, 79);
    const want = new Float32Array(rows * N);
    const y1 = new Float32Array(rows * N);
    const y2 = new Float32Array(rows * N);
    ref.qmatmul(x, rows, q, want);
    one.qmatmul(x, rows, q, y1);
    two.qmatmul(x, rows, q, y2);
    expect(y2).toEqual(y1);
    expect(maxRelErr(y1, want)).toBeLessThan(1e-5);
  }, 30_000);
});
