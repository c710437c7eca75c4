import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SHARED, sharedPath } from "@int21/shared-data";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { describe, expect, it } from "vitest";
import { HfTokenizer } from "./hf-tokenizer";
import { loadHf } from "./load-hf";
import { loadLlama2c } from "./load-llama2c";
import { Llama2cTokenizer } from "./tokenizer";
import {
  evaluateLlamaCppChunks,
  evaluateNll,
  evaluateStories,
  tokenNll,
  forward,
  createRunState,
} from "@int21/model-llama";
import { stories260K } from "./testing/stories260k";

const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
const valid = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8");

describe("evaluateStories", () => {
  it("stories260K on the first 40 TinyStories validation stories: 1.27 ± 0.02 nats over 12,802 tokens", async () => {
    // the real loader and the wasm backend: the production path
    const backend = await createWasmBackend({ threads: 1 });
    const model = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
    const progress: number[] = [];
    const r = evaluateStories(model, tok, valid, { maxStories: 40, onProgress: (d) => progress.push(d) });
    backend.dispose();
    expect(r.tokens).toBe(12802);
    expect(r.windows).toBe(40);
    expect(Math.abs(r.meanNll - 1.27)).toBeLessThan(0.02);
    expect(r.perplexity).toBeCloseTo(Math.exp(r.meanNll), 10);
    expect(progress.length).toBe(40);
    expect(progress[39]).toBe(12802);
    expect(r.tokensPerSec).toBeGreaterThan(0);
  }, 60_000);

  it("rejects text without stories", () => {
    expect(() => evaluateStories(stories260K(), tok, " <|endoftext|> \n")).toThrow(/no stories/);
  });
});

describe("evaluateNll", () => {
  const w = stories260K();
  const tokens = tok.encode(valid.slice(0, 3000), { bos: true }).slice(0, 130);

  /** Plain definition: each target j scored once with context tokens[ctxStart(j)..j). */
  function direct(ctxStart: (j: number) => number, targets: number[]): number {
    const st = createRunState(w.config, { maxRows: 64 });
    let s = 0;
    for (const j of targets) {
      const lg = forward(w, st, tokens.slice(ctxStart(j), j), 0, "last");
      s += tokenNll(lg, 0, 512, tokens[j]);
    }
    return s / targets.length;
  }

  it("non-overlapping windows score every token but the first of each window", () => {
    const r = evaluateNll(w, tokens, { ctx: 48 });
    // windows [0,48) [48,96) [96,130): targets exclude 0, 48, 96
    const targets = [...Array(130).keys()].filter((j) => j % 48 !== 0);
    expect(r.tokens).toBe(targets.length);
    expect(r.windows).toBe(3);
    expect(r.meanNll).toBeCloseTo(
      direct((j) => Math.floor(j / 48) * 48, targets),
      5,
    );
  });

  it("strided windows score each new token once with at least ctx − stride context", () => {
    const ctx = 40;
    const stride = 16;
    const r = evaluateNll(w, tokens, { ctx, stride });
    expect(r.tokens).toBe(129);
    // the window that first covers j starts at the largest multiple of stride with begin + ctx > j
    const start = (j: number) => (j < ctx ? 0 : (Math.floor((j - ctx) / stride) + 1) * stride);
    expect(r.meanNll).toBeCloseTo(
      direct(
        start,
        [...Array(129).keys()].map((j) => j + 1),
      ),
      5,
    );
  });

  it("ctx 2, stride 1 is the bigram loss (each token predicted from the previous one alone)", () => {
    const r = evaluateNll(w, tokens.slice(0, 30), { ctx: 2, stride: 1 });
    expect(r.tokens).toBe(29);
    expect(r.meanNll).toBeCloseTo(
      direct(
        (j) => j - 1,
        [...Array(29).keys()].map((j) => j + 1),
      ),
      5,
    );
  });

  it("encodes text with the tokenizer and rejects bad options", () => {
    const text = valid.slice(0, 800);
    const a = evaluateNll(w, text, { tokenizer: tok, ctx: 128 });
    const b = evaluateNll(w, tok.encode(text, { bos: true }), { ctx: 128 });
    expect(a.meanNll).toBe(b.meanNll);
    expect(() => evaluateNll(w, text)).toThrow(/needs opts.tokenizer/);
    expect(() => evaluateNll(w, tokens, { ctx: 1000 })).toThrow(
      /ctx must be an integer in \[2, seqLen = 512\]/,
    );
    expect(() => evaluateNll(w, tokens, { ctx: 64, stride: 65 })).toThrow(
      /stride must be an integer in \[1, ctx = 64\]/,
    );
    expect(() => evaluateNll(w, [1])).toThrow(/at least 2 tokens/);
    expect(() => evaluateNll(w, [1, 600])).toThrow(/token 600 at index 1/);
  });
});

