import { Adam, backward, setBackend, tidy } from "@int21/autograd";
import { collate, loraParameters } from "@int21/lora";
import {
  FORMATS,
  type QuantLinear,
  bytes,
  createFloatLinear,
  createReferenceBackend,
  rtnQuantize,
} from "@int21/quant-kernels";
import { SHARED, sharedPath } from "@int21/shared-data";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loadInt21CheckpointBytes, serializeInt21Checkpoint } from "./checkpoint";
import { hfExportTensors } from "./export-hf";
import { loadGguf, serializeGgufModel } from "./gguf-model";
import { loadLlama2c } from "./load-llama2c";
import { Llama2cTokenizer } from "./tokenizer";
import {
  checkTokenEmbedding,
  denseTokenEmbedding,
  embeddingRows,
  isPackedEmbedding,
  isTiedClassifier,
  quantizeTokenEmbedding,
  tiedClassifier,
  tokenEmbeddingBytes,
  evaluateNll,
  addLlamaLoRA,
  llamaLoss,
  forward,
  generate,
  quantizeModel,
  createRunState,
  syntheticConfig,
  syntheticWeights,
  trainForward,
  type LlamaWeights,
} from "@int21/model-llama";

const backend = createReferenceBackend();
setBackend(backend); // autograd has no default backend
const EMB = "int8-g64-asym-f16";
const seq = [1, 403, 407, 261, 378, 432, 383, 273, 261, 376, 370, 317, 426, 338, 405, 267, 337, 322];

/** stories260K (real weights) with INT4 projections and a packed embedding (tied classifier over it). */
function packedStories(emb = EMB): LlamaWeights {
  const w = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
  return quantizeModel(w, { format: "int4-g32-asym-f16", method: "rtn", embedding: emb, backend }).weights;
}

/** The same model whose embedding is the float dequantization of the packed table (float tied classifier). */
function floatTwin(w: LlamaWeights): LlamaWeights {
  const table = denseTokenEmbedding(w.tokenEmbedding);
  return { ...w, tokenEmbedding: table, classifier: tiedClassifier(table, w.config, backend) };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): { diff: number; scale: number } {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return { diff, scale };
}

describe("embeddingRows", () => {
  it("packed rows equal the dequantized table's rows exactly, every format (property)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...FORMATS),
        fc.array(fc.integer({ min: 0, max: 36 }), { minLength: 0, maxLength: 9 }),
        fc.integer({ min: 1, max: 1e6 }),
        (f, ids, seed) => {
          // 96 columns, or 256 for the ggml super-block formats (their rows are whole 256-blocks).
          const dim = f.groupSize > 96 ? 256 : 96;
          const config = { ...syntheticConfig("stories260K"), vocabSize: 37, dim };
          const float = syntheticWeights({ ...config, nLayers: 1 }, { seed }).tokenEmbedding as Float32Array;
          const q = quantizeTokenEmbedding(float, config, f);
          const dense = denseTokenEmbedding(q);
          const got = new Float32Array(ids.length * config.dim).fill(Number.NaN);
          embeddingRows({ config, tokenEmbedding: q }, ids, got);
          const want = new Float32Array(ids.length * config.dim);
          embeddingRows({ config, tokenEmbedding: dense }, ids, want);
          expect(Array.from(got)).toEqual(Array.from(want));
          ids.forEach((t, i) => {
            expect(Array.from(want.subarray(i * config.dim, (i + 1) * config.dim))).toEqual(
              Array.from(dense.subarray(t * config.dim, (t + 1) * config.dim)),
            );
          });
        },
      ),
      { seed: 42, numRuns: 80 },
    );
  });

  it("rejects bad ids, a wrong out length and a mis-shaped packed table, naming them", () => {
    const config = { ...syntheticConfig("stories260K"), vocabSize: 10, dim: 64 };
    const q = rtnQuantize(new Float32Array(640).fill(0.5), 10, 64, EMB);
    const w = { config, tokenEmbedding: q };
    expect(() => embeddingRows(w, [3, 10], new Float32Array(128))).toThrow(
      /embeddingRows: token 10 at index 1 is outside \[0, 10\)/,
    );
    expect(() => embeddingRows(w, [-1], new Float32Array(64))).toThrow(/token -1 at index 0/);
    expect(() => embeddingRows(w, [1, 2], new Float32Array(64))).toThrow(
      /out must be a Float32Array of ids.length × dim = 2×64 floats, got 64/,
    );
    const wrong = rtnQuantize(new Float32Array(9 * 64).fill(0.5), 9, 64, EMB);
    expect(() => embeddingRows({ config, tokenEmbedding: wrong }, [1], new Float32Array(64))).toThrow(
      /packed tokenEmbedding is 9×64, config says 10×64/,
    );
    expect(() => checkTokenEmbedding(wrong, config, "m.bin")).toThrow(
      /m\.bin: packed tokenEmbedding is 9×64, expected \[vocabSize × dim\] = 10×64/,
    );
    expect(() => checkTokenEmbedding(new Float32Array(5), config, "m.bin")).toThrow(
      /m\.bin: tokenEmbedding has 5 values, expected \[vocabSize × dim\] = 10×64/,
    );
    expect(() => quantizeTokenEmbedding(q, config, EMB)).toThrow(/already packed/);
    expect(tokenEmbeddingBytes(q)).toBe(bytes(q));
    expect(tokenEmbeddingBytes(new Float32Array(640))).toBe(2560);
  });
});

