import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import { cli, removeTempDirs } from "../testing";

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
