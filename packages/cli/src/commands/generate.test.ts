import { copyFileSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import { setUpRelaxedSimd } from "../relaxed-simd";
import { cli, removeTempDirs, tempDir } from "../testing";

const MODEL = sharedPath(SHARED.stories260K);
afterAll(removeTempDirs);

/** llama2.c doc/stories260K.md: `./run stories260K.bin -z tok512.bin -t 0.0` (256 steps). */
const GREEDY =
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n" +
  "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"\n" +
  "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n" +
  "Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know what to do.\" Her mom said, \"Don't worry, Lily. We can help you.";

/** The same doc: `-t 1.0 -p 0.9 -s 133742`. */
const SAMPLED =
  "Once upon a time, there was a little boy named Timmy. Timmy loved to play with his toys and eat sandwiches. One day, Timmy's mom told him it was time to rest for a while. Timmy's friend Billy came over and took him a down.\n" +
  "Timmy's mom saw that Timmy was sad, but Timmy said, \"I didn't understand what is it! We need to find some leafs.\" Timmy thought about it and took a deep breath on a spoon. He hoped it was important to be kind and continued to find its image next time.\n" +
  "After they finished getting, Timmy's dad came up to his house and promised to help Timmy.";

describe("int21 generate (stories260K, tokenizer found beside the model)", () => {
  it("greedy output is llama2.c's published sample; statistics go to stderr", async () => {
    const r = await cli(["generate", MODEL, "--temperature", "0", "--steps", "256", "--threads", "1"]);
    expect(r.code).toBe(0);
    expect(r.out).toBe(`${GREEDY}\n`);
    expect(r.err).toMatch(/1 prompt tokens \(with BOS\), 256 generated, stop: steps/);
  }, 60_000);

  it("seeded top-p sampling is llama2.c's published sample", async () => {
    const r = await cli([
      "generate",
      MODEL,
      "--temperature",
      "1",
      "--top-p",
      "0.9",
      "--seed",
      "133742",
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(r.out).toBe(`${SAMPLED}\n`);
    expect(r.err).toBe("");
  }, 60_000);

  it("prints the prompt first, as llama2.c does, and --json gives the same text", async () => {
    const args = [
      "generate",
      MODEL,
      "--prompt",
      "Lily and Tom went",
      "--temperature",
      "0",
      "--steps",
      "30",
      "--threads",
      "1",
    ];
    const r = await cli(args);
    expect(r.out.startsWith("Lily and Tom went")).toBe(true);
    const j = JSON.parse((await cli([...args, "--json"])).out);
    expect(`${j.text}\n`).toBe(r.out);
    expect(j.promptTokens + j.generatedTokens).toBe(j.tokens.length);
  }, 60_000);

  it("bad arguments exit 2 naming the option; a missing model or tokenizer names the file (exit 1)", async () => {
    const t = await cli(["generate", MODEL, "--temperature", "hot"]);
    expect(t.code).toBe(2);
    expect(t.err).toContain("--temperature");
    const p = await cli(["generate", MODEL, "--top-p", "1.5"]);
    expect(p.code).toBe(2);
    expect(p.err).toContain("--top-p");
    const m = await cli(["generate", "/nonexistent/model.bin"]);
    expect(m.code).toBe(1);
    expect(m.err).toContain("/nonexistent/model.bin: no such file or directory");
    const k = await cli(["generate", MODEL, "--tokenizer", "/nonexistent/tok.bin"]);
    expect(k.code).toBe(1);
    expect(k.err).toContain("tokenizer /nonexistent/tok.bin: no such file");
    const u = await cli(["generate", MODEL, "--no-such-option"]);
    expect(u.code).toBe(2);
    expect(u.err).toContain("--no-such-option");
  }, 60_000);

  it("a prompt longer than --steps fails with a message, not a crash", async () => {
    const r = await cli([
      "generate",
      MODEL,
      "--prompt",
      "Once upon a time there was a dog",
      "--steps",
      "3",
      "--threads",
      "1",
    ]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/prompt is \d+ tokens/);
  }, 60_000);
});

describe("int21 generate: prompt ids, BOS, --json ids", () => {
  const base = ["generate", MODEL, "--temperature", "0", "--steps", "24", "--threads", "1", "--quiet"];

  it("--prompt-ids continues exactly like the same text; --json carries promptIds and generatedIds", async () => {
    const text = JSON.parse((await cli([...base, "--prompt", "Once upon", "--json"])).out);
    expect(text.promptIds).toEqual([1, 403, 407]); // llama2.c: BOS, "Once", " upon"
    expect(text.bos).toBe(true);
    expect(text.generatedIds.length).toBe(text.generatedTokens);
    expect([...text.promptIds, ...text.generatedIds]).toEqual(text.tokens);
    const ids = JSON.parse((await cli([...base, "--prompt-ids", "1,403,407", "--json"])).out);
    expect(ids.promptIds).toEqual([1, 403, 407]);
    expect(ids.generatedIds).toEqual(text.generatedIds);
    expect(ids.text).toBe(text.text);
    const streamed = await cli([...base, "--prompt-ids", "1, 403, 407"]);
    expect(streamed.out).toBe(`${text.text}\n`);
  }, 60_000);

  it("--no-bos leaves BOS out (llama2.c adds it by default)", async () => {
    const r = await cli([...base.slice(0, -1), "--prompt", "Lily", "--no-bos"]);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/prompt tokens \(no BOS\)/);
    const j = JSON.parse((await cli([...base, "--prompt", "Lily", "--no-bos", "--json"])).out);
    expect(j.bos).toBe(false);
    expect(j.promptIds[0]).not.toBe(1);
  }, 60_000);

  it("bad --prompt-ids exit 2 naming the option; an id past the vocabulary names it (exit 1)", async () => {
    const bad = await cli([...base, "--prompt-ids", "1,x"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("--prompt-ids");
    const both = await cli([...base, "--prompt-ids", "1", "--prompt", "hi"]);
    expect(both.code).toBe(2);
    expect(both.err).toMatch(/--prompt-ids.*cannot be used with|cannot be used with.*--prompt-ids/);
    const far = await cli([...base, "--prompt-ids", "1,512"]);
    expect(far.code).toBe(1);
    expect(far.err).toContain("prompt id 512 (position 1) is outside [0, 512)");
  }, 60_000);

  it("stops at generation_config.json's eos_token_id (a number or a list) beside the model", async () => {
    const dir = tempDir();
    copyFileSync(MODEL, join(dir, "model.bin"));
    copyFileSync(sharedPath(SHARED.tok512), join(dir, "tok512.bin"));
    const args = [
      "generate",
      join(dir, "model.bin"),
      "--temperature",
      "0",
      "--steps",
      "40",
      "--quiet",
      "--json",
    ];
    const full = JSON.parse((await cli(args)).out);
    expect(full.stop).toBe("steps");
    const stopAt = full.generatedIds[6];
    writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: [2, stopAt] }));
    const r = JSON.parse((await cli(args)).out);
    expect(r.stop).toBe("eos");
    expect(r.generatedIds).toEqual(full.generatedIds.slice(0, full.generatedIds.indexOf(stopAt)));
    writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: 999 }));
    const bad = await cli(args);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain(`${join(dir, "generation_config.json")}: eos_token_id 999 is not a token id`);
  }, 60_000);

  it("--chat needs a chat template", async () => {
    const r = await cli([...base, "--prompt", "hi", "--chat"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("the tokenizer has no chat template");
  }, 60_000);
});