describe("a packed token embedding (real data: stories260K, INT4 projections, INT8 table)", () => {
  const packed = packedStories();
  const twin = floatTwin(packed);

  it("quantizeModel packs the table and ties the classifier to the same record", () => {
    expect(isPackedEmbedding(packed.tokenEmbedding)).toBe(true);
    const q = packed.tokenEmbedding as Exclude<LlamaWeights["tokenEmbedding"], Float32Array>;
    expect(q.format.name).toBe(EMB);
    expect([q.outFeatures, q.inFeatures]).toEqual([512, 64]);
    expect((packed.classifier as QuantLinear).q).toBe(q);
    expect(isTiedClassifier(packed.classifier, q)).toBe(true);
    // 8.5 bits per weight instead of 32
    expect(tokenEmbeddingBytes(q)).toBe(512 * 64 + 512 * 2 * 2);
  });

  it("inference logits equal the float twin's (dequantized table): all rows, chunked prefill, decode", () => {
    const all = forward(packed, createRunState(packed.config, { maxRows: 32 }), seq, 0, "all").slice();
    const allTwin = forward(twin, createRunState(twin.config, { maxRows: 32 }), seq, 0, "all").slice();
    const d = maxAbsDiff(all, allTwin);
    expect(d.diff).toBeLessThanOrEqual(1e-5 * d.scale);
    // maxRows 5: the prompt runs in chunks of 5, 5, 1 (the gather sees each chunk's ids), then decodes.
    const a = createRunState(packed.config, { maxRows: 5 });
    const b = createRunState(twin.config, { maxRows: 32 });
    const la = forward(packed, a, seq.slice(0, 11), 0).slice();
    const lb = forward(twin, b, seq.slice(0, 11), 0).slice();
    const d1 = maxAbsDiff(la, lb);
    expect(d1.diff).toBeLessThanOrEqual(1e-5 * d1.scale);
    for (let p = 11; p < seq.length; p++) {
      const ca = forward(packed, a, [seq[p]], p).slice();
      const cb = forward(twin, b, [seq[p]], p).slice();
      const d2 = maxAbsDiff(ca, cb);
      expect(d2.diff).toBeLessThanOrEqual(1e-5 * d2.scale);
    }
  });

  it("trainForward logits equal the float twin's and the inference forward's", () => {
    const got = tidy(() => trainForward(packed, [seq, seq.slice().reverse()]).values().slice());
    const want = tidy(() => trainForward(twin, [seq, seq.slice().reverse()]).values().slice());
    const d = maxAbsDiff(got, want);
    expect(d.diff).toBeLessThanOrEqual(1e-5 * d.scale);
    const st = createRunState(packed.config, { maxRows: 32 });
    const inf = forward(packed, st, seq, 0, "all");
    const d2 = maxAbsDiff(got.subarray(0, inf.length), inf);
    expect(d2.diff).toBeLessThanOrEqual(1e-4 * d2.scale);
  });

  it("generate and evaluateNll run on the packed table and agree with the twin", () => {
    const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512), 512);
    const opts = { prompt: "Once upon a time", steps: 40, temperature: 0, seed: 1 };
    expect(generate(packed, tok, opts).text).toBe(generate(twin, tok, opts).text);
    const a = evaluateNll(packed, seq, { ctx: 9 });
    const b = evaluateNll(twin, seq, { ctx: 9 });
    expect(Math.abs(a.meanNll - b.meanNll)).toBeLessThan(1e-5 * Math.abs(b.meanNll));
  });

  it("a LoRA training step runs on the packed model and lowers the loss", () => {
    const w = packedStories();
    const model = addLlamaLoRA(w, { targetModules: ["q_proj", "v_proj"], r: 4, alpha: 8, seed: 3 });
    const params = loraParameters(model);
    const opt = new Adam(params, { lr: 1e-2 });
    const loss = llamaLoss(w);
    const batch = collate([
      { input: Int32Array.from(seq.slice(0, -1)), target: Int32Array.from(seq.slice(1)) },
    ]);
    const step = () =>
      tidy(() => {
        opt.zeroGrad();
        const l = loss(batch, { training: true });
        backward(l);
        const v = l.item();
        opt.step();
        return v;
      });
    const before = params.map((p) => p.values().slice());
    const first = step();
    expect(Number.isFinite(first)).toBe(true);
    expect(params.some((p, i) => p.values().some((v, j) => v !== before[i][j]))).toBe(true);
    let last = first;
    for (let i = 0; i < 5; i++) last = step();
    expect(last).toBeLessThan(first);
  });

  it("round-trips through an int21 checkpoint exactly and rejects a truncated one", async () => {
    const bytesOut = serializeInt21Checkpoint(packed);
    const back = (await loadInt21CheckpointBytes(bytesOut, { backend })).weights;
    const q = packed.tokenEmbedding as Exclude<LlamaWeights["tokenEmbedding"], Float32Array>;
    const r = back.tokenEmbedding as typeof q;
    expect(isPackedEmbedding(r)).toBe(true);
    expect(r.format.name).toBe(q.format.name);
    expect(Array.from(r.qweight.words)).toEqual(Array.from(q.qweight.words));
    expect(Array.from(r.scales)).toEqual(Array.from(q.scales));
    expect(Array.from(r.zeros)).toEqual(Array.from(q.zeros));
    expect((back.classifier as QuantLinear).q).toBe(r);
    const a = forward(packed, createRunState(packed.config), seq, 0);
    expect(Array.from(forward(back, createRunState(back.config), seq, 0))).toEqual(Array.from(a));
    await expect(loadInt21CheckpointBytes(bytesOut.subarray(0, bytesOut.length - 100))).rejects.toThrow(
      /tensor "tokenEmbedding\.zeros".*run past the end of the file.*truncated/,
    );
  });
});

