import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { noGrad } from "@int21/autograd";
import { LoRAModel } from "@int21/lora";
import { createRunState, forward, llamaModules, setLlamaModules } from "@int21/model-llama";
import {
  Llama2cTokenizer,
  llama2cTokenizerToGguf,
  loadInt21Checkpoint,
  loadLlama2c,
  saveInt21Checkpoint,
} from "@int21/loaders";
import { type GgufValue, writeGguf } from "@int21/io";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import { bufferIo } from "./cli-io";
import {
  attachCheckpointAdapters,
  checkpointAdaptersOf,
  findTokenizer,
  ggufTokenizer,
  loadTokenizer,
  resolveModelPath,
} from "./model-loading";
import { removeTempDirs, tempDir } from "./testing";

const MODEL = sharedPath(SHARED.stories260K);
afterAll(removeTempDirs);

describe("findTokenizer / loadTokenizer", () => {
  it("finds tok<vocab>.bin beside a model file, or names where it looked", () => {
    expect(findTokenizer(MODEL, 512)).toBe(sharedPath(SHARED.tok512));
    const dir = tempDir();
    const lone = join(dir, "model.bin");
    copyFileSync(MODEL, lone);
    expect(() => findTokenizer(lone, 512)).toThrow(
      `looked for tok512.bin, tokenizer.bin, tokenizer.json, tokenizer.model in ${dir}); pass --tokenizer <file>`,
    );
    copyFileSync(sharedPath(SHARED.tok512), join(dir, "tokenizer.bin"));
    expect(findTokenizer(lone, 512)).toBe(join(dir, "tokenizer.bin"));
  });

  it("a tokenizer.json may be smaller than the model (padded vocabulary), not larger; a SentencePiece tokenizer.model is read", () => {
    const qwen = sharedPath("fixtures/hf-families/qwen2/tokenizer.json");
    expect(loadTokenizer(qwen, 2048).vocabSize).toBe(2003);
    expect(() => loadTokenizer(qwen, 2000)).toThrow(
      `${qwen}: has 2003 tokens, more than the model's vocabulary of 2000`,
    );
    const sp = sharedPath("fixtures/hf-families/llama2/tokenizer.model");
    const fromModel = loadTokenizer(sp, 32064); // Phi-3's padded 32064 rows over Llama 2's 32000 tokens
    const fromJson = loadTokenizer(sharedPath("fixtures/hf-families/llama2/tokenizer.json"), 32000);
    expect(fromModel.encode("Once upon a time, 12 cafés", { bos: true })).toEqual(
      fromJson.encode("Once upon a time, 12 cafés", { special: true }),
    );
    const bad = join(tempDir(), "tokenizer.model");
    writeFileSync(bad, "not a protobuf at all");
    expect(() => loadTokenizer(bad, 32000)).toThrow(`${bad}: not a valid SentencePiece model`);
  });

  it("a GGUF's tokenizer adds BOS / EOS as tokenizer.ggml.add_bos_token / add_eos_token say", async () => {
    const tok512 = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
    const path = join(tempDir(), "tok.gguf");
    const write = (bos: boolean | undefined, eos: boolean) => {
      const metadata: Record<string, GgufValue> = {
        "general.architecture": { type: "string", value: "llama" },
        ...llama2cTokenizerToGguf(tok512),
        "tokenizer.ggml.add_eos_token": { type: "bool", value: eos },
      };
      if (bos === undefined) delete metadata["tokenizer.ggml.add_bos_token"];
      else metadata["tokenizer.ggml.add_bos_token"] = { type: "bool", value: bos };
      return writeGguf(path, { metadata, tensors: [] });
    };
    await write(false, true);
    const t = await ggufTokenizer(path, 512);
    expect(t.addBos).toBe(false);
    expect(t.addEos).toBe(true);
    expect(t.encode("Lily", { special: true })).toEqual([...tok512.encode("Lily"), 2]);
    await write(undefined, false);
    expect((await ggufTokenizer(path, 512)).addBos).toBe(true); // llama.cpp's default for a "llama" vocabulary
    await expect(ggufTokenizer(path, 500)).rejects.toThrow("its tokenizer has 512 tokens, more than");
  });

  it("a GGUF with a byte-level BPE (gpt2) vocabulary needs no --tokenizer", async () => {
    const file = sharedPath("fixtures/hf-families/qwen2/tokenizer.json");
    const json = JSON.parse(readFileSync(file, "utf8"));
    const tokens: string[] = [];
    for (const [t, id] of Object.entries(json.model.vocab as Record<string, number>)) tokens[id] = t;
    for (const a of json.added_tokens) tokens[a.id] = a.content;
    const types = Int32Array.from(tokens, (_, i) => (i >= 2000 ? 3 : 1));
    const path = join(tempDir(), "qwen.gguf");
    await writeGguf(path, {
      metadata: {
        "general.architecture": { type: "string", value: "qwen2" },
        "tokenizer.ggml.model": { type: "string", value: "gpt2" },
        "tokenizer.ggml.pre": { type: "string", value: "qwen2" },
        "tokenizer.ggml.tokens": { type: "array", itemType: "string", value: tokens },
        "tokenizer.ggml.token_type": { type: "array", itemType: "i32", value: types },
        "tokenizer.ggml.merges": {
          type: "array",
          itemType: "string",
          value: (json.model.merges as string[][]).map((m) => m.join(" ")),
        },
        "tokenizer.ggml.eos_token_id": { type: "u32", value: 2002 },
      },
      tensors: [],
    });
    const t = await ggufTokenizer(path, 2048);
    const ref = loadTokenizer(file, 2048);
    const text = "Once upon a time, 12 cats<|im_end|>\n";
    expect(t.encode(text)).toEqual(ref.encode(text));
    expect(t.addBos).toBe(false);
    expect(t.eosId).toBe(2002);
  });

  it("names a tokenizer whose vocabulary does not fit", () => {
    expect(() => loadTokenizer(sharedPath(SHARED.llama2Tokenizer), 512)).toThrow(
      sharedPath(SHARED.llama2Tokenizer),
    );
    const dir = tempDir();
    const bad = join(dir, "tokenizer.json");
    writeFileSync(bad, "{not json");
    expect(() => loadTokenizer(bad, 512)).toThrow(bad);
  });
});

