import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serializeGguf, serializeSafetensors } from "@int21/io";
import { afterAll, describe, expect, it } from "vitest";
import { serializeInt21Checkpoint } from "./checkpoint";
import { serializeGgufLora } from "./gguf-lora";
import { ggufModelTensors } from "./gguf-model";
import { hfTensorName, llamaToHfConfig } from "./load-hf";
import { encodeLlama2c } from "./load-llama2c";
import { validateModelFiles } from "./validate";
import { checkConfigObject, checkTensorCount } from "./validate-config";
import { type LlamaConfig, addLlamaLoRA, llamaTensorSpecs, syntheticWeights } from "@int21/model-llama";

const tmp = mkdtempSync(join(tmpdir(), "int21-validate-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const CONFIG: LlamaConfig = {
  dim: 32,
  hiddenDim: 64,
  nLayers: 2,
  nHeads: 4,
  nKvHeads: 2,
  vocabSize: 40,
  seqLen: 16,
  ropeTheta: 10000,
  normEps: 1e-5,
  sharedClassifier: false,
};

function floats(): Map<string, Float32Array> {
  return new Map(
    llamaTensorSpecs(CONFIG).map((s, i) => [
      s.name,
      Float32Array.from({ length: s.shape.reduce((a, b) => a * b, 1) }, (_, j) => Math.sin(i + j) * 0.1),
    ]),
  );
}

function write(name: string, bytes: Uint8Array | string): string {
  const p = join(tmp, name);
  writeFileSync(p, bytes);
  return p;
}

/** Rewrites the `__metadata__` of a safetensors file. */
function withMetadata(bytes: Uint8Array, edit: (meta: Record<string, string>) => void): Uint8Array {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  edit(header.__metadata__);
  const body = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + body.length + bytes.length - 8 - n);
  new DataView(out.buffer).setBigUint64(0, BigInt(body.length), true);
  out.set(body, 8);
  out.set(bytes.subarray(8 + n), 8 + body.length);
  return out;
}

describe("checkConfigObject", () => {
  it("names the file and the field", () => {
    expect(checkConfigObject({ ...CONFIG }, "f")).toEqual(CONFIG);
    expect(() => checkConfigObject(null, "ck.safetensors")).toThrow(
      /ck\.safetensors: the config must be a JSON object/,
    );
    expect(() => checkConfigObject({ ...CONFIG, dim: "32" }, "ck")).toThrow(
      /ck: config field dim must be a number/,
    );
    expect(() => checkConfigObject({ ...CONFIG, sharedClassifier: 1 }, "ck")).toThrow(/sharedClassifier/);
    expect(() => checkConfigObject({ ...CONFIG, dim: 0 }, "ck")).toThrow(
      /ck: dim must be a positive integer/,
    );
    expect(() => checkConfigObject({ ...CONFIG, nLayers: -1 }, "ck")).toThrow(
      /ck: nLayers must be a positive/,
    );
  });

  it("checkTensorCount refuses more layers than tensors", () => {
    checkTensorCount(CONFIG, 4, "ok");
    expect(() => checkTensorCount({ ...CONFIG, nLayers: 2 ** 40 }, 20, "big.gguf")).toThrow(
      /big\.gguf: the config's nLayers 1099511627776 needs at least 1099511627778 tensors, but the checkpoint holds 20/,
    );
  });
});

