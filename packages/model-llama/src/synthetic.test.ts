import { createReferenceBackend, rtnQuantize } from "@int21/quant-kernels";
import { describe, expect, it } from "vitest";
import { type LlamaConfig, kvDim, validateConfig } from "./config";
import { forward } from "./forward";
import { createRunState } from "./run-state";
import { linearParts } from "./linear-parts";
import { type SyntheticModelName, randomPacked, syntheticConfig, syntheticWeights } from "./synthetic";

describe("syntheticConfig", () => {
  it("gives the published LLaMA shapes", () => {
    const names: SyntheticModelName[] = ["stories260K", "stories15M", "stories110M", "1.1B", "7B"];
    for (const n of names) validateConfig(syntheticConfig(n), n);
    expect(syntheticConfig("stories15M")).toMatchObject({
      dim: 288,
      hiddenDim: 768,
      nLayers: 6,
      nHeads: 6,
      vocabSize: 32000,
      seqLen: 256,
    });
    expect(syntheticConfig("stories110M")).toMatchObject({
      dim: 768,
      hiddenDim: 2048,
      nLayers: 12,
      nHeads: 12,
      seqLen: 1024,
    });
    expect(syntheticConfig("1.1B")).toMatchObject({
      dim: 2048,
      hiddenDim: 5632,
      nLayers: 22,
      nHeads: 32,
      nKvHeads: 4,
      seqLen: 2048,
    });
    expect(kvDim(syntheticConfig("1.1B"))).toBe(256);
    expect(syntheticConfig("7B")).toMatchObject({
      dim: 4096,
      hiddenDim: 11008,
      nLayers: 32,
      nHeads: 32,
      nKvHeads: 32,
      vocabSize: 32000,
    });
    expect(() => syntheticConfig("13B" as SyntheticModelName)).toThrow(/unknown model "13B"/);
  });
});

describe("syntheticWeights", () => {
  const config = { ...syntheticConfig("stories260K"), nLayers: 2, sharedClassifier: false };

  it("is deterministic in the seed", () => {
    const a = syntheticWeights(config, { seed: 3 });
    const b = syntheticWeights(config, { seed: 3 });
    const c = syntheticWeights(config, { seed: 4 });
    const wOf = (w: typeof a) => (linearParts(w.layers[1].w2, "w2") as { weight: Float32Array }).weight;
    expect(wOf(a)).toEqual(wOf(b));
    expect(wOf(a)).not.toEqual(wOf(c));
    expect(a.layers[1].w2.outFeatures).toBe(64);
    expect(a.layers[1].w2.inFeatures).toBe(172);
  });

  it("packs block by block exactly as RTN on the whole float matrix", () => {
    const float = syntheticWeights(config, { seed: 9 });
    // Blocks of 3 rows (3·64 = 192 elements for K = 64; 1 row for K = 172): many partial blocks.
    const packed = syntheticWeights(config, { seed: 9, format: "int3-g32-asym-f16", blockElements: 192 });
    for (const n of ["wq", "wk", "w1", "w2"] as const) {
      const w = (linearParts(float.layers[1][n], n) as { weight: Float32Array }).weight;
      const L = float.layers[1][n];
      const ref = rtnQuantize(w, L.outFeatures, L.inFeatures, "int3-g32-asym-f16");
      const p = linearParts(packed.layers[1][n], n);
      expect(p.kind).toBe("quant");
      if (p.kind === "quant") {
        expect(p.q.qweight.words, n).toEqual(ref.qweight.words);
        expect(p.q.scales, n).toEqual(ref.scales);
        expect(p.q.zeros, n).toEqual(ref.zeros);
      }
    }
    expect(linearParts(packed.classifier, "classifier").kind).toBe("quant");
    expect(packed.tokenEmbedding).toEqual(float.tokenEmbedding);
  });

  it("builds a full-width 1.1B layer (GQA) in packed form", () => {
    const big = { ...syntheticConfig("1.1B"), nLayers: 1, vocabSize: 8 };
    const w = syntheticWeights(big, { seed: 1, format: "int2-g64-asym-f16" });
    const p = linearParts(w.layers[0].w2, "w2");
    expect(p.kind).toBe("quant");
    if (p.kind === "quant") expect(p.q.qweight.words.length).toBe(2048 * ((5632 * 2) / 32));
    expect(w.layers[0].w1.bytes()).toBeLessThan((5632 * 2048 * 4) / 12);
    expect(w.layers[0].wk.outFeatures).toBe(256);
  }, 30_000);
});

