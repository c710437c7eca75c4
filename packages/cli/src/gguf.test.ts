import { join } from "node:path";
import { Llama2cTokenizer, loadLlama2c, saveGguf } from "@int21/loaders";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli, removeTempDirs, tempDir } from "./testing";

afterAll(removeTempDirs);

describe("GGUF models (stories260K written as F32 GGUF with its tokenizer)", () => {
  const dir = tempDir();
  const gguf = join(dir, "stories260K.gguf");
  beforeAll(async () => {
    const tokenizer = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512), 512);
    await saveGguf(gguf, loadLlama2c(sharedPath(SHARED.stories260K)), { tokenizer, name: "stories260K" });
  });

  it("inspect lists the GGUF tensors and summarises the vocabulary", async () => {
    const j = JSON.parse((await cli(["inspect", gguf, "--json"])).out);
    expect(j.kind).toBe("gguf");
    expect(j.tensors.find((t: { name: string }) => t.name === "token_embd.weight")).toMatchObject({
      dtype: "F32",
      shape: [512, 64],
    });
    expect(j.metadata["tokenizer.ggml.tokens"]).toBe("[512 values]");
  });

  it("generate uses the tokenizer stored in the file: llama2.c's greedy text", async () => {
    const r = await cli([
      "generate",
      gguf,
      "--prompt",
      "Once upon a time",
      "--temperature",
      "0",
      "--steps",
      "30",
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(r.code).toBe(0);
    expect(r.out.startsWith("Once upon a time, there was a little girl named Lily.")).toBe(true);
  });

  it("quantize reads a GGUF model and calibrates with its tokenizer", async () => {
    const out = join(dir, "from-gguf.safetensors");
    const r = await cli([
      "quantize",
      gguf,
      "--bits",
      "4",
      "--method",
      "gptq",
      "--calib",
      sharedPath(SHARED.tinystoriesValid),
      "--calib-windows",
      "4",
      "-o",
      out,
      "--json",
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).layers).toHaveLength(35);
  }, 30_000);
});
