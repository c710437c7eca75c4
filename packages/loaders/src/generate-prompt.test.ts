// generate's prompt options (ids, BOS following the tokenizer) and padded vocabularies.
import { SHARED, sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { HfTokenizer } from "./hf-tokenizer";
import type { Tokenizer } from "@int21/model-llama";
import { Llama2cTokenizer } from "./tokenizer";
import { generate } from "@int21/model-llama";
import { stories260K } from "./testing/stories260k";

const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));

/** tok512 as a tokenizer.json with no post-processor (nothing added by default, like Qwen's). */
function tok512NoBos(): HfTokenizer {
  const dec = new TextDecoder();
  const vocab: Record<string, number> = {};
  tok.pieces.forEach((p, i) => {
    vocab[i === 0 ? "<unk>" : i === 1 ? "<s>" : i === 2 ? "</s>" : dec.decode(p).replaceAll(" ", "▁")] = i;
  });
  const merges: [string, string, number][] = [];
  for (const [name, id] of Object.entries(vocab)) {
    if (id < 259) continue;
    const chars = [...name];
    for (let s = 1; s < chars.length; s++) {
      const a = chars.slice(0, s).join("");
      const b = chars.slice(s).join("");
      if (a in vocab && b in vocab) merges.push([a, b, -tok.scores[id]]);
    }
  }
  merges.sort((x, y) => x[2] - y[2]);
  const special = (id: number, content: string) => ({ id, content, special: true });
  return new HfTokenizer(
    {
      added_tokens: [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
      normalizer: {
        type: "Sequence",
        normalizers: [
          { type: "Prepend", prepend: "▁" },
          { type: "Replace", pattern: { String: " " }, content: "▁" },
        ],
      },
      post_processor: null,
      decoder: {
        type: "Sequence",
        decoders: [
          { type: "Replace", pattern: { String: "▁" }, content: " " },
          { type: "ByteFallback" },
          { type: "Fuse" },
        ],
      },
      model: {
        type: "BPE",
        unk_token: "<unk>",
        byte_fallback: true,
        fuse_unk: true,
        vocab,
        merges: merges.map(([a, b]) => [a, b]),
      },
    },
    { config: { bos_token: "<s>", eos_token: "</s>" } },
  );
}

/** `tok` with only its first `n` tokens: the model's vocabulary is then padded past the tokenizer. */
function truncated(n: number): Tokenizer {
  return {
    vocabSize: n,
    bosId: tok.bosId,
    eosId: tok.eosId,
    encode: (t, o) => tok.encode(t, o),
    decode: (p, t) => tok.decode(p, t),
    decodeAll: (t) => tok.decodeAll(t),
    streamDecoder: () => tok.streamDecoder(),
  };
}

describe("generate: prompt ids and BOS", () => {
  const w = stories260K();

  it("promptIds are used as given and continue like the same text", () => {
    const ids = tok.encode("Once upon a time", { bos: true });
    const a = generate(w, tok, { prompt: "Once upon a time", temperature: 0, steps: 30 });
    const b = generate(w, tok, { promptIds: ids, temperature: 0, steps: 30 });
    expect(b.tokens).toEqual(a.tokens);
    expect(b.text).toBe(a.text);
    expect(b.promptTokens).toBe(ids.length);
    // without BOS the model sees other tokens: the continuation starts from position 0 of the text
    const c = generate(w, tok, { promptIds: ids.slice(1), temperature: 0, steps: 30 });
    expect(c.tokens.slice(0, ids.length - 1)).toEqual(ids.slice(1));
    expect(c.text.trimStart().startsWith("Once upon a time")).toBe(true);
  });

  it("bos: false leaves BOS out; the default follows the tokenizer (llama2.c: BOS, no post-processor: none)", () => {
    const withBos = generate(w, tok, { prompt: "Lily", temperature: 0, steps: 8 });
    expect(withBos.tokens[0]).toBe(tok.bosId);
    const noBos = generate(w, tok, { prompt: "Lily", bos: false, temperature: 0, steps: 8 });
    expect(noBos.tokens.slice(0, noBos.promptTokens)).toEqual(tok.encode("Lily"));
    const hf = tok512NoBos();
    expect(hf.addBos).toBe(false);
    const auto = generate(w, hf, { prompt: "Lily", temperature: 0, steps: 8 });
    expect(auto.tokens[0]).not.toBe(hf.bosId);
    expect(auto.tokens.slice(0, auto.promptTokens)).toEqual(hf.encode("Lily"));
    const forced = generate(w, hf, { prompt: "Lily", bos: true, temperature: 0, steps: 8 });
    expect(forced.tokens[0]).toBe(hf.bosId);
  });

  it("rejects bad prompt ids and an empty prompt without BOS", () => {
    expect(() => generate(w, tok, { promptIds: [1, 512] })).toThrow(
      /prompt id 512 \(position 1\) is outside \[0, 512\)/,
    );
    expect(() => generate(w, tok, { promptIds: [-1] })).toThrow(/prompt id -1/);
    expect(() => generate(w, tok, { promptIds: [1.5] })).toThrow(/prompt id 1.5/);
    expect(() => generate(w, tok, { promptIds: [] })).toThrow(/the prompt has no tokens/);
    expect(() => generate(w, tok, { prompt: "", bos: false })).toThrow(/the prompt has no tokens/);
  });
});

describe("generate: stop ids", () => {
  it("a token in stopIds ends generation like EOS, at its first occurrence, and is not kept", () => {
    const w = stories260K();
    const full = generate(w, tok, { temperature: 0, steps: 40 });
    const generated = full.tokens.slice(full.promptTokens);
    const stopAt = generated[5];
    const first = generated.indexOf(stopAt);
    const r = generate(w, tok, { temperature: 0, steps: 40, stopIds: [stopAt] });
    expect(r.stop).toBe("eos");
    expect(r.generatedTokens).toBe(first);
    expect(r.tokens).toEqual(full.tokens.slice(0, full.promptTokens + first));
  });
});

describe("generate: padded vocabularies", () => {
  const w = stories260K();

  it("a model with more rows than tokenizer tokens generates only real tokens", () => {
    const full = generate(w, tok, { temperature: 0, steps: 80 });
    expect(Math.max(...full.tokens)).toBeGreaterThanOrEqual(300); // the unmasked model uses ids ≥ 300
    for (const opts of [
      { temperature: 0 },
      { temperature: 1, seed: 3 },
      { temperature: 1.5, topP: 0, seed: 9 },
    ]) {
      const r = generate(w, truncated(300), { ...opts, steps: 80 });
      expect(r.generatedTokens).toBeGreaterThan(0);
      expect(Math.max(...r.tokens)).toBeLessThan(300);
    }
    expect(() => generate(w, truncated(600), {})).toThrow(/tokenizer has 600 tokens, model vocabSize is 512/);
  });
});