describe("packed embeddings elsewhere", () => {
  it("checkpoints an act-order, symmetric f32 table with an unshared classifier exactly", async () => {
    const config = { ...syntheticConfig("stories260K"), nLayers: 1, sharedClassifier: false };
    const w = syntheticWeights(config, { format: "int2-g64-asym-f16" });
    const gIdx = Int32Array.from({ length: config.dim }, (_, k) => (k * 7) % 2);
    const q = rtnQuantize(
      w.tokenEmbedding as Float32Array,
      config.vocabSize,
      config.dim,
      "int4-g32-sym-f32",
      {
        gIdx,
      },
    );
    const packed: LlamaWeights = { ...w, tokenEmbedding: q };
    const back = (await loadInt21CheckpointBytes(serializeInt21Checkpoint(packed), { backend })).weights;
    const r = back.tokenEmbedding as typeof q;
    expect(Array.from(r.gIdx ?? [])).toEqual(Array.from(gIdx));
    expect(Array.from(denseTokenEmbedding(r))).toEqual(Array.from(denseTokenEmbedding(q)));
    expect(isTiedClassifier(back.classifier, r)).toBe(false);
  });

  it("syntheticWeights packs the table it would otherwise build in float, row for row", () => {
    const config = { ...syntheticConfig("stories260K"), nLayers: 1 };
    const float = syntheticWeights(config, { seed: 5 });
    const packed = syntheticWeights(config, { seed: 5, embeddingFormat: EMB, blockElements: 1000 });
    const want = quantizeTokenEmbedding(float.tokenEmbedding, config, EMB);
    const got = packed.tokenEmbedding as typeof want;
    expect(Array.from(got.qweight.words)).toEqual(Array.from(want.qweight.words));
    expect(Array.from(got.scales)).toEqual(Array.from(want.scales));
    expect((packed.classifier as QuantLinear).q).toBe(got);
  });

  it("loaders pack the table on load (quantize.embedding) the same way quantizeModel does", () => {
    const path = sharedPath(SHARED.stories260K);
    const onLoad = loadLlama2c(path, { backend, quantize: { format: "int4-g32-asym-f16", embedding: EMB } });
    const q = packedStories().tokenEmbedding as Exclude<LlamaWeights["tokenEmbedding"], Float32Array>;
    const got = onLoad.tokenEmbedding as typeof q;
    expect(Array.from(got.qweight.words)).toEqual(Array.from(q.qweight.words));
    expect((onLoad.classifier as QuantLinear).q).toBe(got);
  });

  it("quantizeModel: an untied classifier stays; a packed table or a non-tied shared classifier is refused", () => {
    const config = { ...syntheticConfig("stories260K"), nLayers: 1, sharedClassifier: false };
    const w = syntheticWeights(config);
    const r = quantizeModel(w, {
      format: "int4-g64-asym-f16",
      method: "rtn",
      embedding: "int4-g64-asym-f16",
    });
    expect(isPackedEmbedding(r.weights.tokenEmbedding)).toBe(true);
    expect(r.weights.classifier).toBe(w.classifier);
    expect(() =>
      quantizeModel(r.weights, { format: "int4-g64-asym-f16", method: "rtn", embedding: EMB }),
    ).toThrow(/tokenEmbedding is already packed; omit the embedding option/);
    const tied = syntheticWeights({ ...config, sharedClassifier: true });
    const other = createFloatLinear({
      weight: (tied.tokenEmbedding as Float32Array).slice(),
      outFeatures: config.vocabSize,
      inFeatures: config.dim,
      backend,
    });
    expect(() =>
      quantizeModel(
        { ...tied, classifier: other },
        { format: "int4-g64-asym-f16", method: "rtn", embedding: EMB },
      ),
    ).toThrow(/sharedClassifier is set but the classifier is not the float linear over tokenEmbedding/);
    // Without the option the packed table is kept as it is.
    const again = quantizeModel(
      { ...r.weights, layers: w.layers },
      { format: "int4-g64-asym-f16", method: "rtn" },
    );
    expect(again.weights.tokenEmbedding).toBe(r.weights.tokenEmbedding);
  });

  it("saveGguf writes a packed table dequantized (F32) and keeps the tie", async () => {
    const w = packedStories();
    const { bytes: file } = serializeGgufModel(w, { type: "F32" });
    const back = (await loadGguf(file, { backend })).weights;
    expect(back.config.sharedClassifier).toBe(true);
    expect(Array.from(back.tokenEmbedding as Float32Array)).toEqual(
      Array.from(denseTokenEmbedding(w.tokenEmbedding)),
    );
  });

  it("the HF exporter writes a packed table dequantized and keeps the tie", () => {
    const w = packedStories();
    const { tensors, config } = hfExportTensors(w);
    expect(config.tie_word_embeddings).toBe(true);
    expect(tensors["lm_head.weight"]).toBeUndefined();
    expect(Array.from(tensors["model.embed_tokens.weight"].data as Float32Array)).toEqual(
      Array.from(denseTokenEmbedding(w.tokenEmbedding)),
    );
  });
});
