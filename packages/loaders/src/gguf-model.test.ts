import { spawnSync } from "node:child_process";
import { mkdtempSync, statSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  GGML_TYPES,
  type GgufValue,
  parseGguf,
  quantizeQ4_0,
  quantizeQ4_1,
  readGgufTokenizer,
  serializeGguf,
} from "@int21/io";
import {
  createQuantLinear,
  createQuantizedLinear,
  createReferenceBackend,
  referenceDequantize,
  rtnQuantize,
} from "@int21/quant-kernels";
import { SHARED, sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { loadInt21CheckpointBytes, serializeInt21Checkpoint } from "./checkpoint";
import {
  ggmlToQuantized,
  ggufConfigToLlama,
  ggufTokenizerToLlama2c,
  llama2cTokenizerToGguf,
  llamaToGgufMetadata,
  loadGguf,
  openGgufReader,
  quantizedToGgml,
  saveGguf,
  serializeGgufModel,
} from "./gguf-model";
import { loadHf } from "./load-hf";
import { loadLlama2c } from "./load-llama2c";
import { detectModelFile, loadModel } from "./model-files";
import { writeSyntheticQ4KM } from "./testing/q4km-gguf";
import { Llama2cTokenizer } from "./tokenizer";
import {
  embeddingRows,
  isPackedEmbedding,
  tokenEmbeddingBytes,
  forward,
  linearParts,
  assembleFromReader,
  createRunState,
  syntheticConfig,
  syntheticWeights,
  type LlamaWeights,
} from "@int21/model-llama";

const tmp = mkdtempSync(join(tmpdir(), "int21-gguf-"));
const stories = loadLlama2c(sharedPath(SHARED.stories260K));
const tok512 = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
const PROMPT = tok512.encode("Once upon a time, there was a little girl named Lily.", { bos: true });

/** Logits of every prompt position. */
function logits(w: LlamaWeights): Float32Array {
  const s = createRunState(w.config, { maxRows: PROMPT.length });
  return forward(w, s, PROMPT, 0, "all").slice();
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Every element equal as numbers (-0 equals 0). */
function expectSameValues(a: Float32Array, b: Float32Array): void {
  expect(a.length).toBe(b.length);
  let bad = -1;
  for (let i = 0; i < a.length && bad < 0; i++) if (a[i] !== b[i]) bad = i;
  expect(bad).toBe(-1);
}

function floatOf(w: LlamaWeights, layer: number, n: "wq" | "w2"): Float32Array {
  const p = linearParts(w.layers[layer][n], n);
  if (p.kind === "float") return p.weight;
  const out = new Float32Array(p.q.outFeatures * p.q.inFeatures);
  referenceDequantize(p.q, out);
  return out;
}

describe("GGUF model round trips (stories260K)", () => {
  const ref = logits(stories);

  it("F32: int21 → GGUF → int21 gives bit-identical weights and logits; loadModel detects it", async () => {
    const path = join(tmp, "stories260K-f32.gguf");
    const report = await saveGguf(path, stories, { type: "F32", tokenizer: tok512 });
    expect(report.tensors.every((t) => t.mode === "exact" && t.type === "F32")).toBe(true);
    expect(report.tensors.some((t) => t.gguf === "output.weight")).toBe(false); // tied classifier
    const m = await loadGguf(path);
    expect(m.weights.config).toEqual(stories.config);
    expect(m.weights.tokenEmbedding).toEqual(stories.tokenEmbedding);
    expect(floatOf(m.weights, 2, "wq")).toEqual(floatOf(stories, 2, "wq"));
    expect(maxAbsDiff(logits(m.weights), ref)).toBe(0);
    expect(m.tokenizer?.encode("Lily and Tim")).toEqual(tok512.encode("Lily and Tim"));
    expect(await detectModelFile(path)).toBe("gguf");
    const viaLoadModel = await loadModel(path);
    expect(viaLoadModel.kind).toBe("gguf");
    expect(maxAbsDiff(logits(viaLoadModel.weights), ref)).toBe(0);
  });

  it("Q8_0: logits close; keepPacked keeps every block as the q8_0 block format", async () => {
    const { bytes, report } = serializeGgufModel(stories, { type: "Q8_0" });
    expect(report.tensors.find((t) => t.gguf === "token_embd.weight")?.type).toBe("Q8_0");
    const w2 = report.tensors.find((t) => t.gguf === "blk.0.ffn_down.weight")!;
    expect(w2.type).toBe("F32"); // row length 172 is not a multiple of 32: F32 fallback
    const wq = report.tensors.find((t) => t.gguf === "blk.0.attn_q.weight")!;
    expect(wq).toMatchObject({ type: "Q8_0", mode: "quantized", source: "float" });
    expect(wq.maxAbsError).toBeGreaterThan(0);
    const float = await loadGguf(bytes);
    const diff = maxAbsDiff(logits(float.weights), ref);
    // the same 8-bit grid in int21's own RTN (int8-g32-sym-f16, embedding left float) as a yardstick
    const rtn8 = loadLlama2c(sharedPath(SHARED.stories260K), { quantize: { format: "int8-g32-sym-f16" } });
    const rtnDiff = maxAbsDiff(logits(rtn8), ref);
    const projOnly = await loadGguf(
      serializeGgufModel(stories, { type: "Q8_0", embeddingType: "F32" }).bytes,
    );
    const projDiff = maxAbsDiff(logits(projOnly.weights), ref);
    const range = Math.max(...ref) - Math.min(...ref);
    console.log(
      `stories260K → GGUF Q8_0 → int21: max |Δlogit| = ${diff.toExponential(3)} (embedding F32: ${projDiff.toExponential(3)}; int21 RTN int8-g32: ${rtnDiff.toExponential(3)}; logit range ${range.toFixed(1)})`,
    );
    expect(diff).toBeGreaterThan(0);
    expect(projDiff).toBeLessThan(2 * rtnDiff);
    expect(diff).toBeLessThan(0.02 * range);
    const packed = await loadGguf(bytes, { keepPacked: true });
    const entries = packed.tensors.filter((t) => t.loadedAs === "packed");
    // every projection but ffn_down (F32), and token_embd (the tied classifier runs over the same record)
    expect(entries.length).toBe(5 * 6 + 1);
    for (const e of entries) expect(e).toMatchObject({ format: "q8_0", exact: true });
    expect(entries.find((e) => e.gguf === "token_embd.weight")?.name).toBe("tokenEmbedding");
    expect(floatOf(packed.weights, 1, "wq")).toEqual(floatOf(float.weights, 1, "wq"));
    expect(maxAbsDiff(logits(packed.weights), logits(float.weights))).toBeLessThan(1e-4);
  });

  it("token_embd and output stay packed when the GGUF stores them quantized (keepPacked, loadModel's default)", async () => {
    const config = { ...syntheticConfig("stories260K"), sharedClassifier: false };
    const w = syntheticWeights(config, { seed: 12 });
    const path = join(tmp, "untied-q8.gguf");
    await saveGguf(path, w, { type: "Q8_0" });
    const float = await loadGguf(path);
    const packed = await loadGguf(path, { keepPacked: true });
    const emb = packed.weights.tokenEmbedding;
    expect(isPackedEmbedding(emb)).toBe(true);
    expect(isPackedEmbedding(float.weights.tokenEmbedding)).toBe(false);
    // a packed table costs about a quarter of the float one; the rows it decodes are ggml's values exactly
    expect(tokenEmbeddingBytes(emb)).toBeLessThan(tokenEmbeddingBytes(float.weights.tokenEmbedding) / 3);
    const ids = [0, 5, 511, 77, 5];
    const a = new Float32Array(ids.length * config.dim);
    const b = new Float32Array(ids.length * config.dim);
    embeddingRows(packed.weights, ids, a);
    embeddingRows(float.weights, ids, b);
    expectSameValues(a, b);
    const out = packed.tensors.find((t) => t.gguf === "output.weight")!;
    expect(out).toMatchObject({ loadedAs: "packed", exact: true });
    expect(linearParts(packed.weights.classifier, "classifier").kind).toBe("quant");
    expect(maxAbsDiff(logits(packed.weights), logits(float.weights))).toBeLessThan(1e-4);
    const viaLoadModel = await loadModel(path);
    expect(isPackedEmbedding(viaLoadModel.weights.tokenEmbedding)).toBe(true);
    expect(linearParts(viaLoadModel.weights.layers[0].wq, "wq").kind).toBe("quant");
    // asked to re-quantize, loadModel reads floats as before
    const rq = await loadModel(path, { quantize: { format: "int4-g32-asym-f16" } });
    expect(isPackedEmbedding(rq.weights.tokenEmbedding)).toBe(false);
  });

  it("int21 INT4 RTN → GGUF Q8_0 (codes written directly, exact) → int21: same weights, logits within kernel rounding", async () => {
    const int4 = loadLlama2c(sharedPath(SHARED.stories260K), { quantize: { format: "int4-g32-asym-f16" } });
    const ref4 = logits(int4);
    // the float embedding (also the tied classifier) stays F32, so only the projections are compared
    const { bytes, report } = serializeGgufModel(int4, { type: "Q8_0", embeddingType: "F32" });
    const quant = report.tensors.filter((t) => t.source === "quant");
    expect(quant.length).toBe(35);
    for (const t of quant) expect(t.mode).toBe("exact"); // w2 as F32, the others as direct Q8_0 codes
    const back = await loadGguf(bytes, { keepPacked: true });
    expectSameValues(floatOf(back.weights, 3, "wq"), floatOf(int4, 3, "wq"));
    expectSameValues(floatOf(back.weights, 3, "w2"), floatOf(int4, 3, "w2"));
    const diff = maxAbsDiff(logits(back.weights), ref4);
    console.log(
      `int4-g32-asym RTN → GGUF Q8_0 → int21 (packed int8): max |Δlogit| = ${diff.toExponential(3)}`,
    );
    expect(diff).toBeLessThan(1e-4);
  });

  it("int21 INT4 RTN → GGUF Q4_1 (direct, f16-rounded minimum) → int21: error reported, logits close", async () => {
    const int4 = loadLlama2c(sharedPath(SHARED.stories260K), { quantize: { format: "int4-g32-asym-f16" } });
    const ref4 = logits(int4);
    const { bytes, report } = serializeGgufModel(int4, { type: "Q4_1", embeddingType: "F32" });
    const wq = report.tensors.find((t) => t.gguf === "blk.0.attn_q.weight")!;
    expect(wq.mode === "direct" || wq.mode === "exact").toBe(true);
    const worst = Math.max(...report.tensors.filter((t) => t.source === "quant").map((t) => t.maxAbsError));
    const back = await loadGguf(bytes, { keepPacked: true });
    const packed = back.tensors.filter((t) => t.loadedAs === "packed");
    expect(packed.length).toBe(30);
    for (const p of packed) expect(p).toMatchObject({ format: "q4_1", exact: true });
    const diff = maxAbsDiff(logits(back.weights), ref4);
    console.log(
      `int4-g32-asym RTN → GGUF Q4_1 → int21: worst weight error ${worst.toExponential(3)}, max |Δlogit| = ${diff.toExponential(3)}`,
    );
    expect(worst).toBeLessThan(1e-3);
    expect(diff).toBeLessThan(0.02);
  });

  it("an untied classifier is written as output.weight and read back; GPTQ-style act-order records are re-quantized", async () => {
    const config = { ...syntheticConfig("stories260K"), sharedClassifier: false };
    const w = syntheticWeights(config, { seed: 11 });
    const { bytes, report } = serializeGgufModel(w, { type: "F32" });
    expect(report.tensors.find((t) => t.gguf === "output.weight")?.mode).toBe("exact");
    const back = await loadGguf(bytes);
    expect(back.weights.config.sharedClassifier).toBe(false);
    expect(maxAbsDiff(logits(back.weights), logits(w))).toBe(0);
    // a record with act-order (gIdx) has no block layout: dequantized, then ggml's quantizer
    const wq = linearParts(w.layers[0].wq, "wq");
    if (wq.kind !== "float") throw new Error("expected a float projection");
    const gIdx = Int32Array.from({ length: 64 }, (_, k) => (k * 7) % 2);
    const r = rtnQuantize(wq.weight, 64, 64, "int4-g32-asym-f16");
    const q = createQuantizedLinear({ ...r, format: r.format, gIdx });
    expect(quantizedToGgml(q, "Q8_0")).toBeUndefined();
    w.layers[0].wq = createQuantLinear({ q, backend: createReferenceBackend() });
    const rq = serializeGgufModel(w, { type: "Q8_0" }).report.tensors.find((t) => t.name === "layers.0.wq")!;
    expect(rq).toMatchObject({ source: "quant", mode: "requantized", type: "Q8_0" });
    expect(rq.maxAbsError).toBeGreaterThan(0);
    w.finalNorm[3] = Number.NaN;
    expect(() => serializeGgufModel(w)).toThrow(/finalNorm holds a non-finite value \(NaN\) at element 3/);
  });

  it("openGgufReader streams the same float tensors, tensor by tensor, under int21 names", async () => {
    const { bytes } = serializeGgufModel(stories, { type: "Q4_0" });
    const reader = await openGgufReader(bytes);
    expect(reader.config).toEqual(stories.config);
    expect(reader.order[0]).toBe("tokenEmbedding");
    expect(reader.order).toContain("layers.4.w2");
    const viaReader = await assembleFromReader(reader);
    const direct = await loadGguf(bytes);
    expectSameValues(floatOf(viaReader, 4, "wq"), floatOf(direct.weights, 4, "wq"));
    expect(maxAbsDiff(logits(viaReader), logits(direct.weights))).toBe(0);
  });

  it("a truncated GGUF fails naming the file, before anything is loaded", async () => {
    const path = join(tmp, "truncated.gguf");
    await saveGguf(path, stories, { type: "F16" });
    truncateSync(path, statSync(path).size - 100);
    await expect(loadGguf(path)).rejects.toThrow(new RegExp(`${path}.*(truncated|past the end)`));
    await expect(loadModel(path)).rejects.toThrow(path);
  });
});

describe("k-quant GGUF projections", () => {
  it("Q2_K … Q6_K, Q4_0 … Q8_0, IQ4_NL, IQ4_XS: keepPacked keeps every tensor in its own block format, exactly", async () => {
    const config = {
      dim: 256,
      hiddenDim: 512,
      nLayers: 1,
      nHeads: 4,
      nKvHeads: 2,
      vocabSize: 512,
      seqLen: 64,
      ropeTheta: 10000,
      normEps: 1e-5,
      sharedClassifier: false,
    };
    const w = syntheticWeights(config, { seed: 21 });
    const f32 = parseGguf(serializeGgufModel(w, { type: "F32" }).bytes, "f32");
    const PROMPT_K = [1, 5, 300, 42, 7];
    const run = (m: LlamaWeights) =>
      forward(m, createRunState(m.config, { maxRows: 5 }), PROMPT_K, 0, "all").slice();
    const TYPES = [
      "Q2_K",
      "Q3_K",
      "Q4_K",
      "Q5_K",
      "Q6_K",
      "Q4_0",
      "Q4_1",
      "Q5_0",
      "Q5_1",
      "Q8_0",
      "IQ4_NL",
      "IQ4_XS",
    ] as const;
    for (const type of TYPES) {
      // every 2-D tensor (token_embd and output too) in `type`, as llama-quantize writes them
      const bytes = serializeGguf({
        metadata: f32.metadata,
        tensors: f32.names.map((n) => ({
          name: n,
          type: f32.tensors[n].shape.length === 2 ? type : ("F32" as const),
          shape: f32.tensors[n].shape,
          data: f32.readTensorF32(n),
        })),
      });
      const file = parseGguf(bytes, `${type}.gguf`);
      const packed = await loadGguf(bytes, { keepPacked: true });
      const float = await loadGguf(bytes);
      const want = type === "IQ4_NL" ? "iq4_nl-ggml" : type.toLowerCase();
      const twoD = packed.tensors.filter((t) => t.type === type);
      expect(twoD.length, type).toBe(9);
      for (const t of twoD)
        expect(t, `${type} ${t.gguf}`).toMatchObject({ loadedAs: "packed", format: want, exact: true });
      // the packed records decode to ggml's own dequantized values, bit for bit
      expectSameValues(floatOf(packed.weights, 0, "w2"), file.readTensorF32("blk.0.ffn_down.weight"));
      const e = packed.weights.tokenEmbedding;
      expect(isPackedEmbedding(e)).toBe(true);
      const rows = new Float32Array(2 * 256);
      embeddingRows(packed.weights, [3, 511], rows);
      const table = file.readTensorF32("token_embd.weight");
      expectSameValues(
        rows,
        Float32Array.from([...table.subarray(3 * 256, 4 * 256), ...table.subarray(511 * 256)]),
      );
      const ref = run(packed.weights);
      expect(maxAbsDiff(ref, run(float.weights)), type).toBeLessThan(1e-3);
      // re-export writes the blocks verbatim: every tensor's data is the input file's, byte for byte
      const again = serializeGgufModel(packed.weights, { type: "F32" });
      const out = parseGguf(again.bytes, "again");
      // general.file_type: llama.cpp's ftype of a file mostly of this type (the k-quants' _M mixes)
      const FTYPE = {
        Q4_0: 2,
        Q4_1: 3,
        Q8_0: 7,
        Q5_0: 8,
        Q5_1: 9,
        Q2_K: 10,
        Q3_K: 12,
        Q4_K: 15,
        Q5_K: 17,
        Q6_K: 18,
        IQ4_NL: 25,
        IQ4_XS: 30,
      };
      expect(out.get("general.file_type"), type).toBe(FTYPE[type]);
      for (const n of file.names) {
        expect(out.tensors[n].type, `${type} ${n}`).toBe(file.tensors[n].type);
        expect(
          Buffer.from(out.readTensorRaw(n)).equals(Buffer.from(file.readTensorRaw(n))),
          `${type} ${n}`,
        ).toBe(true);
      }
      expect(again.report.tensors.filter((t) => t.type === type).every((t) => t.mode === "exact")).toBe(true);
      // and an int21 checkpoint keeps the block format bit for bit
      const ck = await loadInt21CheckpointBytes(serializeInt21Checkpoint(packed.weights));
      const back = ck.weights;
      expect(linearParts(back.layers[0].w2, "w2")).toMatchObject({ kind: "quant" });
      expect(isPackedEmbedding(back.tokenEmbedding)).toBe(true);
      expect(maxAbsDiff(run(back), ref), `${type} checkpoint`).toBe(0);
    }
  }, 120_000);

  it("a block with a non-finite f16 scale is refused naming the file and tensor", async () => {
    const config = { ...syntheticConfig("stories260K"), dim: 256, hiddenDim: 256, nHeads: 8, nKvHeads: 8 };
    const f32 = parseGguf(serializeGgufModel(syntheticWeights(config, { seed: 3 }), { type: "F32" }).bytes);
    const tensors = f32.names.map((n) => {
      const t = { name: n, shape: f32.tensors[n].shape, data: f32.readTensorF32(n) };
      if (n !== "blk.1.attn_q.weight") return { ...t, type: "F32" as const };
      const raw = new Uint8Array((t.data.length / 256) * GGML_TYPES.Q4_K.blockBytes);
      GGML_TYPES.Q4_K.quantize!(t.data, raw);
      raw[GGML_TYPES.Q4_K.blockBytes * 3 + 1] = 0x7c; // block 3's d = +inf
      raw[GGML_TYPES.Q4_K.blockBytes * 3] = 0;
      return { name: n, shape: t.shape, type: "Q4_K" as const, raw };
    });
    const bytes = serializeGguf({ metadata: f32.metadata, tensors });
    await expect(loadGguf(bytes, { keepPacked: true })).rejects.toThrow(
      /tensor "blk\.1\.attn_q\.weight": .*(finite|inf)/i,
    );
  });

  it("NEOX q/k rows and Phi-3's fused tensors stay packed too (whole ggml rows moved and sliced)", async () => {
    for (const family of ["qwen3", "phi3"]) {
      const w = await loadHf(sharedPath(`fixtures/hf-families/${family}`));
      const { bytes } = serializeGgufModel(w, { type: "Q8_0", embeddingType: "Q8_0" });
      const packed = await loadGguf(bytes, { keepPacked: true });
      const float = await loadGguf(bytes);
      const proj = packed.tensors.filter((t) => /^layers\.\d+\.w/.test(t.name) && t.type === "Q8_0");
      expect(proj.length).toBeGreaterThanOrEqual(6 * w.config.nLayers); // q, k, v, o, gate, up at least
      for (const t of proj)
        expect(t, `${family} ${t.name}`).toMatchObject({ loadedAs: "packed", format: "q8_0" });
      expectSameValues(floatOf(packed.weights, 1, "wq"), floatOf(float.weights, 1, "wq"));
      const ids = [1, 2, 3, 50, 99, 7];
      const run = (m: LlamaWeights) =>
        forward(m, createRunState(m.config, { maxRows: ids.length }), ids, 0, "all").slice();
      expect(maxAbsDiff(run(packed.weights), run(float.weights)), family).toBeLessThan(1e-3);
      // rows moved back and parts fused again: the re-exported tensors are the file's bytes
      const file = parseGguf(bytes, family);
      const out = parseGguf(serializeGgufModel(packed.weights, { type: "Q8_0" }).bytes, "again");
      for (const n of file.names)
        expect(
          Buffer.from(out.readTensorRaw(n)).equals(Buffer.from(file.readTensorRaw(n))),
          `${family} ${n}`,
        ).toBe(true);
    }
  }, 120_000);
});

describe("ggml blocks ↔ int21 records", () => {
  const N = 6;
  const K = 64;
  const w = Float32Array.from({ length: N * K }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 5)) * 0.1);
  w.fill(0, 64, 96); // one all-zero block

  it("Q4_0 (negative block scales) maps exactly to int4-g32-asym-f16", () => {
    const raw = quantizeQ4_0(w, new Uint8Array((N * K * 18) / 32));
    const r = ggmlToQuantized("Q4_0", raw, N, K);
    expect(r.q?.format.name).toBe("int4-g32-asym-f16");
    expect(r.q && r.exact).toBe(true);
    const want = GGML_TYPES.Q4_0.dequantize!(raw, new Float32Array(N * K), N * K);
    const got = new Float32Array(N * K);
    referenceDequantize(r.q!, got);
    expectSameValues(got, want);
  });

  it("Q4_1 maps to int4-g32-asym-f32 within float32 rounding; Q6_K (groups of 16) is refused with a reason", () => {
    const raw = quantizeQ4_1(w, new Uint8Array((N * K * 20) / 32));
    const r = ggmlToQuantized("Q4_1", raw, N, K);
    expect(r.q?.format.name).toBe("int4-g32-asym-f32");
    const want = GGML_TYPES.Q4_1.dequantize!(raw, new Float32Array(N * K), N * K);
    const got = new Float32Array(N * K);
    referenceDequantize(r.q!, got);
    for (let i = 0; i < got.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThan(1e-6);
    const k6 = ggmlToQuantized("Q6_K", new Uint8Array(210), 1, 256);
    expect(k6.q).toBeUndefined();
    expect(k6.q === undefined && k6.reason).toMatch(/groups of 16/);
  });

  it("Q5_0 maps exactly to int8-g32-sym-f16, Q5_1 to int8-g32-asym-f32 within float32 rounding", () => {
    let seed = 3;
    const byte = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed >>> 24;
    };
    const blocks = (bytes: number, halfs: [number, number][]) => {
      const raw = Uint8Array.from({ length: ((N * K) / 32) * bytes }, byte);
      for (let o = 0; o < raw.length; o += bytes)
        for (const [at, h] of halfs) {
          raw[o + at] = h & 255;
          raw[o + at + 1] = h >> 8;
        }
      return raw;
    };
    const q50 = blocks(22, [[0, 0x2c00]]); // d = 1/16
    const r0 = ggmlToQuantized("Q5_0", q50, N, K);
    expect(r0.q?.format.name).toBe("int8-g32-sym-f16");
    const got0 = new Float32Array(N * K);
    referenceDequantize(r0.q!, got0);
    expectSameValues(got0, GGML_TYPES.Q5_0.dequantize!(q50, new Float32Array(N * K), N * K));
    const q51 = blocks(24, [
      [0, 0x2c00],
      [2, 0xb400], // m = -1/4: zero 4
    ]);
    const r1 = ggmlToQuantized("Q5_1", q51, N, K);
    expect(r1.q?.format.name).toBe("int8-g32-asym-f32");
    const got1 = new Float32Array(N * K);
    referenceDequantize(r1.q!, got1);
    const want1 = GGML_TYPES.Q5_1.dequantize!(q51, new Float32Array(N * K), N * K);
    for (let i = 0; i < got1.length; i++) expect(Math.abs(got1[i] - want1[i])).toBeLessThan(1e-6);
  });

  it("int4-g32-sym-f16 → Q4_0 and → Q4_1 are exact; per-channel formats are not encoded directly", () => {
    const q = rtnQuantize(w, N, K, "int4-g32-sym-f16");
    const want = new Float32Array(N * K);
    referenceDequantize(q, want);
    for (const type of ["Q4_0", "Q4_1", "Q8_0"] as const) {
      const raw = quantizedToGgml(q, type)!;
      expect(raw).toBeDefined();
      expectSameValues(GGML_TYPES[type].dequantize!(raw, new Float32Array(N * K), N * K), want);
    }
    expect(quantizedToGgml(rtnQuantize(w, N, K, "int4-pc-asym-f16"), "Q8_0")).toBeUndefined();
    // int4 asym codes minus zero span [-15, 15]: not always a Q4_0 block
    const asym = rtnQuantize(w, N, K, "int4-g32-asym-f16");
    expect(quantizedToGgml(asym, "Q4_0")).toBeUndefined();
  });
});