const FIXTURES = "fixtures/hf-families";

describe("int21 generate on Hugging Face fixtures (padded vocabulary, chat templates, BOS per tokenizer)", () => {
  it("qwen2 (2048 rows, 2003 tokens): transformers' greedy continuation, no BOS added", async () => {
    const dir = sharedPath(`${FIXTURES}/qwen2`);
    const ref = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8"));
    const args = ["generate", dir, "--temperature", "0", "--threads", "1", "--quiet", "--json"];
    const steps = String(ref.greedy_prompt_ids.length + ref.greedy_ids.length - 1);
    const r = JSON.parse(
      (await cli([...args, "--steps", steps, "--prompt-ids", ref.greedy_prompt_ids.join(",")])).out,
    );
    expect(r.generatedIds).toEqual(ref.greedy_ids);
    const t = JSON.parse((await cli([...args, "--steps", "12", "--prompt", "Once upon a time"])).out);
    expect(t.bos).toBe(false); // Qwen's tokenizer adds no BOS
    expect(t.promptIds).toEqual([393, 416, 258, 374]); // the tokenizers library's ids
    expect(Math.max(...t.generatedIds)).toBeLessThan(2003);
  }, 120_000);

  it("--chat renders the chat template around the prompt (as transformers' apply_chat_template)", async () => {
    const dir = sharedPath(`${FIXTURES}/smollm2`);
    const r = JSON.parse(
      (
        await cli([
          "generate",
          dir,
          "--prompt",
          "Hi there",
          "--chat",
          "--temperature",
          "0",
          "--steps",
          "16",
          "--threads",
          "1",
          "--quiet",
          "--json",
        ])
      ).out,
    );
    expect(r.chatPrompt).toBe("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n");
    expect(r.promptIds[0]).toBe(1); // <|im_start|> is one special token, not text
    expect(r.promptIds.filter((id: number) => id === 1).length).toBe(2);
    expect(r.bos).toBe(false);
  }, 120_000);

  it("llama3 --chat: the template's BOS once (not doubled), --no-bos removes it", async () => {
    const dir = sharedPath(`${FIXTURES}/llama3`);
    const args = [
      "generate",
      dir,
      "--prompt",
      " Hi ",
      "--chat",
      "--steps",
      "24",
      "--temperature",
      "0",
      "--quiet",
      "--json",
    ];
    const r = JSON.parse((await cli(args)).out);
    // transformers' apply_chat_template on this template (bos_token, then the trimmed content)
    expect(r.chatPrompt).toBe(
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    );
    expect(r.promptIds.slice(0, 2)).toEqual([2000, 2006]);
    expect(r.promptIds.filter((id: number) => id === 2000).length).toBe(1);
    const n = JSON.parse((await cli([...args, "--no-bos"])).out);
    expect(n.promptIds).toEqual(r.promptIds.slice(1));
  }, 120_000);

  it("llama3 adds its BOS (TemplateProcessing), --no-bos drops it", async () => {
    const dir = sharedPath(`${FIXTURES}/llama3`);
    const args = [
      "generate",
      dir,
      "--prompt",
      "Hi",
      "--steps",
      "4",
      "--temperature",
      "0",
      "--quiet",
      "--json",
    ];
    expect(JSON.parse((await cli(args)).out).promptIds[0]).toBe(2000);
    expect(JSON.parse((await cli([...args, "--no-bos"])).out).promptIds[0]).not.toBe(2000);
  }, 120_000);

  it("a folder with only tokenizer.model is read through it; only pytorch_model.bin gets an error saying what to do", async () => {
    const src = sharedPath(`${FIXTURES}/llama2`);
    const sp = tempDir();
    copyFileSync(join(src, "config.json"), join(sp, "config.json"));
    symlinkSync(join(src, "model.safetensors"), join(sp, "model.safetensors"));
    copyFileSync(join(src, "tokenizer.model"), join(sp, "tokenizer.model"));
    const args = ["--prompt", "Once upon a time", "--steps", "8", "--temperature", "0", "--quiet", "--json"];
    const a = await cli(["generate", sp, ...args]);
    expect(a.code).toBe(0);
    const b = await cli(["generate", src, ...args]); // the same model through its tokenizer.json
    expect(JSON.parse(a.out).promptIds).toEqual([1, 9038, 2501, 263, 931]);
    expect(JSON.parse(a.out).tokens).toEqual(JSON.parse(b.out).tokens);
    writeFileSync(join(sp, "tokenizer.model"), "garbage");
    const c0 = await cli(["generate", sp, ...args]);
    expect(c0.code).toBe(1);
    expect(c0.err).toContain(`${join(sp, "tokenizer.model")}: not a valid SentencePiece model`);
    const pt = tempDir();
    copyFileSync(join(src, "config.json"), join(pt, "config.json"));
    writeFileSync(join(pt, "pytorch_model.bin"), "not a real pickle");
    const c = await cli(["generate", pt, "--steps", "4", "--quiet"]);
    expect(c.code).toBe(1);
    expect(c.err).toContain(`${pt}: holds PyTorch pickle weights (pytorch_model.bin) and no safetensors`);
    expect(c.err).toContain("safe_serialization=True");
  }, 120_000);
});

