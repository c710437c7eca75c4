// llama2.c tokenizer → Hugging Face tokenizer.json: the converted files against the tokenizers library.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { SHARED, sharedPath } from "@int21/shared-data";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { HfTokenizer } from "./hf-tokenizer";
import { llama2cMerges, llama2cTokenizerFiles, llama2cVocabStrings } from "./llama2c-tokenizer-json";
import { Llama2cTokenizer } from "./tokenizer";

const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
const stories = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8")
  .split("<|endoftext|>")
  .map((s) => s.trim())
  .filter((s) => s.length > 0);

// Produced by the real peer, not by int21: tokenizers 0.23.2 and transformers 5.18.0 in a throwaway Python venv
// (never needed by CI), on the three files llama2cTokenizerFiles(tok512.bin, { maxLength: 512 }) writes:
//   t = Tokenizer.from_file("tokenizer.json"); at = AutoTokenizer.from_pretrained(dir)   # TokenizersBackend
//   PEER_CASES: t.encode(text, add_special_tokens=False).ids  (at(text)["input_ids"] is [1] + the same for each,
//               and at.decode(..., skip_special_tokens=True) gives the text back)
//   PEER_STORIES_SHA256: the 1,000 stories of tinystories_valid_first1000.txt split on <|endoftext|> and trimmed,
//               each t.encode(story, add_special_tokens=False).ids; sha256 of the ids joined by ";" within a story
//               and "," between stories (389,336 tokens; AutoTokenizer gave [1] + the same ids for every story).
const PEER_CASES: { text: string; ids: number[] }[] = [
  {
    text: "Once upon a time, there was a little girl named Lily.",
    ids: [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426],
  },
  { text: "  two  spaces  ", ids: [410, 410, 259, 424, 414, 410, 262, 427, 412, 331, 419, 410, 410] },
  {
    text: "Line one\nLine two\n\n\tTab",
    ids: [307, 271, 411, 353, 411, 13, 438, 271, 411, 259, 424, 414, 13, 13, 12, 434, 412, 430],
  },
  {
    text: "Héllo 日本 wörld! 🙂",
    ids: [
      320, 485, 306, 414, 410, 233, 154, 168, 233, 159, 175, 263, 198, 185, 420, 341, 443, 410, 243, 162, 156,
      133,
    ],
  },
  { text: "", ids: [] },
  { text: " ", ids: [410, 410] },
  { text: "a", ids: [261] },
];
const PEER_STORIES_SHA256 = "917dd88b0d64b3320a7824a23d6650a8426f513a7068aed34eed474f5c6d4c7b";
const PEER_STORIES_TOKENS = 389_336;

/**
 * Hugging Face's BPE (tokenizers' `Word::merge_all`), written out: normalize (prepend ▁, spaces → ▁), one symbol
 * per character (byte fallback `<0xXX>` for characters outside the vocabulary), then apply the lowest-ranked merge,
 * leftmost first, until none applies.
 */
function hfBpe(files: ReturnType<typeof llama2cTokenizerFiles>, text: string): number[] {
  const model = files["tokenizer.json"].model as {
    vocab: Record<string, number>;
    merges: [string, string][];
  };
  if (text === "") return [];
  const rank = new Map(model.merges.map(([l, r], i) => [`${l} ${r}`, i]));
  let syms: string[] = [];
  for (const ch of `▁${text.replaceAll(" ", "▁")}`) {
    if (Object.hasOwn(model.vocab, ch)) syms.push(ch);
    else
      for (const b of new TextEncoder().encode(ch))
        syms.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
  }
  for (;;) {
    let best = -1;
    let bestRank = Number.POSITIVE_INFINITY;
    for (let i = 0; i + 1 < syms.length; i++) {
      const r = rank.get(`${syms[i]} ${syms[i + 1]}`);
      if (r !== undefined && r < bestRank) {
        bestRank = r;
        best = i;
      }
    }
    if (best < 0) break;
    syms = [...syms.slice(0, best), syms[best] + syms[best + 1], ...syms.slice(best + 2)];
  }
  return syms.map((s) => model.vocab[s]);
}

describe("llama2cTokenizerFiles (tok512.bin)", () => {
  const files = llama2cTokenizerFiles(tok, { maxLength: 512 });

  it("a Llama-style byte-fallback BPE: 512 ids, specials <unk>/<s>/</s>, ▁ for spaces, a BOS post-processor", () => {
    const tj = files["tokenizer.json"] as { model: { vocab: Record<string, number>; merges: unknown[] } };
    expect(Object.keys(tj.model.vocab)).toHaveLength(512);
    expect(tj.model.vocab["<s>"]).toBe(1);
    expect(tj.model.vocab["<0x0A>"]).toBe(13);
    expect(tj.model.vocab["▁the"]).toBe(265);
    expect(tj.model).toMatchObject({ type: "BPE", byte_fallback: true, unk_token: "<unk>" });
    expect(tj.model.merges).toEqual(llama2cMerges(tok));
    expect(tj.model.merges[0]).toEqual(["▁", "t"]); // " t" is the best-scored piece
    expect(files["tokenizer_config.json"]).toMatchObject({
      tokenizer_class: "PreTrainedTokenizerFast",
      add_bos_token: true,
      bos_token: "<s>",
      eos_token: "</s>",
      model_max_length: 512,
    });
    expect(files["special_tokens_map.json"]).toEqual({
      bos_token: "<s>",
      eos_token: "</s>",
      unk_token: "<unk>",
    });
    expect(llama2cVocabStrings(tok).slice(0, 4)).toEqual(["<unk>", "<s>", "</s>", "<0x00>"]);
  });

  it("the tokenizers library encodes like int21's llama2.c tokenizer: edge cases, and all 1,000 held-out stories", () => {
    for (const c of PEER_CASES) expect(tok.encode(c.text), JSON.stringify(c.text)).toEqual(c.ids);
    const ids = stories.map((s) => tok.encode(s));
    expect(ids.reduce((a, b) => a + b.length, 0)).toBe(PEER_STORIES_TOKENS);
    const flat = ids.map((x) => x.join(";")).join(",");
    expect(createHash("sha256").update(flat).digest("hex")).toBe(PEER_STORIES_SHA256);
  }, 60_000);

  it("int21's own tokenizer.json reader and a written-out HF BPE reproduce llama2.c's ids (property)", () => {
    const hf = new HfTokenizer(files["tokenizer.json"], { config: files["tokenizer_config.json"] });
    for (const s of stories.slice(0, 20)) {
      expect(hf.encode(s)).toEqual(tok.encode(s));
      expect(hfBpe(files, s)).toEqual(tok.encode(s));
    }
    const alphabet = [..." aeehhlnorsttwy.,!\n'ΩéЖ日🙂"];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...alphabet), { maxLength: 40 }), (chars) => {
        const text = chars.join("");
        expect(hfBpe(files, text)).toEqual(tok.encode(text));
        expect(hf.encode(text)).toEqual(tok.encode(text));
      }),
      { numRuns: 300 },
    );
  }, 60_000);
});
