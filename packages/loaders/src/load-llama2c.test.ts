import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHARED, sharedPath } from "@int21/shared-data";
import { type Linear, rtnQuantize } from "@int21/quant-kernels";
import { describe, expect, it } from "vitest";
import {
  LLAMA2C_MAGIC,
  encodeLlama2c,
  loadLlama2c,
  loadLlama2cBytes,
  parseLlama2cHeader,
} from "./load-llama2c";
import { denseTokenEmbedding, llamaTensorSpecs, linearParts, type LlamaWeights } from "@int21/model-llama";

const path = sharedPath(SHARED.stories260K);
const fileBytes = new Uint8Array(readFileSync(path));
const tmp = mkdtempSync(join(tmpdir(), "int21-llama2c-"));

/** Every tensor of a loaded float model by int21 name. */
function tensorsOf(w: LlamaWeights): Map<string, Float32Array> {
  const m = new Map<string, Float32Array>();
  for (const s of llamaTensorSpecs(w.config)) {
    if (s.name === "tokenEmbedding") m.set(s.name, denseTokenEmbedding(w.tokenEmbedding));
    else if (s.name === "finalNorm") m.set(s.name, w.finalNorm);
    else if (s.name === "classifier")
      m.set(s.name, (linearParts(w.classifier, s.name) as { weight: Float32Array }).weight);
    else {
      const [, l, f] = s.name.split(".");
      const v = w.layers[Number(l)][f as keyof LlamaWeights["layers"][number]];
      m.set(
        s.name,
        v instanceof Float32Array ? v : (linearParts(v as Linear, s.name) as { weight: Float32Array }).weight,
      );
    }
  }
  return m;
}

function expectSameWeights(a: LlamaWeights, b: LlamaWeights): void {
  expect(b.config).toEqual(a.config);
  const ta = tensorsOf(a);
  const tb = tensorsOf(b);
  expect([...tb.keys()]).toEqual([...ta.keys()]);
  for (const [k, v] of ta) expect(tb.get(k), k).toEqual(v);
}

describe("loadLlama2c on the real stories260K", () => {
  const w = loadLlama2c(path);

  it("is the documented file and reads the documented config", () => {
    expect(createHash("sha256").update(fileBytes).digest("hex")).toBe(
      "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696",
    );
    expect(w.config).toEqual({
      dim: 64,
      hiddenDim: 172,
      nLayers: 5,
      nHeads: 8,
      nKvHeads: 4,
      vocabSize: 512,
      seqLen: 512,
      ropeTheta: 10000,
      normEps: 1e-5,
      sharedClassifier: true,
    });
    expect(w.layers).toHaveLength(5);
    expect(w.layers[0].wk.outFeatures).toBe(32);
    expect(w.layers[4].w2.inFeatures).toBe(172);
  });

  it("places every tensor at the offset the README's layout gives", () => {
    const dv = new DataView(fileBytes.buffer, fileBytes.byteOffset);
    const f32At = (floatIndex: number) => dv.getFloat32(28 + 4 * floatIndex, true);
    const L = 5;
    const emb = 512 * 64;
    const wqStart = emb + L * 64; // after token_embedding and rms_att
    const w2Start = wqStart + L * (64 * 64 + 2 * 32 * 64 + 64 * 64) + L * 64 + L * 172 * 64;
    const weights = tensorsOf(w);
    expect(denseTokenEmbedding(w.tokenEmbedding)[0]).toBe(f32At(0));
    expect(denseTokenEmbedding(w.tokenEmbedding)[emb - 1]).toBe(f32At(emb - 1));
    expect(w.layers[2].attnNorm[7]).toBe(f32At(emb + 2 * 64 + 7));
    expect(weights.get("layers.0.wq")![0]).toBe(f32At(wqStart));
    expect(weights.get("layers.1.wq")![5 * 64 + 3]).toBe(f32At(wqStart + 64 * 64 + 5 * 64 + 3));
    expect(weights.get("layers.3.w2")![63 * 172 + 171]).toBe(f32At(w2Start + 3 * 64 * 172 + 63 * 172 + 171));
    const finalStart = w2Start + 2 * L * 64 * 172;
    expect(w.finalNorm[63]).toBe(f32At(finalStart + 63));
    // RMSNorm gains of a trained model are O(1), projections O(0.1): a sanity check on the reading.
    const meanAbs = (a: Float32Array) => a.reduce((s, v) => s + Math.abs(v), 0) / a.length;
    expect(meanAbs(w.finalNorm)).toBeGreaterThan(0.3);
    expect(meanAbs(weights.get("layers.0.wq")!)).toBeLessThan(0.5);
  });

  it("shares the classifier with the token embedding", () => {
    expect((linearParts(w.classifier, "classifier") as { weight: Float32Array }).weight).toBe(
      w.tokenEmbedding,
    );
  });

  it("loads identically from bytes, reporting progress tensor by tensor", () => {
    const seen: string[] = [];
    const b = loadLlama2cBytes(fileBytes, {
      name: "stories260K.bin",
      onProgress: (p) => {
        expect(p.done).toBe(seen.length + 1);
        expect(p.total).toBe(1 + 5 * 9 + 1);
        seen.push(p.tensor);
      },
    });
    expectSameWeights(w, b);
    expect(seen.slice(0, 3)).toEqual(["tokenEmbedding", "layers.0.attnNorm", "layers.1.attnNorm"]);
    expect(seen).toHaveLength(47);
  });

  it("loads a version-1 (ak42) export of the same weights identically", () => {
    const v1 = encodeLlama2c(w.config, tensorsOf(w), 1);
    expect(new DataView(v1.buffer).getUint32(0, true)).toBe(LLAMA2C_MAGIC);
    expect(v1.byteLength).toBe(256 + (fileBytes.byteLength - 28) - 2 * 512 * 4 * 4);
    const p = join(tmp, "v1.bin");
    writeFileSync(p, v1);
    expectSameWeights(w, loadLlama2c(p));
  });

  it("round-trips a separate classifier through both versions", () => {
    const config = { ...w.config, sharedClassifier: false };
    const t = tensorsOf(w);
    const cls = new Float32Array(512 * 64).map((_, i) => Math.sin(i));
    t.set("classifier", cls);
    for (const version of [0, 1] as const) {
      const bytes = encodeLlama2c(config, t, version);
      if (version === 0) expect(new DataView(bytes.buffer).getInt32(20, true)).toBe(-512);
      const back = loadLlama2cBytes(bytes);
      expect(back.config.sharedClassifier).toBe(false);
      expect((linearParts(back.classifier, "classifier") as { weight: Float32Array }).weight).toEqual(cls);
    }
  });

  it("quantizes each projection while loading, as RTN on the float weights", () => {
    const q = loadLlama2c(path, { quantize: { format: "int4-g32-asym-f16" } });
    const parts = linearParts(q.layers[3].w1, "w1");
    expect(parts.kind).toBe("quant");
    const ref = rtnQuantize(tensorsOf(w).get("layers.3.w1")!, 172, 64, "int4-g32-asym-f16");
    if (parts.kind === "quant") {
      expect(parts.q.qweight.words).toEqual(ref.qweight.words);
      expect(parts.q.scales).toEqual(ref.scales);
    }
    expect(linearParts(q.classifier, "classifier").kind).toBe("float");
    expect(q.layers[3].w1.bytes()).toBeLessThan(w.layers[3].w1.bytes() / 4);
  });
});

