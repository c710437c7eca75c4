import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type SafetensorsWriteTensor, bf16ToF32, f32ToBf16, writeSafetensors } from "@int21/io";
import { SHARED, sharedPath } from "@int21/shared-data";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  hfConfigToLlama,
  hfTensorName,
  llamaToHfConfig,
  loadHf,
  loadHfBytes,
  permuteHfRows,
  unpermuteHfRows,
} from "./load-hf";
import { encodeLlama2c, loadLlama2c, loadLlama2cBytes } from "./load-llama2c";
import type { Linear } from "@int21/quant-kernels";
import {
  denseTokenEmbedding,
  type LlamaConfig,
  llamaTensorSpecs,
  numel,
  linearParts,
  type LlamaWeights,
} from "@int21/model-llama";

const root = mkdtempSync(join(tmpdir(), "int21-hf-"));

function floatOf(w: LlamaWeights, name: string): Float32Array {
  if (name === "tokenEmbedding") return denseTokenEmbedding(w.tokenEmbedding);
  if (name === "finalNorm") return w.finalNorm;
  if (name === "classifier") return (linearParts(w.classifier, name) as { weight: Float32Array }).weight;
  const [, l, f] = name.split(".");
  const v = w.layers[Number(l)][f as keyof LlamaWeights["layers"][number]];
  return v instanceof Float32Array ? v : (linearParts(v as Linear, name) as { weight: Float32Array }).weight;
}

/** Random tensors of `config`, rounded to bf16 so a bf16 file stores them exactly. */
function bf16Tensors(config: LlamaConfig, seed: number): Map<string, Float32Array> {
  let s = seed >>> 0;
  const rand = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  const m = new Map<string, Float32Array>();
  for (const spec of llamaTensorSpecs(config)) {
    // |x| ≥ 1e-3 keeps every value a normal f16 too, so the F16 files store them exactly as well.
    const a = new Float32Array(numel(spec.shape)).map(() => {
      const x = rand();
      return Math.abs(x) < 1e-3 ? 1e-3 : x;
    });
    m.set(spec.name, bf16ToF32(f32ToBf16(a, new Uint16Array(a.length)), new Float32Array(a.length)));
  }
  return m;
}

/**
 * Writes a Hugging Face directory as transformers would: q/k rows permuted for rotate-half, tensors
 * split over `shards` files with an index (or one `model.safetensors` when shards is 1).
 */
async function writeHfDir(
  dir: string,
  config: LlamaConfig,
  tensors: Map<string, Float32Array>,
  dtype: "F32" | "F16" | "BF16",
  shards: number,
): Promise<void> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify(llamaToHfConfig(config)));
  const hs = config.dim / config.nHeads;
  const names = [...tensors.keys()];
  const perShard = Math.ceil(names.length / shards);
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const file = shards === 1 ? "model.safetensors" : `model-0000${s + 1}-of-0000${shards}.safetensors`;
    const out: Record<string, SafetensorsWriteTensor> = {};
    for (const name of names.slice(s * perShard, (s + 1) * perShard)) {
      let data = tensors.get(name)!;
      const shape = llamaTensorSpecs(config).find((t) => t.name === name)!.shape;
      if (/\.w[qk]$/.test(name)) data = permuteHfRows(data, shape[0] / hs, shape[0], shape[1]);
      out[hfTensorName(name)] = { dtype, shape, data };
      weightMap[hfTensorName(name)] = file;
    }
    await writeSafetensors(join(dir, file), out, { format: "pt" });
  }
  if (shards > 1) {
    writeFileSync(
      join(dir, "model.safetensors.index.json"),
      JSON.stringify({ metadata: {}, weight_map: weightMap }),
    );
  }
}

const gqa: LlamaConfig = {
  dim: 32,
  hiddenDim: 40,
  nLayers: 3,
  nHeads: 4,
  nKvHeads: 2,
  vocabSize: 24,
  seqLen: 16,
  ropeTheta: 500000,
  normEps: 1e-6,
  sharedClassifier: false,
};

