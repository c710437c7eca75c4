// The tiled qmatmul / qmatmulT split over threads (wasm/run.c's qmm_col_chunk: two items of columns per
// thread, at most 512 columns, 64-aligned; 256-aligned over K for ggml block formats): every output
// column lands in one item whatever the split, so 1 and 2 threads give bit-identical results, and
// both match the scalar reference.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createReferenceBackend } from "../reference/backend";
import { rtnQuantize } from "../rtn";
import { randomUniform, randomWeights } from "../testing";
import type { QuantizedLinear } from "../types";
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

  /** `op` on 1 and 2 threads: bit-identical, and within 1e-5 of the reference. */
  function expectSplitAgrees(
    op: "qmatmul" | "qmatmulT",
    input: Float32Array,
    rows: number,
    q: QuantizedLinear,
  ) {
    const len = rows * (op === "qmatmul" ? q.outFeatures : q.inFeatures);
    const want = new Float32Array(len);
    const a = new Float32Array(len);
    const b = new Float32Array(len);
    ref[op](input, rows, q, want);
    one[op](input, rows, q, a);
    two[op](input, rows, q, b);
    expect(b).toEqual(a);
    expect(maxRelErr(a, want)).toBeLessThan(1e-5);
  }

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
          expectSplitAgrees("qmatmul", randomUniform(rows * K, seed + 1), rows, q);
          expectSplitAgrees("qmatmulT", randomUniform(rows * N, seed + 2), rows, q);
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
    expectSplitAgrees("qmatmulT", randomUniform(rows * N, 78), rows, q);
    expectSplitAgrees("qmatmul", randomUniform(rows * K, 79), rows, q);
  }, 30_000);
});
