import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHARED, sharedPath } from "@int21/shared-data";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { HfTokenizer } from "./hf-tokenizer";
import { Llama2cTokenizer } from "./tokenizer";

const tok512 = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));

/**
 * A Llama-2-style tokenizer.json (SentencePiece BPE with byte fallback, as Hugging Face's converter
 * writes it) built from tok512's vocabulary: spaces become "▁", every split of a merged piece into two
 * pieces is a merge, ranked by the merged piece's score.
 */
function tok512Json(): Record<string, unknown> {
  const dec = new TextDecoder();
  const names = tok512.pieces.map((p, i) =>
    i === 0 ? "<unk>" : i === 1 ? "<s>" : i === 2 ? "</s>" : dec.decode(p).replaceAll(" ", "▁"),
  );
  const vocab: Record<string, number> = {};
  names.forEach((n, i) => {
    vocab[n] = i;
  });
  const merges: [string, string, number, number][] = [];
  for (let id = 259; id < names.length; id++) {
    const chars = [...names[id]];
    for (let s = 1; s < chars.length; s++) {
      const a = chars.slice(0, s).join("");
      const b = chars.slice(s).join("");
      if (a in vocab && b in vocab) merges.push([a, b, -tok512.scores[id], vocab[a]]);
    }
  }
  merges.sort((x, y) => x[2] - y[2] || x[3] - y[3]);
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: "▁" },
        { type: "Replace", pattern: { String: " " }, content: "▁" },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "▁" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      vocab,
      merges: merges.map(([a, b]) => [a, b]),
    },
  };
}

const hf = new HfTokenizer(tok512Json(), { config: { bos_token: "<s>", eos_token: "</s>" } });
const valid = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8");

describe("HfTokenizer", () => {
  it("finds the vocabulary size and special ids", () => {
    expect(hf.vocabSize).toBe(512);
    expect(hf.bosId).toBe(1);
    expect(hf.eosId).toBe(2);
  });

  it("encodes like llama2.c's tokenizer on the same vocabulary (BOS/EOS added once)", () => {
    expect(hf.encode("Once upon a time", { bos: true })).toEqual([1, 403, 407, 261, 378]);
    expect(hf.encode("a", { bos: true, eos: true })).toEqual([1, 261, 2]);
    expect(hf.encode("héllo 🙂")).toEqual(tok512.encode("héllo 🙂")); // byte fallback
    const stories = valid.split("<|endoftext|>").slice(0, 5);
    for (const s of stories)
      expect(hf.encode(s.trim(), { bos: true })).toEqual(tok512.encode(s.trim(), { bos: true }));
  });

  it("decodes like llama2.c: leading space dropped after BOS, byte tokens assembled", () => {
    expect(hf.decode(1, 403)).toBe("Once");
    expect(hf.decode(403, 407)).toBe(" upon");
    const ids = hf.encode("Lily saw a big 🙂 dog.\nThe end.");
    expect(hf.decodeAll(ids)).toBe("Lily saw a big 🙂 dog.\nThe end.");
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 30 }), (s) => {
        fc.pre(s.length > 0 && !s.startsWith(" "));
        const t = hf.encode(s);
        expect(hf.decodeAll(t)).toBe(tok512.decodeAll(t));
      }),
      { seed: 42, numRuns: 100 },
    );
  });

  it("streams text in order, holding back partial characters, across window re-anchoring", () => {
    const text = valid.slice(0, 1200).replace("little", "little 🙂 é");
    const ids = hf.encode(text);
    expect(ids.length).toBeGreaterThan(200);
    const d = hf.streamDecoder();
    let out = "";
    let prev = 1;
    for (const t of ids) {
      out += d.push(prev, t);
      prev = t;
    }
    out += d.flush();
    expect(out).toBe(tok512.decodeAll(ids));
  });

  it("reads tokenizer.json and tokenizer_config.json from disk; clear errors", () => {
    const dir = mkdtempSync(join(tmpdir(), "hf-tok-"));
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tok512Json()));
    writeFileSync(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({ bos_token: "<s>", eos_token: "</s>" }),
    );
    const t = HfTokenizer.fromFile(join(dir, "tokenizer.json"));
    expect(t.encode("Lily", { bos: true, eos: true })).toEqual([1, 317, 2]);
    expect(() => HfTokenizer.fromFile(join(dir, "missing.json"))).toThrow(
      /missing.json: cannot read tokenizer.json/,
    );
    expect(() => new HfTokenizer({ version: "1.0" }, { source: "x.json" })).toThrow(
      /x.json: not a tokenizer.json/,
    );
    expect(() => new HfTokenizer(tok512Json(), { bosToken: "<bos>" })).toThrow(
      /"<bos>" is not in the vocabulary/,
    );
    expect(() => hf.decode(1, 999)).toThrow(/token 999 is outside \[0, 512\)/);
    writeFileSync(join(dir, "tokenizer_config.json"), "{ not json");
    expect(() => HfTokenizer.fromFile(join(dir, "tokenizer.json"))).toThrow(
      /tokenizer_config.json: cannot read tokenizer_config.json/,
    );
    writeFileSync(join(dir, "tokenizer_config.json"), "[1, 2]");
    expect(() => HfTokenizer.fromFile(join(dir, "tokenizer.json"))).toThrow(
      `${join(dir, "tokenizer_config.json")}: tokenizer_config.json must hold a JSON object`,
    );
  });

  it("special tokens: the post-processor, overridden by add_bos_token / add_eos_token", () => {
    // the template puts <s> first
    const plain = new HfTokenizer(tok512Json());
    expect(plain.addBos).toBe(true);
    expect(plain.addEos).toBe(false);
    expect(plain.encode("Once", { special: true })).toEqual([1, 403]);
    const noBos = new HfTokenizer(tok512Json(), { config: { add_bos_token: false, add_eos_token: true } });
    expect(noBos.addBos).toBe(false);
    expect(noBos.addEos).toBe(true);
    expect(noBos.encode("Once", { special: true })).toEqual([403, 2]);
    const json = tok512Json();
    json.post_processor = null;
    const none = new HfTokenizer(json, { config: { bos_token: "<s>" } });
    expect(none.addBos).toBe(false);
    expect(none.encode("Once", { special: true })).toEqual([403]);
    expect(none.encode("Once", { bos: true })).toEqual([1, 403]);
    expect(() => new HfTokenizer(json, { config: { add_bos_token: "yes" } })).toThrow(
      /add_bos_token must be a boolean/,
    );
    expect(() => new HfTokenizer(json, { config: { bos_token: "<bos>" } })).toThrow(
      /tokenizer_config's bos_token "<bos>" is not in the vocabulary/,
    );
    expect(hf.decodeAll([])).toBe("");
  });

  it("reads the chat template from chat_template.jinja or tokenizer_config's chat_template", () => {
    const dir = mkdtempSync(join(tmpdir(), "hf-chat-"));
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tok512Json()));
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: "from config" }));
    expect(HfTokenizer.fromFile(join(dir, "tokenizer.json")).chatTemplate).toBe("from config");
    writeFileSync(join(dir, "chat_template.jinja"), "from file");
    expect(HfTokenizer.fromFile(join(dir, "tokenizer.json")).chatTemplate).toBe("from file");
    const named = new HfTokenizer(tok512Json(), {
      config: {
        chat_template: [
          { name: "tool_use", template: "t" },
          { name: "default", template: "d" },
        ],
      },
    });
    expect(named.chatTemplate).toBe("d");
    expect(hf.chatTemplate).toBeUndefined();
  });
});