describe("GGUF metadata and tokenizer", () => {
  it("llama.* metadata ↔ LlamaConfig, with clear errors", () => {
    const md = llamaToGgufMetadata(stories.config, { type: "Q8_0" });
    expect(ggufConfigToLlama(md, { hasOutput: false })).toEqual(stories.config);
    expect(ggufConfigToLlama(md, { hasOutput: true }).sharedClassifier).toBe(false);
    const bad: Record<string, GgufValue> = {
      ...md,
      "general.architecture": { type: "string", value: "falcon" },
    };
    expect(() => ggufConfigToLlama(bad, { file: "m.gguf" })).toThrow(/m\.gguf.*"falcon".*supported: llama/);
    const { "llama.block_count": _, ...missing } = md;
    expect(() => ggufConfigToLlama(missing, { file: "m.gguf" })).toThrow(
      /m\.gguf.*llama\.block_count.*missing/,
    );
    const partial = { ...md, "llama.rope.dimension_count": { type: "u32", value: 4 } as GgufValue };
    expect(() => ggufConfigToLlama(partial)).toThrow(/dimension_count/);
  });

  it("an unexpected tensor is refused by name", async () => {
    const { bytes } = serializeGgufModel(stories, { type: "F32" });
    const f = parseGguf(bytes);
    const tensors = f.names.map((n) => ({
      name: n,
      type: f.tensors[n].type,
      shape: f.tensors[n].shape,
      raw: f.readTensorRaw(n),
    }));
    const extra = serializeGguf({
      metadata: f.metadata,
      tensors: [
        ...tensors,
        { name: "blk.0.attn_rot_embd.weight", type: "F32", shape: [4], raw: new Uint8Array(16) },
      ],
    });
    await expect(loadGguf(extra)).rejects.toThrow(/unexpected tensor "blk\.0\.attn_rot_embd\.weight"/);
    // rope_freqs.weight (Llama 3's scaling) is read, and refused when it is not a positive [headSize/2] table
    const zeros = serializeGguf({
      metadata: f.metadata,
      tensors: [...tensors, { name: "rope_freqs.weight", type: "F32", shape: [4], raw: new Uint8Array(16) }],
    });
    await expect(loadGguf(zeros)).rejects.toThrow(/rope_freqs\.weight" holds a value that is not positive/);
  });

  const texts = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    'Tom said: "Wow!" 🙂 — café 123\n\nThe end.',
  ];
  for (const [label, file] of [
    ["tok512", SHARED.tok512],
    ["Llama 2 32k", SHARED.llama2Tokenizer],
  ] as const) {
    it(`${label}: llama2.c tokenizer → GGUF tokenizer.ggml.* → Llama2cTokenizer encodes the same ids`, () => {
      const tok = Llama2cTokenizer.fromFile(sharedPath(file));
      const metadata = llama2cTokenizerToGguf(tok);
      // Both go through a real GGUF image (piece 30143 of the Llama 2 vocabulary is a lone U+FEFF, which
      // the GGUF string reader must keep).
      const g = readGgufTokenizer(parseGguf(serializeGguf({ metadata, tensors: [] }), label).metadata, label);
      expect(g.tokens[1]).toBe("<s>");
      expect(g.tokenTypes?.[3]).toBe(6); // <0x00>
      const back = ggufTokenizerToLlama2c(g, label);
      expect(back.vocabSize).toBe(tok.vocabSize);
      expect(back.pieces).toEqual(tok.pieces);
      expect(back.scores).toEqual(tok.scores);
      for (const t of texts) expect(back.encode(t, { bos: true })).toEqual(tok.encode(t, { bos: true }));
    });
  }

  it("a BPE (gpt2) vocabulary is refused with a reason", () => {
    expect(() => ggufTokenizerToLlama2c({ model: "gpt2", tokens: ["a", "b"] }, "x.gguf")).toThrow(
      /x\.gguf.*gpt2/,
    );
  });
});

