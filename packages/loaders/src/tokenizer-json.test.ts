import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { HfTokenizer } from "./hf-tokenizer";
import { checkTokenizerJson } from "./tokenizer-json";

/** A small byte-level BPE (GPT-2 layout): 256 byte characters, five merges, one added special token. */
function byteLevelJson(): Record<string, unknown> {
  const chars: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    chars.push(String.fromCharCode(printable ? b : 256 + extra++));
  }
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
  const eot = Object.keys(vocab).length;
  return {
    version: "1.0",
    added_tokens: [{ id: eot, content: "<|endoftext|>", special: true, normalized: false }],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<|endoftext|>", type_id: 0 } }],
      pair: [{ Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<|endoftext|>": { id: "<|endoftext|>", ids: [eot], tokens: ["<|endoftext|>"] } },
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, vocab, merges },
  };
}

type Json = Record<string, unknown>;
const clone = (j: Json): Json => structuredClone(j);
const model = (j: Json): Json => j.model as Json;
const vocabOf = (j: Json): Record<string, number> => model(j).vocab as Record<string, number>;

describe("checkTokenizerJson", () => {
  it("accepts a valid file and reports its size and post-processor tokens", () => {
    const info = checkTokenizerJson(byteLevelJson(), "t.json");
    expect(info.vocabSize).toBe(262);
    expect(info.prefixIds).toEqual([]);
    expect(info.suffixIds).toEqual([261]);
    expect(info.specialIds.has(261)).toBe(true);
    expect(info.tokens[256]).toBe("Ġt");
  });

  const rejects: [string, (j: Json) => unknown, RegExp][] = [
    [
      "an unknown model type",
      (j) => Object.assign(model(j), { type: "Fancy" }),
      /model.type "Fancy" is not supported/,
    ],
    ["a missing model type", (j) => delete model(j).type, /model.type is undefined/],
    [
      "a WordPiece vocabulary without unk_token",
      (j) => Object.assign(model(j), { type: "WordPiece" }),
      /WordPiece model must name a token/,
    ],
    ["two tokens with one id", (j) => Object.assign(vocabOf(j), { extra: 3 }), /id 3 is given to two tokens/],
    [
      "an id past the token count",
      (j) => Object.assign(vocabOf(j), { he: 1e9 }),
      /1000000000: ids must be dense/,
    ],
    [
      "a negative id",
      (j) => Object.assign(vocabOf(j), { he: -1 }),
      /model.vocab\["he"\] is -1, not a token id/,
    ],
    ["a fractional id", (j) => Object.assign(vocabOf(j), { he: 2.5 }), /is 2.5, not a token id/],
    ["a gap in the ids", (j) => Object.assign(vocabOf(j), { llo: 300 }), /ids must be dense/],
    [
      "a merge of an unknown token",
      (j) => (model(j).merges as unknown[]).push(["x", "zz"]),
      /merges\[5\] .* the unknown token "zz"/,
    ],
    [
      "a merge making an unknown token",
      (j) => (model(j).merges as unknown[]).push(["x", "y"]),
      /makes "xy", which is not a token/,
    ],
    [
      "a malformed merge",
      (j) => (model(j).merges as unknown[]).push("a b c"),
      /merges\[5\] "a b c" is not two tokens/,
    ],
    [
      "an added token contradicting the vocabulary",
      (j) => Object.assign((j.added_tokens as Json[])[0], { content: "he" }),
      /gives "he" id 261 but the vocabulary gives it id 257/,
    ],
    [
      "an added token taking a vocabulary id",
      (j) => Object.assign((j.added_tokens as Json[])[0], { id: 5 }),
      /gives id 5 to "<\|endoftext\|>" but the vocabulary gives it to/,
    ],
    [
      "an added token twice",
      (j) => (j.added_tokens as Json[]).push({ id: 262, content: "<|endoftext|>" }),
      /"<\|endoftext\|>" is added twice/,
    ],
    [
      "an added token with id -1",
      (j) => Object.assign((j.added_tokens as Json[])[0], { id: -1 }),
      /added_tokens\[0\].id is -1/,
    ],
    [
      "an unknown unk_token",
      (j) => Object.assign(model(j), { unk_token: "<unk>" }),
      /unk_token "<unk>" is not a token/,
    ],
    [
      "a template naming an undefined special token",
      (j) => Object.assign(j.post_processor as Json, { special_tokens: {} }),
      /special token "<\|endoftext\|>", which special_tokens does not define/,
    ],
    [
      "a template id out of range",
      (j) =>
        Object.assign(((j.post_processor as Json).special_tokens as Json)["<|endoftext|>"] as Json, {
          ids: [4000],
        }),
      /4000 is not a token id/,
    ],
    [
      "an unknown post-processor",
      (j) => Object.assign(j.post_processor as Json, { type: "Magic" }),
      /post_processor.type "Magic" is not supported/,
    ],
    ["a non-object top level", () => [], /top level is an array/],
  ];
  for (const [what, mutate, message] of rejects)
    it(`rejects ${what}, naming the file`, () => {
      const j = byteLevelJson();
      const replaced = mutate(j);
      const input = Array.isArray(replaced) ? replaced : j;
      expect(() => checkTokenizerJson(input, "bad/tokenizer.json")).toThrow(/^bad\/tokenizer\.json: /);
      expect(() => checkTokenizerJson(input, "bad/tokenizer.json")).toThrow(message);
    });

  it("rejects an id of 1e9 at once (work linear in the file, not in the largest id)", () => {
    const j = byteLevelJson();
    (j.added_tokens as Json[]).push({ id: 1e9, content: "<big>", special: true });
    const t0 = performance.now();
    expect(() => new HfTokenizer(j, { source: "big.json" })).toThrow(
      /big.json: added_tokens\[1\] .* has id 1000000000/,
    );
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it("accepts Unigram and WordPiece files; checks their own fields", () => {
    const uni = {
      model: {
        type: "Unigram",
        unk_id: 0,
        vocab: [
          ["<unk>", 0],
          ["▁a", -1],
          ["b", -2],
        ],
      },
    };
    expect(checkTokenizerJson(uni, "u.json").vocabSize).toBe(3);
    expect(() => checkTokenizerJson({ model: { ...uni.model, unk_id: 3 } }, "u.json")).toThrow(
      /u.json: model.unk_id 3 is not an index/,
    );
    expect(() =>
      checkTokenizerJson({ model: { type: "Unigram", vocab: [["a", Number.NaN]] } }, "u.json"),
    ).toThrow(/non-finite score/);
    const wp = { model: { type: "WordPiece", unk_token: "[UNK]", vocab: { "[UNK]": 0, a: 1, "##b": 2 } } };
    expect(checkTokenizerJson(wp, "w.json").modelType).toBe("WordPiece");
  });
});

/** Every path (key list) into a JSON value, up to `limit` of them. */
function paths(v: unknown, limit = 4000): (string | number)[][] {
  const out: (string | number)[][] = [];
  const walk = (x: unknown, p: (string | number)[]): void => {
    if (out.length >= limit) return;
    out.push(p);
    if (Array.isArray(x)) for (let i = 0; i < x.length; i++) walk(x[i], [...p, i]);
    else if (x && typeof x === "object") for (const [k, y] of Object.entries(x)) walk(y, [...p, k]);
  };
  walk(v, []);
  return out;
}

function setAt(root: Json, path: (string | number)[], value: unknown): Json {
  if (path.length === 0) return value as Json;
  let x = root as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) x = x[k] as Record<string | number, unknown>;
  const last = path[path.length - 1];
  if (value === undefined) {
    if (Array.isArray(x)) x.splice(last as number, 1);
    else delete x[last];
  } else x[last] = value;
  return root;
}

describe("tokenizer.json corruption (fast-check)", () => {
  const base = byteLevelJson();
  const allPaths = paths(base);
  // paths outside the vocabulary and merges lists, so that edits of the other sections get their share
  const otherPaths = allPaths.filter(
    (p) => !(p[0] === "model" && (p[1] === "vocab" || p[1] === "merges") && p.length > 2),
  );
  const replacement = fc.oneof(
    fc.constant(undefined), // delete the entry
    fc.jsonValue({ maxDepth: 2 }),
    fc.integer({ min: -5, max: 300 }),
    fc.constantFrom(1e9, -1, 2 ** 53, 0.5, null, "", "Ġt", "<|endoftext|>", "Unigram", "WordPiece"),
  );

  it("a mutated file gives a named error or a working tokenizer, never a crash or a hang", () => {
    const texts = ["hello the world", "Ġ 🙂\n<|endoftext|>x", ""];
    let built = 0;
    let rejected = 0;
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.oneof(
              fc.nat(allPaths.length - 1).map((i) => allPaths[i]),
              fc.nat(otherPaths.length - 1).map((i) => otherPaths[i]),
            ),
            replacement,
          ),
          { minLength: 1, maxLength: 3 },
        ),
        (edits) => {
          let j = clone(base);
          for (const [path, v] of edits) {
            try {
              j = setAt(j, path, v);
            } catch {
              // the path vanished with an earlier edit: skip this edit
            }
          }
          let tok: HfTokenizer;
          try {
            tok = new HfTokenizer(j, { source: "mut/tokenizer.json" });
          } catch (e) {
            expect(e).toBeInstanceOf(Error);
            expect((e as Error).message).toMatch(/^mut\/tokenizer\.json: /);
            rejected++;
            return;
          }
          built++;
          for (const text of texts) {
            let ids: number[];
            try {
              ids = tok.encode(text, { special: true });
            } catch (e) {
              expect((e as Error).message).toMatch(/^mut\/tokenizer\.json: /);
              continue;
            }
            for (const id of ids) {
              expect(Number.isInteger(id)).toBe(true);
              expect(id).toBeGreaterThanOrEqual(0);
              expect(id).toBeLessThan(tok.vocabSize);
            }
            try {
              expect(typeof tok.decodeAll(ids)).toBe("string");
            } catch (e) {
              expect((e as Error).message).toMatch(/^mut\/tokenizer\.json: /);
            }
          }
        },
      ),
      { seed: 21, numRuns: 300 },
    );
    // both outcomes occur: the mutations reach the checks and also leave valid files
    expect(built).toBeGreaterThan(10);
    expect(rejected).toBeGreaterThan(10);
  }, 60_000);

  it("a damaged file on disk (truncated or with a byte changed) is an error naming it", () => {
    const dir = mkdtempSync(join(tmpdir(), "tokjson-"));
    const text = JSON.stringify(base);
    fc.assert(
      fc.property(fc.nat(text.length - 1), fc.nat(255), fc.boolean(), (at, byte, truncate) => {
        const damaged = truncate
          ? text.slice(0, at)
          : text.slice(0, at) + String.fromCharCode(byte) + text.slice(at + 1);
        const path = join(dir, "tokenizer.json");
        writeFileSync(path, damaged);
        try {
          const tok = HfTokenizer.fromFile(path);
          expect(tok.vocabSize).toBeGreaterThan(0);
        } catch (e) {
          expect((e as Error).message.startsWith(`${path}: `)).toBe(true);
        }
      }),
      { seed: 7, numRuns: 150 },
    );
  }, 60_000);
});