describe("loadLlama2c rejects bad files with the file and tensor named", () => {
  const write = (name: string, bytes: Uint8Array) => {
    const p = join(tmp, name);
    writeFileSync(p, bytes);
    return p;
  };

  it("truncated copies name the first tensor that does not fit", () => {
    const p = write("cut-mid.bin", fileBytes.subarray(0, 28 + 4 * (512 * 64 + 5 * 64 + 100)));
    expect(() => loadLlama2c(p)).toThrow(/cut-mid\.bin: truncated llama2\.c file.*tensor layers\.0\.wq/);
    const p2 = write("cut-end.bin", fileBytes.subarray(0, fileBytes.byteLength - 4));
    expect(() => loadLlama2c(p2)).toThrow(/cut-end\.bin: truncated.*tensor freqCisImag/);
    const p3 = write("cut-head.bin", fileBytes.subarray(0, 20));
    expect(() => loadLlama2c(p3)).toThrow(/cut-head\.bin: 20 bytes is too short/);
  });

  it("trailing bytes, a corrupt header, an unknown version are refused", () => {
    const longer = new Uint8Array(fileBytes.byteLength + 8);
    longer.set(fileBytes);
    expect(() => loadLlama2c(write("long.bin", longer))).toThrow(/long\.bin: .*8 unexpected trailing bytes/);
    const badHeads = fileBytes.slice();
    new DataView(badHeads.buffer).setInt32(12, 7, true); // n_heads 7 does not divide dim 64
    expect(() => loadLlama2c(write("heads.bin", badHeads))).toThrow(
      /heads\.bin \(llama2\.c header\): dim 64 is not divisible/,
    );
    const v2 = new Uint8Array(256);
    new DataView(v2.buffer).setUint32(0, LLAMA2C_MAGIC, true);
    new DataView(v2.buffer).setInt32(4, 2, true);
    expect(() => loadLlama2c(write("v2.bin", v2))).toThrow(/v2\.bin: llama2\.c version 2 is not supported/);
    expect(() => parseLlama2cHeader(new Uint8Array(64), "zeros.bin")).toThrow(
      /zeros\.bin \(llama2\.c header\): dim must be a positive integer/,
    );
  });

  it("a non-finite weight names its tensor", () => {
    const nan = fileBytes.slice();
    const wvLayer2 = 512 * 64 + 5 * 64 + 5 * 64 * 64 + 5 * 32 * 64 + 2 * 32 * 64 + 9;
    new DataView(nan.buffer).setFloat32(28 + 4 * wvLayer2, Number.NaN, true);
    expect(() => loadLlama2c(write("nan.bin", nan))).toThrow(
      /nan\.bin: tensor layers\.2\.wv holds a non-finite value \(NaN\) at element 9/,
    );
  });

  it("a missing file is named", () => {
    expect(() => loadLlama2c(join(tmp, "nope.bin"))).toThrow(/nope\.bin: cannot open/);
  });
});
