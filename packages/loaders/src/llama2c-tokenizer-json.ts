// A llama2.c tokenizer (`tokenizer.bin`: pieces + merge scores) as the Hugging Face files a folder needs:
// tokenizer.json (a Llama-style BPE with byte fallback whose merges reproduce llama2.c's best-score-first
// merging), tokenizer_config.json and special_tokens_map.json.
import type { Llama2cTokenizer } from "./tokenizer";

const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;
const SPECIALS = ["<unk>", "<s>", "</s>"] as const;

/** The files {@link llama2cTokenizerFiles} makes, as JSON objects (write each with `JSON.stringify`). */
export interface Llama2cHfTokenizerFiles {
  "tokenizer.json": Record<string, unknown>;
  "tokenizer_config.json": Record<string, unknown>;
  "special_tokens_map.json": Record<string, unknown>;
}

/** Options of {@link llama2cTokenizerFiles}. */
export interface Llama2cHfTokenizerOptions {
  /** `model_max_length` of tokenizer_config.json (the model's context). Default: none written. */
  maxLength?: number;
}

/**
 * The text of each llama2.c piece as a Hugging Face Llama vocabulary holds it: ids 0/1/2 are `<unk>`, `<s>`,
 * `</s>` (llama2.c stores BOS/EOS as `"\n<s>\n"` / `"\n</s>\n"`), byte pieces stay `<0xXX>`, and spaces become
 * SentencePiece's `▁`. Throws naming the id for a piece that is not UTF-8, or for two ids with the same text
 * (a `tokenizer.json` vocabulary is a map).
 */
export function llama2cVocabStrings(tok: Llama2cTokenizer): string[] {
  const dec = new TextDecoder("utf-8", { fatal: true });
  const seen = new Map<string, number>();
  return tok.pieces.map((bytes, id) => {
    let s: string;
    if (id < SPECIALS.length) s = SPECIALS[id];
    else {
      try {
        s = dec.decode(bytes).replaceAll(" ", "▁");
      } catch {
        throw new Error(`llama2cTokenizerFiles: piece ${id} is not UTF-8 text`);
      }
    }
    const prev = seen.get(s);
    if (prev !== undefined)
      throw new Error(
        `llama2cTokenizerFiles: pieces ${prev} and ${id} are both ${JSON.stringify(s)}; a tokenizer.json vocabulary cannot hold duplicates`,
      );
    seen.set(s, id);
    return s;
  });
}

/**
 * The BPE merges that reproduce llama2.c's encoder: every split of a piece into two pieces (byte pieces and the
 * specials excepted on both sides) is a merge producing it, ranked by the merged piece's score (highest first),
 * then by merged id, then by the left part's length (longest first). llama2.c merges the adjacent pair whose
 * concatenation scores highest, leftmost on ties; Hugging Face's BPE applies the lowest-ranked merge, leftmost on
 * ties of the same merge — the same order whenever the competing merges have distinct scores (every llama2.c
 * tokenizer trained by SentencePiece: scores are −rank). Each merge is `[left, right]`.
 */
export function llama2cMerges(
  tok: Llama2cTokenizer,
  vocab: string[] = llama2cVocabStrings(tok),
): [string, string][] {
  const ordinary = new Map<string, number>();
  vocab.forEach((s, id) => {
    if (id >= SPECIALS.length && !BYTE_PIECE.test(s)) ordinary.set(s, id);
  });
  const found: { l: string; r: string; score: number; id: number }[] = [];
  for (const [s, id] of ordinary) {
    const chars = [...s];
    let left = "";
    for (let i = 1; i < chars.length; i++) {
      left += chars[i - 1];
      const right = chars.slice(i).join("");
      if (ordinary.has(left) && ordinary.has(right))
        found.push({ l: left, r: right, score: tok.scores[id], id });
    }
  }
  found.sort((a, b) => b.score - a.score || a.id - b.id || b.l.length - a.l.length);
  return found.map((m) => [m.l, m.r]);
}

/**
 * The Hugging Face tokenizer files of a llama2.c tokenizer, in the layout of the hub's Llama 2 folders:
 * - `tokenizer.json`: model BPE (`byte_fallback`, `fuse_unk`, merges from {@link llama2cMerges}, vocabulary from
 *   {@link llama2cVocabStrings}), normalizer Prepend("▁") + Replace(" " → "▁") (llama2.c's dummy-prefix space),
 *   no pre-tokenizer, a post-processor adding `<s>` (llama2.c starts every text with BOS), the Llama decoder
 *   (▁ → space, byte fallback, fuse, strip one leading space), and `<unk>` / `<s>` / `</s>` as special added tokens;
 * - `tokenizer_config.json`: `PreTrainedTokenizerFast` (transformers loads tokenizer.json as written, without
 *   rebuilding a Llama pipeline), `add_bos_token` true, `add_eos_token` false, the special tokens;
 * - `special_tokens_map.json`: bos / eos / unk.
 * `Tokenizer.from_file` and `AutoTokenizer` then encode text to the ids `tok.encode(text)` gives.
 */
export function llama2cTokenizerFiles(
  tok: Llama2cTokenizer,
  opts: Llama2cHfTokenizerOptions = {},
): Llama2cHfTokenizerFiles {
  const vocab = llama2cVocabStrings(tok);
  const merges = llama2cMerges(tok, vocab);
  const vocabObj: Record<string, number> = {};
  vocab.forEach((s, id) => {
    vocabObj[s] = id;
  });
  const added = SPECIALS.map((content, id) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const tokenizerJson: Record<string, unknown> = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
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
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
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
      ignore_merges: false,
      vocab: vocabObj,
      merges,
    },
  };
  const decoder: Record<string, unknown> = {};
  for (const a of added)
    decoder[String(a.id)] = {
      content: a.content,
      lstrip: false,
      normalized: false,
      rstrip: false,
      single_word: false,
      special: true,
    };
  const tokenizerConfig: Record<string, unknown> = {
    tokenizer_class: "PreTrainedTokenizerFast",
    add_bos_token: true,
    add_eos_token: false,
    bos_token: "<s>",
    eos_token: "</s>",
    unk_token: "<unk>",
    pad_token: null,
    clean_up_tokenization_spaces: false,
    legacy: true,
    added_tokens_decoder: decoder,
    ...(opts.maxLength !== undefined ? { model_max_length: opts.maxLength } : {}),
  };
  return {
    "tokenizer.json": tokenizerJson,
    "tokenizer_config.json": tokenizerConfig,
    "special_tokens_map.json": { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" },
  };
}