describe("evaluateNll against a teacher (KL and the teacher's NLL on the same tokens)", async () => {
  const backend = await createWasmBackend({ threads: 1 });
  const float = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
  const tokens = tok.encode(valid.slice(0, 1500), { bos: true });
  const packed = (format: string) =>
    loadLlama2c(sharedPath(SHARED.stories260K), { backend, quantize: { format } });

  it("scores the same tokens with the same NLL, and zero KL against itself", () => {
    for (const [ctx, stride] of [
      [64, 64],
      [64, 24],
    ]) {
      const ref = evaluateNll(float, tokens, { ctx, stride });
      const r = evaluateNll(float, tokens, { ctx, stride, teacher: float });
      expect(r.tokens).toBe(ref.tokens);
      expect(r.windows).toBe(ref.windows);
      expect(r.meanNll).toBe(ref.meanNll);
      expect(r.teacherMeanNll).toBeCloseTo(r.meanNll, 10);
      expect(Math.abs(r.meanKl ?? Number.NaN)).toBeLessThan(1e-9);
      expect(ref.meanKl).toBeUndefined();
    }
  }, 30_000);

  it("one window: the KL of every scored position, from the two models' full logits", () => {
    const student = packed("int4-g64-asym-f16");
    const win = Array.from(tokens.slice(0, 48));
    const V = float.config.vocabSize;
    const sl = forward(student, createRunState(student.config, { maxRows: 48 }), win, 0, "all").slice();
    const tl = forward(float, createRunState(float.config, { maxRows: 48 }), win, 0, "all").slice();
    let kl = 0;
    let tnll = 0;
    for (let i = 0; i < 47; i++) {
      const ls = (k: Float32Array, v: number) => {
        let m = Number.NEGATIVE_INFINITY;
        for (let u = 0; u < V; u++) m = Math.max(m, k[i * V + u]);
        let z = 0;
        for (let u = 0; u < V; u++) z += Math.exp(k[i * V + u] - m);
        return k[i * V + v] - m - Math.log(z);
      };
      for (let v = 0; v < V; v++) kl += Math.exp(ls(tl, v)) * (ls(tl, v) - ls(sl, v));
      tnll -= ls(tl, win[i + 1]);
    }
    const r = evaluateNll(student, win, { ctx: 48, teacher: float });
    expect(r.tokens).toBe(47);
    expect(r.meanKl).toBeCloseTo(kl / 47, 6);
    expect(r.teacherMeanNll).toBeCloseTo(tnll / 47, 6);
  }, 30_000);

  it("KL grows as the student gets coarser (INT8 < INT4 < INT2)", () => {
    const kl = (format: string) =>
      evaluateNll(packed(format), tokens, { ctx: 128, stride: 128, teacher: float }).meanKl ?? Number.NaN;
    const k8 = kl("int8-g64-asym-f16");
    const k4 = kl("int4-g64-asym-f16");
    const k2 = kl("int2-g64-asym-f16");
    expect(k8).toBeGreaterThan(0);
    expect(k8).toBeLessThan(k4);
    expect(k4).toBeLessThan(k2);
  }, 30_000);

  it("rejects a teacher with another vocabulary", () => {
    const other = { ...float, config: { ...float.config, vocabSize: 1000 } };
    expect(() => evaluateNll(float, tokens, { ctx: 32, stride: 32, teacher: other })).toThrow(
      "the teacher's vocabulary has 1000 tokens",
    );
  });
});