describe("syntheticWeights of the LLaMA-like families", () => {
  it("generates each family's extra tensors at their shapes, and the forward runs", () => {
    const config: LlamaConfig = {
      ...syntheticConfig("stories260K"),
      family: "qwen3",
      headDim: 12,
      qkvBias: true,
      qkNorm: true,
      postNorms: true,
      slidingWindow: 4,
      slidingLayers: [true, false, true, false, true],
    };
    const w = syntheticWeights(config, { seed: 3 });
    const L = w.layers[0];
    expect([L.wq.outFeatures, L.wo.inFeatures, L.bq?.length, L.bk?.length, L.qNorm?.length]).toEqual([
      96, 96, 96, 48, 12,
    ]);
    expect(L.postAttnNorm?.length).toBe(64);
    const logits = forward(w, createRunState(config, { maxRows: 8 }), [1, 2, 3, 4, 5, 6, 7, 8], 0, "all");
    expect(logits.every(Number.isFinite)).toBe(true);
    // a plain LLaMA config has none of them
    const plain = syntheticWeights(syntheticConfig("stories260K"), { seed: 3 });
    expect(plain.layers[0].bq).toBeUndefined();
  });
});

describe('randomPacked and syntheticWeights({ codes: "random" }) (codes straight into packed words)', () => {
  it("randomPacked: codes over ±amp, f16 scales, rows' tail bits cleared", () => {
    let x = 7;
    const next = () => {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      return x;
    };
    const K = 70; // not a multiple of 16: the last word of each row holds 140 mod 32 = 12 bits
    const q = randomPacked(5, K, "int2-g64-asym-f16", next, 0.5);
    const w = new Float32Array(5 * K);
    createReferenceBackend().dequantize(q, w);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of w) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    // codes 0..3 around zero 1.5 with step 2·amp/3: values in [-amp, amp] up to the f16 rounding of the step
    expect(lo).toBeGreaterThanOrEqual(-0.5 * 1.001);
    expect(hi).toBeLessThanOrEqual(0.5 * 1.001);
    expect(hi - lo).toBeGreaterThan(0.9);
    for (let n = 0; n < 5; n++) expect(q.qweight.words[n * 5 + 4] >>> 12).toBe(0);
    expect(() => randomPacked(2, 32, "q4_0", next)).toThrow(/q4_0 is not an affine format/);
  });

  it("codes: random: every projection packed, finite logits, a tied classifier over the packed table", () => {
    const backend = createReferenceBackend();
    const config: LlamaConfig = { ...syntheticConfig("stories260K"), sharedClassifier: true };
    const seen: number[] = [];
    const w = syntheticWeights(config, {
      codes: "random",
      format: "int2-g32-asym-f16",
      embeddingFormat: "int8-g64-asym-f16",
      backend,
      onLayer: (d) => seen.push(d),
    });
    expect(seen).toEqual(Array.from({ length: config.nLayers }, (_, i) => i + 1));
    for (const L of w.layers) expect(linearParts(L.w2, "w2").kind).toBe("quant");
    const st = createRunState(w.config, { maxRows: 4 });
    const logits = forward(w, st, [1, 2, 3, 4], 0, "all");
    expect(logits.every((v) => Number.isFinite(v))).toBe(true);
    expect(Math.max(...logits) - Math.min(...logits)).toBeGreaterThan(0);
    // the same seed gives the same model; another seed another one
    const again = syntheticWeights(config, {
      codes: "random",
      format: "int2-g32-asym-f16",
      embeddingFormat: "int8-g64-asym-f16",
      backend,
    });
    expect(forward(again, createRunState(w.config, { maxRows: 4 }), [1, 2, 3, 4], 0, "all")).toEqual(logits);
    const other = syntheticWeights(config, {
      codes: "random",
      format: "int2-g32-asym-f16",
      embeddingFormat: "int8-g64-asym-f16",
      backend,
      seed: 2,
    });
    expect(forward(other, createRunState(w.config, { maxRows: 4 }), [1, 2, 3, 4], 0, "all")).not.toEqual(
      logits,
    );
    // random codes are for affine formats only; a family's extra vectors are generated as syntheticWeights does
    expect(() => syntheticWeights(config, { codes: "random", format: "q4_0", backend })).toThrow(
      /q4_0 is not an affine format/,
    );
    const biased = syntheticWeights(
      { ...config, qkvBias: true },
      { codes: "random", format: "int2-g32-asym-f16", backend },
    );
    expect(biased.layers[0].bq?.length).toBe(config.dim);
  });
});