describe("int21 generate --decode-activations", () => {
  it("int8 decodes an INT4 checkpoint; it needs relaxed SIMD and the wasm kernels; other values exit 2", async () => {
    expect(setUpRelaxedSimd({})).toBe(true);
    const q = join(tempDir(), "int4.bin");
    const made = await cli([
      "quantize",
      MODEL,
      "--bits",
      "4",
      "--method",
      "rtn",
      "-o",
      q,
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(made.code).toBe(0);
    const args = [
      "generate",
      q,
      "--temperature",
      "0",
      "--steps",
      "24",
      "--threads",
      "1",
      "--quiet",
      "--json",
    ];
    const int16 = await cli(args);
    const int8 = await cli([...args, "--decode-activations", "int8"]);
    expect(int16.code).toBe(0);
    expect(int8.code).toBe(0);
    const ids = (r: { out: string }) => (JSON.parse(r.out) as { generatedIds: number[] }).generatedIds;
    expect(ids(int8)).toHaveLength(ids(int16).length);
    expect(ids(int8).length).toBeGreaterThan(0);
    // the option reaches the backend: without the relaxed-SIMD module it is refused by name
    const saved = process.env.INT21_RELAXED_SIMD;
    process.env.INT21_RELAXED_SIMD = "0";
    try {
      const plain = await cli([...args, "--decode-activations", "int8"]);
      expect(plain.code).toBe(1);
      expect(plain.err).toContain('decodeActivations "int8" needs the relaxed-SIMD module');
    } finally {
      if (saved === undefined) delete process.env.INT21_RELAXED_SIMD;
      else process.env.INT21_RELAXED_SIMD = saved;
    }
    const ref = await cli(["generate", q, "--threads", "0", "--quiet", "--decode-activations", "int8"]);
    expect(ref.code).toBe(2);
    expect(ref.err).toContain("--decode-activations int8 needs the WebAssembly kernels (got --threads 0)");
    const bad = await cli(["generate", q, "--quiet", "--decode-activations", "int4"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("--decode-activations");
  }, 120_000);
});
