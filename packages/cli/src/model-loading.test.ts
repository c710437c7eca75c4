import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { noGrad } from "@int21/autograd";
import { LoRAModel } from "@int21/lora";
import {
  createRunState,
  forward,
  llamaModules,
  loadInt21Checkpoint,
  loadLlama2c,
  saveInt21Checkpoint,
  setLlamaModules,
} from "@int21/model-llama";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import { bufferIo } from "./cli-io";
import {
  attachCheckpointAdapters,
  checkpointAdaptersOf,
  findTokenizer,
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
      `looked for tok512.bin, tokenizer.bin, tokenizer.json in ${dir}); pass --tokenizer <file>`,
    );
    copyFileSync(sharedPath(SHARED.tok512), join(dir, "tokenizer.bin"));
    expect(findTokenizer(lone, 512)).toBe(join(dir, "tokenizer.bin"));
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
