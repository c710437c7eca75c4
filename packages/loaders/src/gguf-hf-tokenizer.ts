// A Hugging Face byte-level BPE tokenizer (tokenizer.json) as llama.cpp's `tokenizer.ggml.*` metadata: the
// inverse of HfTokenizer.fromGguf, so an exported GGUF carries the vocabulary llama.cpp needs.
import type { GgufValue } from "@int21/io";
import { GGUF_PRE_TOKENIZERS, type HfTokenizer } from "./hf-tokenizer";

/** `tokenizer.ggml.token_type` values (llama.cpp's llama_token_type). */
const NORMAL = 1;
const CONTROL = 3;
const USER_DEFINED = 4;
const UNUSED = 5;

/** JSON text with sorted keys and without `trim_offsets` (which moves offsets, never ids). */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x !== null && typeof x === "object" && !Array.isArray(x)
      ? Object.fromEntries(
          Object.keys(x)
            .filter((k) => k !== "trim_offsets")
            .sort()
            .map((k) => [k, (x as Record<string, unknown>)[k]]),
        )
      : x,
  );
}

/** The names written for each pre-tokenizer, in the spelling llama.cpp's loader knows. */
const WRITE_NAMES = ["llama-bpe", "qwen2", "gpt-2"] as const;

/**
 * The GGUF tokenizer metadata of a byte-level BPE `tokenizer.json` (Llama 3, Qwen2/3, SmolLM2, GPT-2 style):
 * `tokenizer.ggml.model` = `gpt2`, `pre` named after the file's pre-tokenizer (the names llama.cpp knows:
 * {@link GGUF_PRE_TOKENIZERS}), tokens by id, token types (added special tokens control, other added tokens
 * user-defined), merges, BOS/EOS ids and `add_bos_token` / `add_eos_token` as the tokenizer applies them, and
 * the chat template. A model with more rows than the tokenizer has tokens (a padded vocabulary, as every Qwen)
 * gets `[PAD<id>]` tokens of type unused up to `vocabSize`, as llama.cpp's converter writes them.
 * `HfTokenizer.fromGguf` reads it back to the same ids. Throws naming `source` for a
 * tokenizer llama.cpp could not run the same way (not BPE, not byte-level, or a pre-tokenizer without a name).
 */
export function hfTokenizerToGguf(
  tok: HfTokenizer,
  vocabSize = tok.vocabSize,
  source = "tokenizer.json",
): Record<string, GgufValue> {
  if (vocabSize < tok.vocabSize) tooMany(source, tok.vocabSize, vocabSize);
  const json = tok.json as Record<string, unknown>;
  const model = json.model as { type?: string; vocab?: Record<string, number>; merges?: unknown[] };
  if (model?.type !== "BPE")
    throw new Error(
      `${source}: model type ${String(model?.type)}: only byte-level BPE tokenizers go into a GGUF here`,
    );
  const decoder = json.decoder as { type?: string } | null | undefined;
  if (decoder?.type !== "ByteLevel")
    throw new Error(
      `${source}: decoder ${String(decoder?.type)} is not ByteLevel (a SentencePiece-style tokenizer.json: export with its tokenizer.model instead)`,
    );
  const pre = WRITE_NAMES.find(
    (name) =>
      canonical(GGUF_PRE_TOKENIZERS[name].preTokenizer) === canonical(json.pre_tokenizer) &&
      canonical(GGUF_PRE_TOKENIZERS[name].normalizer) === canonical(json.normalizer ?? null),
  );
  if (pre === undefined)
    throw new Error(
      `${source}: its pre-tokenizer matches none of the ones int21 names for llama.cpp (${WRITE_NAMES.join(", ")}): llama.cpp would split text differently`,
    );
  const tokens: string[] = new Array(tok.vocabSize);
  const types = new Int32Array(tok.vocabSize).fill(NORMAL);
  for (const [t, id] of Object.entries(model.vocab ?? {})) tokens[id] = t;
  for (const a of (json.added_tokens ?? []) as { id: number; content: string; special?: boolean }[]) {
    tokens[a.id] = a.content;
    types[a.id] = a.special ? CONTROL : USER_DEFINED;
  }
  for (let i = 0; i < tok.vocabSize; i++)
    if (tokens[i] === undefined) throw new Error(`${source}: no token has id ${i}`);
  const merges = (model.merges ?? []).map((m) => (Array.isArray(m) ? m.join(" ") : String(m)));
  const out: Record<string, GgufValue> = {
    "tokenizer.ggml.model": { type: "string", value: "gpt2" },
    "tokenizer.ggml.pre": { type: "string", value: pre },
    "tokenizer.ggml.tokens": { type: "array", itemType: "string", value: tokens },
    "tokenizer.ggml.token_type": { type: "array", itemType: "i32", value: types },
    "tokenizer.ggml.merges": { type: "array", itemType: "string", value: merges },
    "tokenizer.ggml.add_bos_token": { type: "bool", value: tok.addBos },
    "tokenizer.ggml.add_eos_token": { type: "bool", value: tok.addEos },
  };
  if (tok.bosId >= 0) out["tokenizer.ggml.bos_token_id"] = { type: "u32", value: tok.bosId };
  if (tok.eosId >= 0) out["tokenizer.ggml.eos_token_id"] = { type: "u32", value: tok.eosId };
  if (tok.chatTemplate !== undefined)
    out["tokenizer.chat_template"] = { type: "string", value: tok.chatTemplate };
  return padGgufVocabulary(out, vocabSize, source);
}

function tooMany(source: string, tokens: number, vocabSize: number): never {
  throw new Error(`${source}: ${tokens} tokens, more than the model's ${vocabSize} rows`);
}

/**
 * `tokenizer.ggml.*` metadata padded to a model of `vocabSize` rows (a padded vocabulary, as every Qwen or
 * Phi-3): `[PAD<id>]` tokens of type unused (score 0 where the vocabulary has scores), as llama.cpp's
 * converter writes them; llama.cpp needs one token per embedding row. In place; throws naming `source` when
 * the tokenizer has more tokens than the model has rows.
 */
export function padGgufVocabulary(
  meta: Record<string, GgufValue>,
  vocabSize: number,
  source = "tokenizer",
): Record<string, GgufValue> {
  const tokens = meta["tokenizer.ggml.tokens"] as { type: "array"; itemType: "string"; value: string[] };
  const n = tokens.value.length;
  if (n > vocabSize) tooMany(source, n, vocabSize);
  if (n === vocabSize) return meta;
  const types = meta["tokenizer.ggml.token_type"] as { type: "array"; itemType: "i32"; value: Int32Array };
  const t = new Int32Array(vocabSize).fill(UNUSED);
  t.set(types.value);
  meta["tokenizer.ggml.tokens"] = {
    ...tokens,
    value: [...tokens.value, ...Array.from({ length: vocabSize - n }, (_, i) => `[PAD${n + i}]`)],
  };
  meta["tokenizer.ggml.token_type"] = { ...types, value: t };
  const scores = meta["tokenizer.ggml.scores"] as
    | { type: "array"; itemType: "f32"; value: Float32Array }
    | undefined;
  if (scores !== undefined) {
    const sc = new Float32Array(vocabSize);
    sc.set(scores.value);
    meta["tokenizer.ggml.scores"] = { ...scores, value: sc };
  }
  return meta;
}