describe("permuteHfRows", () => {
  it("moves the interleaved pairs of each head into halves, and back", () => {
    // One head of 4 rows, 1 column: llama2.c rows (a0 b0 a1 b1) → HF (a0 a1 b0 b1).
    expect([...permuteHfRows(new Float32Array([0, 1, 2, 3]), 1, 4, 1)]).toEqual([0, 2, 1, 3]);
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 3 }),
        (h, half, cols) => {
          const rows = h * half * 2;
          const w = new Float32Array(rows * cols).map((_, i) => i);
          const p = permuteHfRows(w, h, rows, cols);
          expect(unpermuteHfRows(p, h, rows, cols)).toEqual(w);
          // row h·hs + j·half + i of HF is row h·hs + 2i + j of llama2.c
          const hs = 2 * half;
          for (let r = 0; r < rows; r++) {
            const head = Math.floor(r / hs);
            const j = Math.floor((r % hs) / half);
            const i = r % half;
            expect(p[r * cols]).toBe(w[(head * hs + 2 * i + j) * cols]);
          }
        },
      ),
      { seed: 42, numRuns: 50 },
    );
  });
});

describe("loadHf", () => {
  it("a sharded bf16 GQA checkpoint matches the llama2.c path on the same weights exactly", async () => {
    const t = bf16Tensors(gqa, 7);
    const dir = join(root, "gqa-bf16");
    await writeHfDir(dir, gqa, t, "BF16", 3);
    const hf = await loadHf(dir);
    const ref = loadLlama2cBytes(encodeLlama2c(gqa, t, 0));
    expect(hf.config).toEqual({ ...ref.config, ropeTheta: 500000, normEps: 1e-6 });
    for (const spec of llamaTensorSpecs(gqa))
      expect(floatOf(hf, spec.name), spec.name).toEqual(floatOf(ref, spec.name));
    expect(hf.layers[1].wk.outFeatures).toBe(16);
  });

  it("reads F16 and F32 files, tied embeddings, and the bytes variant", async () => {
    const tied = { ...gqa, sharedClassifier: true };
    const t = bf16Tensors(tied, 3); // bf16 values with |x| < 0.5 are exact in f16 too (8-bit mantissa)
    for (const dtype of ["F16", "F32"] as const) {
      const dir = join(root, `tied-${dtype}`);
      await writeHfDir(dir, tied, t, dtype, 1);
      const hf = await loadHf(dir);
      expect(hf.config.sharedClassifier).toBe(true);
      expect((linearParts(hf.classifier, "classifier") as { weight: Float32Array }).weight).toBe(
        hf.tokenEmbedding,
      );
      for (const spec of llamaTensorSpecs(tied))
        expect(floatOf(hf, spec.name), spec.name).toEqual(t.get(spec.name));
      const files = {
        "config.json": readFileSync(join(dir, "config.json")),
        "model.safetensors": readFileSync(join(dir, "model.safetensors")),
      };
      const fromBytes = await loadHfBytes(files);
      expect(fromBytes.layers[2].wq.outFeatures).toBe(32);
      expect(floatOf(fromBytes, "layers.2.wq")).toEqual(t.get("layers.2.wq"));
    }
  });

  it("the real stories260K, exported HF-style, loads back to the llama2.c weights", async () => {
    const ref = loadLlama2c(sharedPath(SHARED.stories260K));
    const t = new Map(llamaTensorSpecs(ref.config).map((s) => [s.name, floatOf(ref, s.name)]));
    const dir = join(root, "stories260K-hf");
    await writeHfDir(dir, ref.config, t, "F32", 2);
    const hf = await loadHf(dir, {});
    for (const [name, v] of t) expect(floatOf(hf, name), name).toEqual(v);
    const q = await loadHf(dir, { quantize: { format: "int4-g32-asym-f16" } });
    expect(linearParts(q.layers[0].wq, "wq").kind).toBe("quant");
  });
});

