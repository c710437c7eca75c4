// Every hf-families fixture (miniature checkpoints saved by transformers, with its own logits and greedy
// ids: ../shared/fixtures/hf-families/README.md) through the whole command line: generate (transformers'
// greedy ids, exactly), eval, quantize (GPTQ), lrec, finetune, and export to Hugging Face and GGUF, whose
// outputs are read back and generate the same greedy ids again.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readGgufLora } from "@int21/loaders";
import { sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import { cli, removeTempDirs, tempDir } from "./testing";

afterAll(removeTempDirs);

const FAMILIES = ["llama2", "llama3", "smollm2", "qwen2", "qwen3", "mistral", "phi3", "gemma2"] as const;

/**
 * Families int21's GGUF writer can express (llama.cpp's "llama", "qwen2", "qwen3", "phi3" architectures);
 * the others are refused with an error naming the feature: Mistral's window (llama.cpp converts Mistral to
 * "llama", which has none) and the Gemma 2 fixture's query_pre_attn_scalar (256 ≠ its head size 32; GGUF has
 * no such key). The reader takes all of them (model-llama's gguf tests).
 */
const GGUF_WRITABLE: Partial<Record<(typeof FAMILIES)[number], true>> = {
  llama2: true,
  llama3: true,
  smollm2: true,
  qwen2: true,
  qwen3: true,
  phi3: true,
};
const GGUF_REFUSAL: Record<string, RegExp> = {
  mistral: /sliding window/,
  gemma2: /queryPreAttnScalar 256/,
};

interface Reference {
  greedy_prompt_ids: number[];
  greedy_ids: number[];
}

/** A small text corpus for eval / calibration / training: TinyStories-style sentences. */
const TEXT = Array.from(
  { length: 40 },
  (_, i) =>
    `Once upon a time, a little ${["girl", "boy", "dog", "cat"][i % 4]} named ${["Lily", "Tom", "Max", "Sue"][(i >> 2) % 4]} went to the park. ` +
    `It was a sunny day and the sky was blue. They played with a red ball and laughed.`,
).join("\n");

/** `int21 generate --prompt-ids … --json`: the generated ids (greedy). */
async function greedyIds(model: string, ref: Reference, extra: string[] = []): Promise<number[]> {
  const r = await cli([
    "generate",
    model,
    "--prompt-ids",
    ref.greedy_prompt_ids.join(","),
    "--temperature",
    "0",
    "--steps",
    String(ref.greedy_prompt_ids.length + ref.greedy_ids.length - 1), // positions, prompt included (llama2.c -n)
    "--json",
    "--quiet",
    "--threads",
    "1",
    ...extra,
  ]);
  expect(r.err).toBe("");
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out).generatedIds;
}