describe("a Q4_K_M GGUF loads packed, in about its file size of memory", () => {
  it("1.1B-layer shape (dim 2048, hidden 5632, 32000 vocab, untied Q6_K output, 1 layer): RSS growth ≤ 1.2 × file", async () => {
    // bench/gguf-q4km-rss.bench.ts runs the 7B shape; this is the CI-sized variant
    const path = join(tmp, "q4km.gguf");
    await writeSyntheticQ4KM(path, {
      dim: 2048,
      hiddenDim: 5632,
      nLayers: 1,
      nHeads: 32,
      nKvHeads: 4,
      vocabSize: 32000,
      seqLen: 4096,
      ropeTheta: 10000,
      normEps: 1e-5,
      sharedClassifier: false,
    });
    const child = spawnSync(
      process.execPath,
      ["--import", "tsx", join(import.meta.dirname, "testing", "gguf-rss-child.ts"), path, "3"],
      { encoding: "utf8", cwd: import.meta.dirname },
    );
    expect(child.status, child.stderr).toBe(0);
    const r = JSON.parse(child.stdout);
    const growth = r.maxRss - r.baselineRss;
    console.log(
      `Q4_K_M GGUF ${(r.fileBytes / 2 ** 20).toFixed(1)} MiB: peak RSS ${(r.maxRss / 2 ** 20).toFixed(1)} MiB (${(r.baselineRss / 2 ** 20).toFixed(1)} MiB before loading, growth ${(growth / r.fileBytes).toFixed(2)}× the file), load ${r.loadMs.toFixed(0)} ms, 3 tokens ${r.genMs.toFixed(0)} ms`,
    );
    expect(r.ids.length).toBe(4);
    expect(growth).toBeLessThan(1.2 * r.fileBytes);
    expect(statSync(path).size).toBe(r.fileBytes);
  }, 120_000);
});
