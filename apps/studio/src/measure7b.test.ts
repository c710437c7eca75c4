// The 7B-shape measurement's code path (src/measure7b.ts, what the worker runs in the tab) at a narrow width in
// Node: packed generation straight into words, LoRA on q/v, EMEF steps on a backend that keeps only the layer
// in use resident.
import { setBackend } from "@int21/autograd";
import { getFormat } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { describe, expect, it } from "vitest";
import { measure7bStep } from "./measure7b";

describe("measure7b", () => {
  it("a narrow model: finite losses that fall, packed sizes, only the layer in use resident", async () => {
    const be = await createWasmBackend({ threads: 1, maxResidentBytes: 0 });
    const before = setBackend(be);
    try {
      const seen: string[] = [];
      const r = measure7bStep(
        { layers: 3, steps: 3, seq: 16, rank: 4, dim: 128, hiddenDim: 320, nHeads: 4, vocabSize: 256 },
        be,
        (p) => seen.push(`${p.phase} ${p.done}/${p.total}`),
        { maxResidentBytes: 0 },
      );
      expect(seen).toEqual([
        "generate 1/3",
        "generate 2/3",
        "generate 3/3",
        "step 1/3",
        "step 2/3",
        "step 3/3",
      ]);
      expect(r.config).toEqual({ dim: 128, hiddenDim: 320, nLayers: 3, nHeads: 4, vocabSize: 256 });
      expect(r.targets).toEqual(["q_proj", "v_proj"]);
      // INT2 g64 with f16 scale + zero per group: 2 + 32/64 = 2.5 bits per weight
      const perLayer = 4 * 128 * 128 + 3 * 128 * 320;
      expect(r.packedProjectionBytes).toBe((3 * perLayer * 2.5) / 8);
      expect(r.classifierBytes).toBe((256 * 128 * 2.5) / 8);
      expect(r.embeddingBytes).toBe((256 * 128 * 8.5) / 8); // int8 g64
      expect(r.float32Bytes).toBe(4 * (3 * perLayer + 256 * 128));
      for (const s of r.steps) {
        expect(Number.isFinite(s.loss)).toBe(true);
        expect(s.wasmMemoryBytes).toBeGreaterThanOrEqual(s.wasmInUseBytes);
      }
      // random tokens: the loss starts near ln(vocab) and AdamW on the same row lowers it
      expect(Math.abs(r.steps[0].loss - Math.log(256))).toBeLessThan(2);
      expect(r.steps[2].loss).toBeLessThan(r.steps[0].loss);
      // budget 0: at most one re-packed layer stays resident after a step (the classifier, the largest here)
      expect(be.residentBytes()).toBeLessThanOrEqual(256 * 128);
    } finally {
      setBackend(before);
      be.dispose();
    }
  });

  it("rejects a bad shape or setting, naming it", async () => {
    const be = await createWasmBackend({ threads: 1 });
    expect(() => measure7bStep({ layers: 33, steps: 1, seq: 8, rank: 8 }, be)).toThrow(
      /layers must be an integer in 1\.\.32, got 33/,
    );
    expect(() => measure7bStep({ layers: 1, steps: 1, seq: 1, rank: 8 }, be)).toThrow(/seq must be/);
    expect(() => measure7bStep({ layers: 1, steps: 1, seq: 8, rank: 8, dim: 96, nHeads: 5 }, be)).toThrow(
      /dim 96 must split into 5 heads/,
    );
    expect(getFormat("int2-g64-asym-f16").bits).toBe(2);
    be.dispose();
  });
});