describe.each(FAMILIES)("%s through the CLI", (family) => {
  const dir = sharedPath(`fixtures/hf-families/${family}`);
  const ref = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8")) as Reference;
  const work = tempDir(`int21-family-${family}-`);
  const data = join(work, "stories.txt");
  writeFileSync(data, TEXT);

  it("generate: transformers' greedy ids, exactly", async () => {
    expect(await greedyIds(dir, ref)).toEqual(ref.greedy_ids);
  }, 120_000);

  it("eval: a finite perplexity", async () => {
    const r = await cli(["eval", dir, "--data", data, "--ctx", "64", "--json", "--quiet", "--threads", "1"]);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.tokens).toBeGreaterThan(100);
    expect(Number.isFinite(j.perplexity)).toBe(true);
  }, 120_000);

  it("quantize (GPTQ INT4) → lrec → finetune on the result", async () => {
    const q4 = join(work, "q4.safetensors");
    const q = await cli([
      "quantize",
      dir,
      "--bits",
      "4",
      "--method",
      "gptq",
      "--calib",
      data,
      "--calib-windows",
      "4",
      "-o",
      q4,
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(q.code, q.err).toBe(0);
    const lrecOut = join(work, "q4-lrec.safetensors");
    const l = await cli([
      "lrec",
      q4,
      "--teacher",
      dir,
      "--data",
      data,
      "--steps",
      "3",
      "--rank",
      "2",
      "--seq",
      "32",
      "--batch",
      "1",
      "--eval-tokens",
      "100",
      "-o",
      lrecOut,
      "--json",
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(l.code, l.err).toBe(0);
    expect(existsSync(lrecOut)).toBe(true);
    const adapter = join(work, "emef");
    const f = await cli([
      "finetune",
      lrecOut,
      "--data",
      data,
      "--steps",
      "3",
      "--rank",
      "2",
      "--seq",
      "32",
      "--batch",
      "1",
      "-o",
      adapter,
      "--json",
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(f.code, f.err).toBe(0);
    expect(existsSync(join(adapter, "adapter_config.json"))).toBe(true);
  }, 300_000);

  it.skipIf(!existsSync(join(dir, "chat_template.jinja")))(
    "finetune on chat records: rendered with the family's chat template, assistant turns trained",
    async () => {
      const chat = join(work, "chat.jsonl");
      writeFileSync(
        chat,
        Array.from({ length: 6 }, (_, i) =>
          JSON.stringify({
            messages: [
              { role: "user", content: `Tell me about ${["Lily", "Tom", "Max"][i % 3]}.` },
              { role: "assistant", content: `${["Lily", "Tom", "Max"][i % 3]} went to the park and played.` },
            ],
          }),
        ).join("\n"),
      );
      const out = join(work, "chat-adapter");
      const f = await cli([
        "finetune",
        dir,
        "--data",
        chat,
        "--steps",
        "2",
        "--rank",
        "2",
        "--seq",
        "64",
        "--batch",
        "2",
        "--held-out",
        "0",
        "-o",
        out,
        "--json",
        "--quiet",
        "--threads",
        "1",
      ]);
      expect(f.code, f.err).toBe(0);
      expect(f.err).toMatch(/kept 6 of 6 chat records/);
      const j = JSON.parse(f.out);
      expect(j.data).toMatchObject({ kind: "chat", records: 6, kept: 6, dropped: 0 });
      expect(existsSync(join(out, "adapter_model.safetensors"))).toBe(true);
    },
    300_000,
  );

  it("export hf (and gguf where the writer can express the family): read back, transformers' greedy ids", async () => {
    const hf = join(work, "hf");
    const h = await cli(["export", "hf", dir, "-o", hf, "--quiet"]);
    expect(h.code, h.err).toBe(0);
    expect(existsSync(join(hf, "tokenizer.json"))).toBe(true);
    expect(await greedyIds(hf, ref)).toEqual(ref.greedy_ids);
    const gguf = join(work, "gguf", "model.gguf"); // a folder of its own: no tokenizer file beside it
    const g = await cli([
      "export",
      "gguf",
      dir,
      "-o",
      gguf,
      "--type",
      "F32",
      "--embedding-type",
      "F32",
      "--quiet",
    ]);
    if (GGUF_WRITABLE[family]) {
      expect(g.code, g.err).toBe(0);
      expect(g.err).not.toMatch(/holds no tokenizer/);
      // the GGUF's own tokenizer (tokenizer.ggml.*, written from tokenizer.model or tokenizer.json)
      expect(await greedyIds(gguf, ref)).toEqual(ref.greedy_ids);
      const text = "Once upon a time, Lily's dog ran 123 miles!\nThe end.";
      const ids = async (m: string) =>
        JSON.parse(
          (
            await cli([
              "generate",
              m,
              "--prompt",
              text,
              "--steps",
              "40",
              "--json",
              "--quiet",
              "--threads",
              "1",
            ])
          ).out,
        ).promptIds;
      expect(await ids(gguf)).toEqual(await ids(dir));
    } else {
      expect(g.code).toBe(1);
      expect(g.err).toMatch(GGUF_REFUSAL[family]);
      expect(g.err).toMatch(/architecture cannot carry/);
      expect(existsSync(gguf)).toBe(false);
    }
  }, 120_000);

  it.skipIf(!GGUF_WRITABLE[family])(
    "export gguf --adapter: a LoRA GGUF in llama.cpp's names for the family's architecture",
    async () => {
      const adapter = join(work, "peft-lora");
      const e = await cli([
        "finetune",
        dir,
        "--data",
        data,
        "--steps",
        "1",
        "--rank",
        "2",
        "--seq",
        "32",
        "--batch",
        "1",
        "--held-out",
        "0",
        "-o",
        adapter,
        "--quiet",
        "--threads",
        "1",
      ]);
      expect(e.code, e.err).toBe(0);
      const out = join(work, "gguf-lora", "model.gguf");
      const g = await cli([
        "export",
        "gguf",
        dir,
        "--adapter",
        adapter,
        "-o",
        out,
        "--type",
        "F32",
        "--json",
        "--quiet",
      ]);
      expect(g.code, g.err).toBe(0);
      const lora = (JSON.parse(g.out).files as { path: string }[]).find((f) => f.path.endsWith(".lora.gguf"));
      expect(lora).toBeDefined();
      const read = await readGgufLora(lora!.path);
      expect(read.architecture).toBe(
        family === "qwen2" || family === "qwen3" || family === "phi3" ? family : "llama",
      );
      expect(read.modules.length).toBeGreaterThan(0);
    },
    120_000,
  );
});
