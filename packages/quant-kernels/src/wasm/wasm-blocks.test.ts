import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GGML_BLOCK_FORMATS } from "../formats/ggml-blocks";
import { createReferenceBackend } from "../reference/backend";
import { rtnQuantize } from "../rtn";
import { runBackendConformance } from "../testing/conformance";
import { randomUniform, randomWeights } from "../testing/random";
import { type WasmBackend, createWasmBackend } from "./wasm-backend";

// The wasm kernels of the ggml block formats (wasm/ggml_blocks.c): the conformance suite (fast-check vs
// the reference) on every block format, 1 and 2 threads.
runBackendConformance("wasm (ggml block formats)", () => createWasmBackend({ threads: 1 }), {
  formats: GGML_BLOCK_FORMATS.map((f) => f.name),
  numRuns: 6,
});

describe("wasm ggml block formats", () => {
  let be: WasmBackend;
  const ref = createReferenceBackend();
  beforeAll(async () => {
    be = await createWasmBackend({ threads: 2 });
  });
  afterAll(() => be.dispose());

  it.each(GGML_BLOCK_FORMATS.map((f) => [f.name, f] as const))(
    "%s: native, dequantize bit-exact, fused and tiled qmatmul / qmatmulT on 130×1024 match the reference",
    (_n, f) => {
      expect(be.supports("qmatmul", f)).toBe(true);
      expect(be.supports("qmatmulT", f)).toBe(true);
      expect(be.supports("dequantize", f)).toBe(true);
      const N = 130;
      const K = 1024;
      const q = rtnQuantize(randomWeights(N * K, 7, 0.05, 0.02), N, K, f);
      const W = new Float32Array(N * K);
      ref.dequantize(q, W);
      const Wb = new Float32Array(N * K).fill(Number.NaN);
      be.dequantize(q, Wb);
      expect(be.isResident(q)).toBe(true);
      let diff = 0;
      for (let i = 0; i < W.length; i++) if (!Object.is(W[i], Wb[i])) diff++;
      expect(diff).toBe(0);
      for (const rows of [1, 2, 9]) {
        const x = randomUniform(rows * K, 8 + rows);
        const want = new Float32Array(rows * N);
        const got = new Float32Array(rows * N);
        ref.qmatmul(x, rows, q, want);
        be.qmatmul(x, rows, q, got);
        let num = 0;
        let den = 0;
        for (let i = 0; i < want.length; i++) {
          num = Math.max(num, Math.abs(got[i] - want[i]));
          den = Math.max(den, Math.abs(want[i]));
        }
        expect(num / den).toBeLessThan(1e-5);
        const g = randomUniform(rows * N, 20 + rows);
        const dwant = new Float32Array(rows * K);
        const dgot = new Float32Array(rows * K);
        ref.qmatmulT(g, rows, q, dwant);
        be.qmatmulT(g, rows, q, dgot);
        num = 0;
        den = 0;
        for (let i = 0; i < dwant.length; i++) {
          num = Math.max(num, Math.abs(dgot[i] - dwant[i]));
          den = Math.max(den, Math.abs(dwant[i]));
        }
        expect(num / den).toBeLessThan(1e-5);
      }
    },
    60_000,
  );
});
