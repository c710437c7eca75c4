import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { serializeGguf, serializeSafetensors } from "@int21/io";
import { type LlamaConfig, llamaTensorSpecs, syntheticWeights } from "@int21/model-llama";
import { encodeLlama2c, ggufModelTensors, serializeInt21Checkpoint } from "@int21/loaders";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import { cli, removeTempDirs, tempDir } from "../testing";

const MODEL = sharedPath(SHARED.stories260K);
afterAll(removeTempDirs);

describe("int21 inspect", () => {
  it("describes a llama2.c checkpoint: config and float tensors", async () => {
    const r = await cli(["inspect", MODEL]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("llama2.c checkpoint (float32)");
    expect(r.out).toContain('"dim":64');
    const j = JSON.parse((await cli(["inspect", MODEL, "--json"])).out);
    expect(j.kind).toBe("llama2c");
    expect(j.tensors.find((t: { name: string }) => t.name === "layers.0.wq")).toEqual({
      name: "layers.0.wq",
      dtype: "F32",
      shape: [64, 64],
    });
  });

  it("lists every tensor with --all", async () => {
    const some = await cli(["inspect", MODEL]);
    const all = await cli(["inspect", MODEL, "--all"]);
    expect(some.out).toContain("--all for every one");
    expect(all.out.split("\n").length).toBeGreaterThan(some.out.split("\n").length);
  });

  it("names a missing or unreadable file (exit 1)", async () => {
    const m = await cli(["inspect", "/nonexistent/x.safetensors"]);
    expect(m.code).toBe(1);
    expect(m.err).toContain("/nonexistent/x.safetensors: no such file or directory");
    const dir = tempDir();
    const junk = join(dir, "junk.bin");
    writeFileSync(junk, "this is not a model");
    const j = await cli(["inspect", junk]);
    expect(j.code).toBe(1);
    expect(j.err).toContain(junk);
    expect((await cli(["inspect"])).code).toBe(2);
  });

  it("--check: 'no problems' and exit 0 on a good model; plain inspect says values were not scanned", async () => {
    const r = await cli(["inspect", MODEL, "--check"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("check: no problems");
    expect((await cli(["inspect", MODEL])).out).toContain("run with --check to scan every weight");
    const j = JSON.parse((await cli(["inspect", MODEL, "--check", "--json"])).out);
    expect(j.problems).toEqual([]);
  });
});

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

describe("int21 inspect on broken files (exit 1, every problem named)", () => {
  const dir = tempDir();
  const write = (name: string, bytes: Uint8Array | string) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };

  it("llama2.c: dim = 0 and nLayers = -1 in the header", async () => {
    const good = encodeLlama2c(CONFIG, floats(), 1);
    const dim0 = good.slice();
    new DataView(dim0.buffer).setInt32(8, 0, true);
    const p = write("dim0.bin", dim0);
    for (const args of [
      ["inspect", p],
      ["inspect", p, "--check"],
    ]) {
      const r = await cli(args);
      expect(r.code).toBe(1);
      expect(r.err).toContain("1 problem:");
      expect(r.err).toMatch(/dim0\.bin.*dim must be a positive integer, got 0/);
    }
    const layers = good.slice();
    new DataView(layers.buffer).setInt32(16, -1, true);
    const r = await cli(["inspect", write("layers.bin", layers), "--check"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/layers\.bin.*nLayers must be a positive integer, got -1/);
  });

  it("a NaN weight: plain inspect passes the structure, --check lists each bad tensor", async () => {
    const f = floats();
    f.get("layers.1.wq")![3] = Number.NaN;
    f.get("tokenEmbedding")![0] = Number.NEGATIVE_INFINITY;
    const p = write("nan.bin", encodeLlama2c(CONFIG, f, 1));
    expect((await cli(["inspect", p])).code).toBe(0);
    const r = await cli(["inspect", p, "--check"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("2 problems:");
    expect(r.err).toContain(
      `${p}: tensor "layers.1.wq" holds 1 non-finite value (the first, NaN, at element 3)`,
    );
    expect(r.err).toContain(`${p}: tensor "tokenEmbedding" holds 1 non-finite value`);
    const j = JSON.parse((await cli(["inspect", p, "--check", "--json"])).out);
    expect(j.problems.map((x: { tensor: string }) => x.tensor).sort()).toEqual([
      "layers.1.wq",
      "tokenEmbedding",
    ]);
  });

  it("an int21 checkpoint with no config, or nLayers = -1 in its config", async () => {
    const good = serializeInt21Checkpoint(syntheticWeights(CONFIG, { seed: 2, format: "int4-g32-asym-f16" }));
    expect((await cli(["inspect", write("good.safetensors", good), "--check"])).code).toBe(0);
    const noConfig = write(
      "noconfig.safetensors",
      withMetadata(good, (m) => {
        delete m.config;
      }),
    );
    const r = await cli(["inspect", noConfig]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${noConfig}: int21 checkpoint metadata has no "config"`);
    const neg = write(
      "neg.safetensors",
      withMetadata(good, (m) => {
        m.config = JSON.stringify({ ...CONFIG, nLayers: -1 });
      }),
    );
    const r2 = await cli(["inspect", neg, "--check"]);
    expect(r2.code).toBe(1);
    expect(r2.err).toMatch(
      /neg\.safetensors \(config metadata\): nLayers must be a positive integer, got -1/,
    );
  });

  it("a Hugging Face directory without config.json", async () => {
    const hf = join(dir, "hf");
    mkdirSync(hf);
    writeFileSync(
      join(hf, "model.safetensors"),
      serializeSafetensors({ x: { dtype: "F32", shape: [1], data: new Float32Array(1) } }),
    );
    const r = await cli(["inspect", hf, "--check"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${hf}: a directory without config.json is not a Hugging Face model`);
  });

  it("GGUF with llama.attention.head_count = 0", async () => {
    const { metadata, tensors } = ggufModelTensors(syntheticWeights(CONFIG, { seed: 3 }), { type: "Q8_0" });
    const good = write("good.gguf", serializeGguf({ metadata, tensors }));
    expect((await cli(["inspect", good, "--check"])).code).toBe(0);
    const p = write(
      "heads0.gguf",
      serializeGguf({
        metadata: { ...metadata, "llama.attention.head_count": { type: "u32", value: 0 } },
        tensors,
      }),
    );
    for (const args of [
      ["inspect", p],
      ["inspect", p, "--check"],
    ]) {
      const r = await cli(args);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/heads0\.gguf: nHeads must be a positive integer, got 0/);
    }
  });

  it("a safetensors file that is not a checkpoint, and a PEFT adapter with a NaN", async () => {
    const st = write(
      "plain.safetensors",
      serializeSafetensors({ a: { dtype: "F32", shape: [2], data: Float32Array.from([1, Number.NaN]) } }),
    );
    expect((await cli(["inspect", st])).code).toBe(0);
    const r = await cli(["inspect", st, "--check"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${st}: tensor "a" holds 1 non-finite value`);
    const peft = join(dir, "adapter");
    mkdirSync(peft);
    writeFileSync(
      join(peft, "adapter_config.json"),
      JSON.stringify({ peft_type: "LORA", r: 1, lora_alpha: 1, target_modules: ["q_proj"] }),
    );
    const key = (w: string) => `base_model.model.model.layers.0.self_attn.q_proj.lora_${w}.weight`;
    writeFileSync(
      join(peft, "adapter_model.safetensors"),
      serializeSafetensors({
        [key("A")]: { dtype: "F32", shape: [1, 2], data: Float32Array.from([1, 2]) },
        [key("B")]: { dtype: "F32", shape: [2, 1], data: Float32Array.from([Number.NaN, 0]) },
      }),
    );
    const a = await cli(["inspect", peft]);
    expect(a.code).toBe(1);
    expect(a.err).toMatch(
      /adapter\/adapter_model\.safetensors: tensor ".*lora_B\.weight"\[0\] = NaN is not finite/,
    );
  });
});
