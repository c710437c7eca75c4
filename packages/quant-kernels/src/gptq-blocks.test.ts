import { describe, expect, it } from "vitest";
import { blockGridOf, nearestGridCode } from "./formats/ggml-block-grid";
import { GGML_BLOCK_FORMATS } from "./formats/ggml-blocks";
import { ggmlBlocksOf, quantizedFromGgmlBlocks } from "./ggml-blocks-linear";
import { gptqQuantize, gptqQuantizeWithInfo } from "./gptq";
import { createHessian } from "./hessian";
import { relativeOutputError } from "./output-error";
import { createReferenceBackend } from "./reference/backend";
import { rtnQuantize } from "./rtn";
import { gaussian, makeRng, randomWeights } from "./testing/random";

/** Correlated activations: rows of Z·M + noise, per-column scales spanning 30× (like LLM inputs). */
function correlatedActivations(rows: number, K: number, seed: number, rank = 8): Float32Array {
  const rng = makeRng(seed);
  const M = Float64Array.from({ length: rank * K }, () => gaussian(rng));
  const colScale = Float64Array.from({ length: K }, () => 0.2 + 6 * rng() ** 3);
  const x = new Float32Array(rows * K);
  for (let r = 0; r < rows; r++) {
    const z = Array.from({ length: rank }, () => gaussian(rng));
    for (let k = 0; k < K; k++) {
      let s = 0.1 * gaussian(rng);
      for (let i = 0; i < rank; i++) s += z[i] * M[i * K + k];
      x[r * K + k] = s * colScale[k];
    }
  }
  return x;
}

describe("block grids (the values one weight can take once its block's scales are fixed)", () => {
  it.each(GGML_BLOCK_FORMATS.map((f) => [f.name, f] as const))(
    "%s: setCode changes exactly that weight, to the grid value the decoder gives",
    (_n, f) => {
      const B = f.block.blockSize;
      const g = blockGridOf(f);
      const q = rtnQuantize(randomWeights(2 * B, 3, 0.5), 1, 2 * B, f);
      const bytes = ggmlBlocksOf(q).slice();
      const ref = createReferenceBackend();
      const before = new Float32Array(2 * B);
      ref.dequantize(q, before);
      const ab = new Float64Array(3);
      const rng = makeRng(11);
      for (let t = 0; t < 40; t++) {
        const i = Math.floor(rng() * 2 * B);
        const o = Math.floor(i / B) * f.block.blockBytes;
        const c = Math.floor(rng() * g.levels);
        g.setCode(bytes, o, i % B, c);
        g.affine(bytes, o, i % B, ab);
        const want = Math.fround(ab[0] * (g.lut ? g.lut[c] : c) + ab[1]);
        const after = new Float32Array(2 * B);
        ref.dequantize(quantizedFromGgmlBlocks(f, bytes, 1, 2 * B), after);
        expect(after[i]).toBeCloseTo(want, 6);
        for (let k = 0; k < 2 * B; k++) if (k !== i) expect(after[k]).toBe(before[k]);
        before[i] = after[i];
        // The nearest code of a grid value is that value.
        expect(Math.abs(nearestGridCode(g, bytes, o, i % B, want, ab) === c ? 0 : ab[2] - want)).toBeLessThan(
          1e-6 * (1 + Math.abs(want)),
        );
      }
    },
  );
});

describe("GPTQ into ggml block formats", () => {
  const N = 24;
  const K = 512;
  const rows = 768;
  const x = correlatedActivations(rows, K, 5);
  const h = createHessian(K);
  h.add(x, rows);
  const W = randomWeights(N * K, 9, 0.05, 0.02);

  it.each(GGML_BLOCK_FORMATS.map((f) => [f.name, f] as const))(
    "%s: beats RTN on output error ‖XWᵀ − XŴᵀ‖ for correlated inputs",
    (_n, f) => {
      const rtn = relativeOutputError(x, rows, W, rtnQuantize(W, N, K, f));
      const { q, info } = gptqQuantizeWithInfo(W, N, K, f, h);
      expect(q.format).toBe(f);
      expect(ggmlBlocksOf(q).length).toBe((N * K * f.bitsPerWeight) / 8);
      const err = relativeOutputError(x, rows, W, q);
      expect(Number.isFinite(info.loss)).toBe(true);
      expect(err).toBeLessThan(0.9 * rtn);
      // Static groups (scales from the original weights) also allow act-order, and still beat RTN.
      const st = gptqQuantize(W, N, K, f, h, { staticGroups: true, actOrder: true });
      expect(relativeOutputError(x, rows, W, st)).toBeLessThan(rtn);
    },
    60_000,
  );

  it("refuses what ggml blocks cannot hold, naming the format", () => {
    const f = GGML_BLOCK_FORMATS[0];
    expect(() => gptqQuantize(W, N, K, "q4_k", h, { actOrder: true })).toThrow(
      /actOrder .* q4_k needs staticGroups/,
    );
    expect(() => gptqQuantize(W, N, K, f, h, { mseClip: true })).toThrow(/mseClip/);
    const h40 = createHessian(40);
    h40.add(correlatedActivations(50, 40, 1), 50);
    expect(() => gptqQuantize(randomWeights(2 * 40, 1), 2, 40, f, h40)).toThrow(
      /not a multiple of q4_0's block/,
    );
  });
});