describe("resolveModelPath", () => {
  it("keeps existing paths and names a missing one with the local-path hint", async () => {
    const io = bufferIo();
    expect(await resolveModelPath(MODEL, io)).toBe(MODEL);
    await expect(resolveModelPath("./no/such/model.bin", io)).rejects.toThrow(
      "model ./no/such/model.bin: no such file or directory; pass a local path instead",
    );
  });
});

describe("adapters inside an int21 checkpoint", () => {
  it("round-trip: the reloaded model gives the same logits as the adapted one", async () => {
    const w = loadLlama2c(MODEL, { quantize: { format: "int4-g64-asym-f16" } });
    const model = new LoRAModel(llamaModules(w));
    model.addAdapter({ targetModules: ["q_proj", "down_proj"], r: 2, alpha: 4, seed: 3 });
    // give B non-zero values so the adapter changes the output
    for (const [, a] of model.adapters())
      for (let i = 0; i < a.loraB.length; i++) a.loraB[i] = Math.sin(i) * 0.05;
    setLlamaModules(w, model.modules);
    const dir = tempDir();
    const p = join(dir, "with-adapter.safetensors");
    // the checkpoint stores the packed base; adapters go beside it
    const base = loadLlama2c(MODEL, { quantize: { format: "int4-g64-asym-f16" } });
    await saveInt21Checkpoint(p, base, { adapters: checkpointAdaptersOf(model) });
    const back = await loadInt21Checkpoint(p);
    expect(back.adapters).toBeDefined();
    const lora = attachCheckpointAdapters(back.weights, back.adapters!, p);
    expect(lora.adapterNames()).toEqual(["default"]);
    const tokens = [1, 400, 300, 200];
    const run = (x: typeof w) =>
      noGrad(() => forward(x, createRunState(x.config, { maxRows: 8 }), tokens, 0, "all"));
    const a = run(w);
    expect(run(back.weights)).toEqual(a);
    expect(run(base)).not.toEqual(a);
  });

  it("names a checkpoint whose adapters int21 cannot read", () => {
    const w = loadLlama2c(MODEL);
    expect(() => attachCheckpointAdapters(w, { tensors: {}, meta: { other: 1 } }, "x.safetensors")).toThrow(
      "x.safetensors: holds adapters int21 cannot attach",
    );
  });
});
