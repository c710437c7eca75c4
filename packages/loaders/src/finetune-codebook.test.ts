// EMEF on a codebook-quantized base: a LoRA trained on stories260K whose projections are NF4 / IQ4_NL.
import { readFileSync } from "node:fs";
import { noGrad, setBackend, tidy } from "@int21/autograd";
import { type AlpacaRecord, alpacaExamples, collate, type Example, LoRALinear } from "@int21/lora";
import { type Backend, type QuantLinear, dequantizeRows, getFormat, rtnQuantize } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadInt21CheckpointBytes, serializeInt21Checkpoint } from "./checkpoint";
import { quantizedToGgml } from "./gguf-model";
import { loadLlama2c } from "./load-llama2c";
import { Llama2cTokenizer } from "./tokenizer";
import { finetune, llamaLoss } from "@int21/model-llama";

let backend: Backend;
beforeAll(async () => {
  backend = await createWasmBackend({ threads: 1 });
  setBackend(backend);
});
afterAll(() => backend?.dispose());

function meanLoss(w: ReturnType<typeof loadLlama2c>, examples: readonly Example[]): number {
  const loss = llamaLoss(w);
  let s = 0;
  let n = 0;
  for (let i = 0; i < examples.length; i += 4) {
    const b = collate(examples.slice(i, i + 4));
    s += noGrad(() => tidy(() => loss(b, { training: false }).item())) * b.tokens;
    n += b.tokens;
  }
  return s / n;
}

function storyRecords(): AlpacaRecord[] {
  const stories = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").split("<|endoftext|>");
  const out: AlpacaRecord[] = [];
  for (const s of stories) {
    const sentences = s.trim().split(/(?<=[.!?])\s+/);
    if (sentences.length >= 2)
      out.push({ instruction: `Continue the story: ${sentences[0]}`, output: sentences[1] });
  }
  return out;
}

describe("EMEF on codebook formats (stories260K, real data)", () => {
  it.each(["nf4-g64-f32", "iq4_nl"])(
    "a LoRA on %s projections lowers training and held-out loss; the packed base stays frozen",
    async (format) => {
      const f = getFormat(format);
      expect(f.decode).toBe("lut");
      // The wasm backend decodes codebook layers natively (table decode in quant.c).
      expect(backend.supports("qmatmul", f)).toBe(true);
      expect(backend.supports("qmatmulT", f)).toBe(true);
      const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512), 512);
      const recs = storyRecords();
      const train = alpacaExamples(recs.slice(0, 300), tok, { maxLen: 128 }).examples;
      const heldOut = alpacaExamples(recs.slice(-24), tok, { maxLen: 128 }).examples;
      const w = loadLlama2c(sharedPath(SHARED.stories260K), { backend, quantize: { format } });
      const wq = w.layers[0].wq as QuantLinear;
      expect(wq.q.format).toBe(f);
      // Every weight of the packed layer is scale · codebook[q] of its group.
      const row = new Float32Array(wq.q.inFeatures);
      dequantizeRows(wq.q, [3], row);
      const nG = wq.q.scales.length / wq.q.outFeatures;
      for (let k = 0; k < row.length; k++) {
        const s = wq.q.scales[3 * nG + Math.floor(k / f.groupSize)];
        expect(f.codebook!.some((c) => Math.fround(s * c) === row[k])).toBe(true);
      }
      const words = wq.q.qweight.words.slice();
      const trainProbe = train.slice(0, 24);
      const trainBefore = meanLoss(w, trainProbe);
      const heldBefore = meanLoss(w, heldOut);
      const res = await finetune(
        w,
        { train, heldOut },
        {
          lora: { targetModules: ["q_proj", "v_proj", "down_proj"], r: 8, alpha: 16 },
          steps: 60,
          schedule: { lr: 5e-3, warmupSteps: 5 },
          evalEvery: 60,
          seed: 1,
        },
      );
      expect(res.steps).toBe(60);
      const trainAfter = meanLoss(w, trainProbe);
      const heldAfter = res.history.eval[0][1];
      // measured (nats per response token), train probe / held-out: nf4-g64-f32 2.09 → 1.40 / 2.28 → 1.97,
      // iq4_nl 2.18 → 1.37 / 2.36 → 1.95
      expect(trainAfter).toBeLessThan(trainBefore - 0.3);
      expect(heldAfter).toBeLessThan(heldBefore - 0.2);
      const after = w.layers[0].wq as LoRALinear;
      expect(after).toBeInstanceOf(LoRALinear);
      expect((after.base as QuantLinear).q.qweight.words).toEqual(words);
    },
    240_000,
  );
});

describe("GGUF export of codebook layers", () => {
  it("quantizedToGgml writes no affine Q4_0/Q4_1/Q8_0 blocks from NF4 / IQ4_NL codes (the caller re-quantizes)", () => {
    const W = Float32Array.from({ length: 4 * 64 }, (_, i) => Math.sin(i * 0.37) * 0.1);
    for (const format of ["nf4-g32-f16", "iq4_nl"]) {
      const q = rtnQuantize(W, 4, 64, format);
      for (const type of ["Q4_0", "Q4_1", "Q8_0"] as const) expect(quantizedToGgml(q, type)).toBeUndefined();
    }
    // The same shape in an affine g32 format does take the exact path.
    expect(quantizedToGgml(rtnQuantize(W, 4, 64, "int4-g32-sym-f16"), "Q4_0")).toBeInstanceOf(Uint8Array);
  });
});

describe("int21 checkpoints of codebook layers", () => {
  it("NF4 and IQ4_NL (negative f16 scales included) round-trip bit for bit", async () => {
    for (const format of ["nf4-g64-f16", "iq4_nl"]) {
      const w = loadLlama2c(sharedPath(SHARED.stories260K), { quantize: { format } });
      const back = (await loadInt21CheckpointBytes(serializeInt21Checkpoint(w))).weights;
      let negative = 0;
      w.layers.forEach((L, l) => {
        for (const name of ["wq", "wk", "wv", "wo", "w1", "w2", "w3"] as const) {
          const a = (L[name] as QuantLinear).q;
          const b = (back.layers[l][name] as QuantLinear).q;
          expect(b.format, `${format} layer ${l} ${name}`).toBe(getFormat(format));
          expect(b.qweight.words).toEqual(a.qweight.words);
          expect(b.scales).toEqual(a.scales);
          expect(Array.from(b.zeros).every((z) => z === 0)).toBe(true);
          for (const s of a.scales) if (s < 0) negative++;
        }
      });
      // IQ4_NL's d is negative wherever a block's largest-magnitude weight is positive.
      if (format === "iq4_nl") expect(negative).toBeGreaterThan(0);
      else expect(negative).toBe(0);
    }
  });
});
