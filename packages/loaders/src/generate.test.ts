import { SHARED, sharedPath } from "@int21/shared-data";
import { createReferenceBackend, decodeKernels } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { LoRALinear } from "@int21/lora";
import { afterAll, describe, expect, it } from "vitest";
import { loadLlama2c } from "./load-llama2c";
import { Llama2cTokenizer } from "./tokenizer";
import { generate, createRunState } from "@int21/model-llama";
import { stories260K } from "./testing/stories260k";

const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));

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

describe("generate on stories260K", () => {
  it("greedy from BOS reproduces llama2.c's published sample token for token", () => {
    const pieces: string[] = [];
    const r = generate(stories260K(), tok, { temperature: 0, steps: 256, onToken: (p) => pieces.push(p) });
    expect(r.text).toBe(GREEDY);
    expect(r.generatedTokens).toBe(256);
    expect(pieces.join("")).toBe(GREEDY);
  });

  it("seeded top-p sampling reproduces llama2.c's published sample", () => {
    const r = generate(stories260K(), tok, { temperature: 1, topP: 0.9, seed: 133742, steps: 256 });
    expect(r.text).toBe(SAMPLED);
  });
});

describe("generate: prompts, stops and errors", () => {
  it("continues a prompt through the prefill path exactly like token-by-token feeding", () => {
    const w = stories260K();
    const a = generate(w, tok, { prompt: "Once upon a time, Tim", temperature: 0, steps: 60, maxRows: 64 });
    const b = generate(w, tok, { prompt: "Once upon a time, Tim", temperature: 0, steps: 60, maxRows: 1 });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.text.startsWith("Once upon a time, Tim")).toBe(true);
    expect(a.promptTokens).toBe(tok.encode("Once upon a time, Tim", { bos: true }).length);
    expect(a.generatedTokens).toBe(60 - a.promptTokens + 1);
    expect(a.text).toBe(`Once upon a time, Tim${a.generatedText}`);
    expect(a.prefillTokensPerSec).toBeGreaterThan(0);
    expect(a.decodeTokensPerSec).toBeGreaterThan(0);
  });

  it("the same seed gives the same tokens, another seed other tokens; topK=1 is greedy", () => {
    const w = stories260K();
    const s1 = generate(w, tok, { temperature: 1, topP: 0, seed: 7, steps: 40 });
    const s2 = generate(w, tok, { temperature: 1, topP: 0, seed: 7, steps: 40 });
    const s3 = generate(w, tok, { temperature: 1, topP: 0, seed: 8, steps: 40 });
    expect(s1.tokens).toEqual(s2.tokens);
    expect(s1.tokens).not.toEqual(s3.tokens);
    const g = generate(w, tok, { temperature: 0, steps: 40 });
    const k1 = generate(w, tok, { temperature: 1.5, topK: 1, seed: 3, steps: 40 });
    expect(k1.tokens).toEqual(g.tokens);
  });

  it("rejects prompts longer than the steps and mismatched tokenizers", () => {
    const w = stories260K();
    expect(() => generate(w, tok, { prompt: "Once upon a time there was", steps: 3 })).toThrow(
      /prompt is \d+ tokens \(with BOS\) but only 3 positions/,
    );
    const big = Llama2cTokenizer.fromFile(sharedPath(SHARED.llama2Tokenizer));
    expect(() => generate(w, big, {})).toThrow(/tokenizer has 32000 tokens, model vocabSize is 512/);
  });
});

describe("generate through the loader and the quant-kernels backends", () => {
  const disposers: (() => void)[] = [];
  afterAll(() => {
    for (const d of disposers) d();
  });

  it("loadLlama2c + FloatLinear on the reference and wasm (1 and 2 threads) backends give the golden sample", async () => {
    const backends = [
      createReferenceBackend(),
      await createWasmBackend({ threads: 1 }),
      await createWasmBackend({ threads: 2 }),
    ];
    for (const backend of backends) {
      disposers.push(() => backend.dispose());
      const w = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
      expect(generate(w, tok, { temperature: 0, steps: 256 }).text).toBe(GREEDY);
    }
  }, 60_000);

  it("opts.backend runs the attention over the KV cache (work no Linear owns) on that backend", async () => {
    const wasm = await createWasmBackend({ threads: 1 });
    disposers.push(() => wasm.dispose());
    const w = loadLlama2c(sharedPath(SHARED.stories260K), { backend: wasm });
    w.layers[0].wq = new LoRALinear(w.layers[0].wq); // no adapter yet: the same outputs, but no backend of its own
    const k = decodeKernels(wasm);
    expect(k).toBeDefined();
    const guessed = createRunState(w.config, { ctx: 64 });
    const g0 = generate(w, tok, { temperature: 0, steps: 64, state: guessed });
    expect(g0.text).toBe(GREEDY.slice(0, g0.text.length));
    expect(k?.owns(guessed.keyCache)).toBe(false); // the first projection has no backend: JS attention
    const given = createRunState(w.config, { ctx: 64 });
    const r = generate(w, tok, { temperature: 0, steps: 64, state: given, backend: wasm });
    expect(k?.owns(given.keyCache)).toBe(true);
    expect(k?.owns(given.valueCache)).toBe(true);
    expect(r.text).toBe(GREEDY.slice(0, r.text.length));
    expect(r.text.length).toBeGreaterThan(100);
    // the reference backend, given, keeps the JS attention even under wasm projections
    const plain = loadLlama2c(sharedPath(SHARED.stories260K), { backend: wasm });
    const refState = createRunState(plain.config, { ctx: 64 });
    const r2 = generate(plain, tok, {
      temperature: 0,
      steps: 64,
      state: refState,
      backend: createReferenceBackend(),
    });
    expect(k?.owns(refState.keyCache)).toBe(false);
    expect(r2.text).toBe(r.text);
  }, 60_000);

  it("an INT8-quantized stories260K (RTN on load) still starts the golden sample", async () => {
    const backend = await createWasmBackend({ threads: 1 });
    disposers.push(() => backend.dispose());
    const w = loadLlama2c(sharedPath(SHARED.stories260K), {
      backend,
      quantize: { format: "int8-g32-asym-f16" },
    });
    expect(w.layers[0].wq.bytes()).toBeLessThan(64 * 64 * 4 * 0.4);
    const r = generate(w, tok, { temperature: 0, steps: 40 });
    expect(r.text).toBe(GREEDY.slice(0, r.text.length));
    expect(r.text.length).toBeGreaterThan(100);
  }, 60_000);
});