/** GPT-2's byte ↔ printable-character table (printable Latin-1 bytes map to themselves). */
function byteChars(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const out: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++)
    out[b] = keep.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + extra++);
  return out;
}

describe("HfTokenizer on a byte-level BPE (GPT-2 style)", () => {
  const chars = byteChars();
  const vocab: Record<string, number> = {};
  chars.forEach((c, i) => {
    vocab[c] = i;
  });
  const merges = [
    ["Ġ", "t"],
    ["h", "e"],
    ["Ġt", "he"],
    ["l", "l"],
    ["ll", "o"],
  ];
  for (const [a, b] of merges) vocab[a + b] = Object.keys(vocab).length;
  vocab["<|endoftext|>"] = Object.keys(vocab).length;
  const json = {
    version: "1.0",
    added_tokens: [
      {
        id: vocab["<|endoftext|>"],
        content: "<|endoftext|>",
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
    ],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
  const t = new HfTokenizer(json);

  it("merges, special ids, exact round trips and streaming through partial UTF-8 bytes", () => {
    expect(t.bosId).toBe(vocab["<|endoftext|>"]);
    expect(t.eosId).toBe(vocab["<|endoftext|>"]);
    expect(t.vocabSize).toBe(262);
    const ids = t.encode("hello the 🙂!", { eos: true });
    // "he" + "llo", then "Ġthe" (Ġt + he), then the emoji's four bytes
    expect(ids.slice(0, 3)).toEqual([vocab.he, vocab.llo, vocab.Ġthe]);
    expect(ids.at(-1)).toBe(t.eosId);
    expect(t.decodeAll(ids)).toBe("hello the 🙂!");
    const d = t.streamDecoder();
    const parts: string[] = [];
    let prev = t.bosId;
    for (const id of ids) {
      parts.push(d.push(prev, id));
      prev = id;
    }
    parts.push(d.flush());
    expect(parts.join("")).toBe("hello the 🙂!");
    expect(parts).toContain("🙂"); // emitted whole once its 4th byte arrived
    expect(parts.some((p) => p.includes("\uFFFD"))).toBe(false);
  });
});