describe("loadHf rejects bad checkpoints naming the file and tensor", () => {
  const cfg = { ...gqa, nLayers: 1 };
  const t = bf16Tensors(cfg, 11);

  it("missing tensors, wrong shapes, unsupported dtypes, unexpected tensors", async () => {
    const missing = join(root, "missing");
    const t2 = new Map(t);
    t2.delete("layers.0.w3");
    await writeHfDir(missing, cfg, t2, "F32", 1);
    await expect(loadHf(missing)).rejects.toThrow(/missing tensor model\.layers\.0\.mlp\.up_proj\.weight/);

    const shape = join(root, "shape");
    await writeHfDir(shape, { ...cfg, hiddenDim: 48 }, bf16Tensors({ ...cfg, hiddenDim: 48 }, 1), "F32", 1);
    writeFileSync(join(shape, "config.json"), JSON.stringify(llamaToHfConfig(cfg)));
    await expect(loadHf(shape)).rejects.toThrow(
      /shape[/\\]model\.safetensors: tensor model\.layers\.0\.mlp\.gate_proj\.weight has shape \[48×32\], the config needs \[40×32\]/,
    );

    const dt = join(root, "dtype");
    mkdirSync(dt);
    writeFileSync(join(dt, "config.json"), JSON.stringify(llamaToHfConfig(cfg)));
    const out: Record<string, SafetensorsWriteTensor> = {};
    for (const spec of llamaTensorSpecs(cfg)) {
      out[hfTensorName(spec.name)] = {
        dtype: spec.name === "finalNorm" ? "I32" : "F32",
        shape: spec.shape,
        data: spec.name === "finalNorm" ? new Int32Array(32) : t.get(spec.name)!,
      };
    }
    await writeSafetensors(join(dt, "model.safetensors"), out);
    await expect(loadHf(dt)).rejects.toThrow(
      /dtype[/\\]model\.safetensors: tensor model\.norm\.weight has dtype I32; supported: F32, F16, BF16/,
    );

    out["model.norm.weight"] = { dtype: "F32", shape: [32], data: t.get("finalNorm")! };
    out["model.layers.0.self_attn.q_proj.bias"] = { dtype: "F32", shape: [32], data: new Float32Array(32) };
    await writeSafetensors(join(dt, "model.safetensors"), out);
    await expect(loadHf(dt)).rejects.toThrow(/unexpected tensor model\.layers\.0\.self_attn\.q_proj\.bias/);
  });

  it("a truncated shard, a broken index, a non-finite weight, a bad config", async () => {
    const cut = join(root, "cut");
    await writeHfDir(cut, cfg, t, "BF16", 2);
    const shard = join(cut, "model-00002-of-00002.safetensors");
    truncateSync(shard, readFileSync(shard).byteLength - 10);
    await expect(loadHf(cut)).rejects.toThrow(/model-00002-of-00002\.safetensors.*(truncated|past the end)/);

    const gone = join(root, "gone");
    await writeHfDir(gone, cfg, t, "BF16", 2);
    rmSync(join(gone, "model-00001-of-00002.safetensors"));
    await expect(loadHf(gone)).rejects.toThrow(/gone[/\\]model-00001-of-00002\.safetensors/);

    const idx = join(root, "idx");
    await writeHfDir(idx, cfg, t, "F32", 2);
    const index = JSON.parse(readFileSync(join(idx, "model.safetensors.index.json"), "utf8"));
    index.weight_map["model.norm.weight"] = "model-00001-of-00002.safetensors";
    writeFileSync(join(idx, "model.safetensors.index.json"), JSON.stringify(index));
    await expect(loadHf(idx)).rejects.toThrow(
      /model\.norm\.weight is listed in the index under model-00001-of-00002\.safetensors/,
    );

    delete index.weight_map["model.norm.weight"];
    writeFileSync(join(idx, "model.safetensors.index.json"), JSON.stringify(index));
    await expect(loadHf(idx)).rejects.toThrow(
      /tensor model\.norm\.weight is not listed in the index's weight_map/,
    );

    const nan = join(root, "nan");
    const t3 = new Map(t);
    const bad = t.get("layers.0.wo")!.slice();
    bad[5] = Number.POSITIVE_INFINITY;
    t3.set("layers.0.wo", bad);
    await writeHfDir(nan, cfg, t3, "F32", 1);
    await expect(loadHf(nan)).rejects.toThrow(
      /nan[/\\]model\.safetensors: tensor layers\.0\.wo holds a non-finite value \(Infinity\) at element 5/,
    );

    expect(() =>
      hfConfigToLlama({ ...llamaToHfConfig(cfg), rope_scaling: { type: "yarn", factor: 2 } }, "c.json"),
    ).toThrow(/c\.json: rope_scaling\.rope_type "yarn" is not supported/);
    expect(() => hfConfigToLlama({ ...llamaToHfConfig(cfg), model_type: "gpt2" }, "c.json")).toThrow(
      /model_type "gpt2" is not supported/,
    );
    expect(() => hfConfigToLlama({ ...llamaToHfConfig(cfg), num_key_value_heads: 3 }, "c.json")).toThrow(
      /c\.json: nHeads 4 is not a multiple of nKvHeads 3/,
    );
    await expect(loadHf(join(root, "nowhere"))).rejects.toThrow(/no config\.json/);
  });

  it("defaults follow transformers' LlamaConfig", () => {
    const c = hfConfigToLlama({
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      vocab_size: 10,
    });
    expect(c).toMatchObject({
      nKvHeads: 4,
      ropeTheta: 10000,
      normEps: 1e-6,
      seqLen: 2048,
      sharedClassifier: false,
    });
  });
});