describe("validateModelFiles", () => {
  it("finds nothing wrong with good files of every kind", async () => {
    expect(await validateModelFiles(write("good.bin", encodeLlama2c(CONFIG, floats(), 1)))).toEqual([]);
    const w = syntheticWeights(CONFIG, { seed: 2, format: "int4-g32-asym-f16" });
    expect(await validateModelFiles(write("good.int21.safetensors", serializeInt21Checkpoint(w)))).toEqual(
      [],
    );
    const { metadata, tensors } = ggufModelTensors(syntheticWeights(CONFIG, { seed: 3 }), { type: "Q8_0" });
    expect(await validateModelFiles(write("good.gguf", serializeGguf({ metadata, tensors })))).toEqual([]);
  });

  it("llama2.c: dim = 0 and nLayers = -1 in the header, a NaN weight", async () => {
    const good = encodeLlama2c(CONFIG, floats(), 1);
    const dim0 = good.slice();
    new DataView(dim0.buffer).setInt32(8, 0, true);
    const p1 = write("dim0.bin", dim0);
    const r1 = await validateModelFiles(p1);
    expect(r1).toHaveLength(1);
    expect(r1[0].message).toMatch(/dim0\.bin.*dim must be a positive integer, got 0/);
    const layers = good.slice();
    new DataView(layers.buffer).setInt32(16, -1, true);
    const p2 = write("layers.bin", layers);
    expect((await validateModelFiles(p2))[0].message).toMatch(
      /layers\.bin.*nLayers must be a positive integer, got -1/,
    );
    const f = floats();
    f.get("layers.1.w2")![7] = Number.NaN;
    f.get("finalNorm")![0] = Number.POSITIVE_INFINITY;
    const p3 = write("nan.bin", encodeLlama2c(CONFIG, f, 1));
    const r3 = await validateModelFiles(p3);
    expect(r3.map((p) => p.tensor).sort()).toEqual(["finalNorm", "layers.1.w2"]);
    expect(r3.find((p) => p.tensor === "layers.1.w2")!.message).toBe(
      `${p3}: tensor "layers.1.w2" holds 1 non-finite value (the first, NaN, at element 7)`,
    );
    expect(await validateModelFiles(p3, { scanValues: false })).toEqual([]);
  });

  it("int21 checkpoints: a missing config, nLayers = -1, dim = 0, absurd nLayers, a NaN norm", async () => {
    const good = serializeInt21Checkpoint(syntheticWeights(CONFIG, { seed: 2, format: "int4-g32-asym-f16" }));
    const noConfig = write(
      "noconfig.safetensors",
      withMetadata(good, (m) => {
        delete m.config;
      }),
    );
    const r = await validateModelFiles(noConfig);
    expect(r).toEqual([
      { file: noConfig, message: `${noConfig}: int21 checkpoint metadata has no "config"` },
    ]);
    for (const [field, value, msg] of [
      ["nLayers", -1, /nLayers must be a positive integer, got -1/],
      ["dim", 0, /dim must be a positive integer, got 0/],
      ["nLayers", 2 ** 40, /nLayers 1099511627776 needs at least/],
    ] as const) {
      const p = write(
        `${field}.safetensors`,
        withMetadata(good, (m) => {
          m.config = JSON.stringify({ ...CONFIG, [field]: value });
        }),
      );
      const problems = await validateModelFiles(p);
      expect(problems).toHaveLength(1);
      expect(problems[0].message).toContain(p);
      expect(problems[0].message).toMatch(msg);
    }
    // A NaN in a float norm, found by the scan; the header is fine.
    const w = syntheticWeights(CONFIG, { seed: 2, format: "int4-g32-asym-f16" });
    w.layers[1].attnNorm[3] = Number.NaN;
    const p = write("nan.int21.safetensors", serializeInt21Checkpoint(w));
    const problems = await validateModelFiles(p);
    expect(problems.map((x) => x.tensor)).toEqual(["layers.1.attnNorm"]);
  });

  it("GGUF: head_count = 0, block_count absurd, a non-llama architecture", async () => {
    const { metadata, tensors } = ggufModelTensors(syntheticWeights(CONFIG, { seed: 3 }), { type: "F32" });
    const heads0 = write(
      "heads0.gguf",
      serializeGguf({
        metadata: { ...metadata, "llama.attention.head_count": { type: "u32", value: 0 } },
        tensors,
      }),
    );
    const r = await validateModelFiles(heads0);
    expect(r).toHaveLength(1);
    expect(r[0].message).toMatch(/heads0\.gguf: nHeads must be a positive integer, got 0/);
    const blocks = write(
      "blocks.gguf",
      serializeGguf({
        metadata: { ...metadata, "llama.block_count": { type: "u32", value: 2 ** 32 - 1 } },
        tensors,
      }),
    );
    expect((await validateModelFiles(blocks))[0].message).toMatch(
      /blocks\.gguf: the config's nLayers 4294967295/,
    );
    const nan = tensors.map((t) => {
      if (t.name !== "blk.0.ffn_up.weight") return t;
      const raw = t.raw!.slice();
      new DataView(raw.buffer).setFloat32(5 * 4, Number.NaN, true);
      return { ...t, raw };
    });
    const pn = write("nan.gguf", serializeGguf({ metadata, tensors: nan }));
    const rn = await validateModelFiles(pn);
    expect(rn.map((x) => x.tensor)).toEqual(["blk.0.ffn_up.weight"]);
    const gpt2 = write(
      "gpt2.gguf",
      serializeGguf({
        metadata: { ...metadata, "general.architecture": { type: "string", value: "gpt2" } },
        tensors,
      }),
    );
    expect((await validateModelFiles(gpt2))[0].message).toMatch(
      /gpt2\.gguf: general\.architecture is "gpt2"/,
    );
  });

  it("GGUF files that are not models: a LoRA adapter and a vocabulary-only file get the container checks", async () => {
    const w = syntheticWeights(CONFIG, { seed: 5 });
    const lora = addLlamaLoRA(w, { targetModules: ["q_proj"], r: 2, alpha: 4 });
    const adapter = write("adapter.gguf", serializeGgufLora(lora, CONFIG).bytes);
    expect(await validateModelFiles(adapter)).toEqual([]);
    const vocab = write(
      "vocab.gguf",
      serializeGguf({
        metadata: {
          "general.architecture": { type: "string", value: "llama" },
          "tokenizer.ggml.model": { type: "string", value: "llama" },
          "tokenizer.ggml.tokens": { type: "array", itemType: "string", value: ["<unk>", "<s>", "</s>"] },
        },
        tensors: [],
      }),
    );
    expect(await validateModelFiles(vocab)).toEqual([]);
  });

  it("Hugging Face: a directory without config.json, and config.json with num_hidden_layers -1", async () => {
    const dir = join(tmp, "hf");
    mkdirSync(dir);
    const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (const [name, data] of floats())
      tensors[hfTensorName(name)] = {
        dtype: "F32",
        shape: llamaTensorSpecs(CONFIG).find((s) => s.name === name)!.shape,
        data,
      };
    writeFileSync(join(dir, "model.safetensors"), serializeSafetensors(tensors));
    const missing = await validateModelFiles(dir);
    expect(missing).toHaveLength(1);
    expect(missing[0].message).toContain(dir);
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({ ...llamaToHfConfig(CONFIG), num_hidden_layers: -1 }),
    );
    const bad = await validateModelFiles(dir);
    expect(bad[0].message).toMatch(/config\.json.*nLayers must be a positive integer, got -1/);
    writeFileSync(join(dir, "config.json"), JSON.stringify(llamaToHfConfig(CONFIG)));
    expect(await validateModelFiles(dir)).toEqual([]);
  });

  it("a file that is not a model at all", async () => {
    const p = write("junk.bin", "hello, this is not a model");
    const r = await validateModelFiles(p);
    expect(r).toHaveLength(1);
    expect(r[0].message).toContain(p);
  });
});