describe("BOS follows the tokenizer's rule (as generate and the peers' perplexity tools)", () => {
  const text = valid.slice(0, 1200);
  for (const family of ["qwen2", "qwen3", "llama2"] as const) {
    it(`${family}: text is encoded with BOS exactly when the tokenizer adds one`, async () => {
      const dir = sharedPath(`fixtures/hf-families/${family}`);
      const w = await loadHf(dir);
      const ftok = HfTokenizer.fromFile(join(dir, "tokenizer.json"));
      // Qwen's tokenizers add no BOS (add_bos_token false, ByteLevel post-processor); Llama 2's does
      expect(ftok.addBos).toBe(family === "llama2");
      const plain = ftok.encode(text, { special: true });
      expect(plain[0] === ftok.bosId).toBe(family === "llama2");
      const a = evaluateNll(w, text, { tokenizer: ftok, ctx: 48 });
      const b = evaluateNll(w, plain, { ctx: 48 });
      expect(a.meanNll).toBe(b.meanNll);
      expect(a.tokens).toBe(b.tokens);
      // forcing the other choice scores a different stream
      const forced = evaluateNll(w, text, { tokenizer: ftok, ctx: 48, bos: !ftok.addBos });
      expect(forced.meanNll).not.toBe(a.meanNll);
      // stories: every token after the first is scored, BOS or not
      const stories = `${text.slice(0, 300)}<|endoftext|>${text.slice(300, 600)}`;
      const s = evaluateStories(w, ftok, stories, { ctx: 48 });
      const ids = stories
        .split("<|endoftext|>")
        .map((p) => ftok.encode(p.trim(), { bos: ftok.addBos }).slice(0, 48));
      expect(s.tokens).toBe(ids.reduce((n, t) => n + t.length - 1, 0));
      expect(ids.every((t) => (t[0] === ftok.bosId) === ftok.addBos)).toBe(true);
    }, 60_000);
  }
});

describe("evaluateLlamaCppChunks (llama-perplexity's protocol)", () => {
  it("scores the second half of each ctx chunk, BOS written over each chunk's first token", () => {
    const w = stories260K();
    const tokens = tok.encode(valid.slice(0, 3000), { bos: true }).slice(0, 140);
    const ctx = 64;
    const r = evaluateLlamaCppChunks(w, tokens, { ctx, bosId: 1 });
    // the plain definition: chunk i = tokens[64i, 64i + 64) with chunk[0] = BOS; targets j + 1 for j in [32, 63)
    let sum = 0;
    let n = 0;
    for (let i = 0; i < 2; i++) {
      const chunk = tokens.slice(i * ctx, (i + 1) * ctx);
      chunk[0] = 1;
      for (let j = ctx / 2; j < ctx - 1; j++) {
        const lg = forward(w, createRunState(w.config, { maxRows: 64 }), chunk.slice(0, j + 1), 0, "last");
        sum += tokenNll(lg, 0, 512, chunk[j + 1]);
        n++;
      }
    }
    expect(r.tokens).toBe(62);
    expect(n).toBe(62);
    expect(r.windows).toBe(2);
    expect(r.meanNll).toBeCloseTo(sum / n, 5);
    const noBos = evaluateLlamaCppChunks(w, tokens, { ctx });
    expect(noBos.meanNll).not.toBe(r.meanNll); // chunk 1 keeps its own first token
    expect(() => evaluateLlamaCppChunks(w, tokens.slice(0, 10), { ctx })).toThrow(/do not fill one chunk/);
  }, 60_000);
});
