import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Tokenizer as HfLibTokenizer } from "@huggingface/tokenizers";
import type { GgufTokenizer } from "@int21/io";
import type { EncodeOptions, StreamDecoder, Tokenizer } from "@int21/model-llama";
import { type TokenizerJsonInfo, checkTokenizerJson } from "./tokenizer-json";

/** Options of {@link HfTokenizer}. */
export interface HfTokenizerOptions {
  /**
   * `tokenizer_config.json` contents: `bos_token` / `eos_token`, `add_bos_token` / `add_eos_token`,
   * `chat_template`.
   */
  config?: Record<string, unknown>;
  /** BOS token text; default from `config.bos_token`, else the post-processor's single prefix token, else the first of `<s>`, `<|begin_of_text|>`, `<|endoftext|>` present. */
  bosToken?: string;
  /** EOS token text; default from `config.eos_token`, else the post-processor's single suffix token, else the first of `</s>`, `<|end_of_text|>`, `<|endoftext|>` present. */
  eosToken?: string;
  /** A Jinja chat template (default: `config.chat_template`; {@link HfTokenizer.fromFile} also reads `chat_template.jinja`). */
  chatTemplate?: string;
  /** Name used in errors (default `tokenizer.json`). */
  source?: string;
}

function tokenName(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string")
    return (v as { content: string }).content;
  return undefined;
}

/** The template of `config.chat_template`: a string, or the `default` of a list of named templates. */
function configChatTemplate(config: Record<string, unknown>, source: string): string | undefined {
  const t = config.chat_template;
  if (t === undefined || t === null) return undefined;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    const named = t.find((x) => x && typeof x === "object" && (x as { name?: unknown }).name === "default") as
      | { template?: unknown }
      | undefined;
    if (named && typeof named.template === "string") return named.template;
    throw new Error(`${source}: chat_template is a list without a "default" template`);
  }
  throw new Error(`${source}: chat_template must be a string or a list of {name, template}`);
}

/**
 * A Hugging Face `tokenizer.json` (BPE, WordPiece, Unigram; byte-level or SentencePiece-style) behind
 * the {@link Tokenizer} interface, through `@huggingface/tokenizers` (the Hub's own JS implementation).
 * The file is checked completely first ({@link checkTokenizerJson}): unsupported model types, sparse or
 * duplicate ids, merges of unknown tokens and inconsistent added tokens are errors naming the file.
 *
 * Special tokens: `encode(text, { special: true })` adds what Hugging Face's `add_special_tokens=True`
 * adds — `add_bos_token` / `add_eos_token` of `tokenizer_config.json` when it sets them (as llama.cpp's
 * converter and transformers 4 read them), else the file's post-processor (`TemplateProcessing` around
 * the sequence, `ByteLevel` nothing). {@link HfTokenizer.addBos} says whether that includes BOS.
 * `encode(text, { bos, eos })` adds exactly BOS / EOS when asked.
 *
 * Decoding skips special tokens and applies the file's decoder (e.g. `▁` → space, byte fallback,
 * strip of the first space).
 */
export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  /** Whether the tokenizer's own configuration starts a text with BOS (`prefixIds` is `[bosId]`). */
  readonly addBos: boolean;
  /** Whether the tokenizer's own configuration ends a text with EOS. */
  readonly addEos: boolean;
  /** The ids `encode(text, { special: true })` puts before the text. */
  readonly prefixIds: readonly number[];
  /** The ids `encode(text, { special: true })` puts after the text. */
  readonly suffixIds: readonly number[];
  /** The Jinja chat template, when the tokenizer has one ({@link renderChatTemplate}). */
  readonly chatTemplate?: string;
  /**
   * The special tokens `tokenizer_config.json` names (`bos_token`, `eos_token`, `unk_token`, `pad_token`),
   * as text: the variables transformers gives a chat template. Tokens found only by fallback are absent.
   */
  readonly templateTokens: Readonly<Record<string, string>>;
  /** `model.type` of the file. */
  readonly modelType: TokenizerJsonInfo["modelType"];
  /** The underlying library tokenizer. */
  readonly inner: HfLibTokenizer;
  /** The checked `tokenizer.json` object this tokenizer was built from (what {@link hfTokenizerToGguf} writes). */
  readonly json: Readonly<Record<string, unknown>>;
  private readonly source: string;

  constructor(json: Record<string, unknown>, opts: HfTokenizerOptions = {}) {
    this.source = opts.source ?? "tokenizer.json";
    this.json = json;
    const info = checkTokenizerJson(json, this.source);
    this.modelType = info.modelType;
    this.vocabSize = info.vocabSize;
    const config = opts.config ?? {};
    if (typeof config !== "object" || config === null || Array.isArray(config))
      throw new Error(`${this.source}: tokenizer_config must be an object`);
    try {
      // absent sections mean none (the library wants every key present)
      const sections = {
        normalizer: null,
        pre_tokenizer: null,
        post_processor: null,
        decoder: null,
        added_tokens: [],
      };
      this.inner = new HfLibTokenizer(
        { ...sections, ...json, added_tokens: json.added_tokens ?? [] },
        config,
      );
    } catch (e) {
      throw new Error(`${this.source}: @huggingface/tokenizers rejected it: ${(e as Error).message}`);
    }
    const find = (
      what: string,
      explicit: string | undefined,
      fromConfig: unknown,
      fromTemplate: readonly number[],
      fallbacks: string[],
    ): number => {
      if (explicit !== undefined) {
        const id = info.ids.get(explicit);
        if (id === undefined)
          throw new Error(`${this.source}: token ${JSON.stringify(explicit)} is not in the vocabulary`);
        return id;
      }
      const named = tokenName(fromConfig);
      if (named !== undefined) {
        const id = info.ids.get(named);
        if (id === undefined)
          throw new Error(
            `${this.source}: tokenizer_config's ${what} ${JSON.stringify(named)} is not in the vocabulary`,
          );
        return id;
      }
      if (fromTemplate.length === 1) return fromTemplate[0];
      for (const n of fallbacks) {
        const id = info.ids.get(n);
        if (id !== undefined) return id;
      }
      return -1;
    };
    this.bosId = find("bos_token", opts.bosToken, config.bos_token, info.prefixIds, [
      "<s>",
      "<|begin_of_text|>",
      "<|endoftext|>",
    ]);
    this.eosId = find("eos_token", opts.eosToken, config.eos_token, info.suffixIds, [
      "</s>",
      "<|end_of_text|>",
      "<|endoftext|>",
    ]);
    const named: Record<string, string> = {};
    for (const key of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
      const n = tokenName(config[key]);
      if (n !== undefined) named[key] = n;
    }
    if (opts.bosToken !== undefined) named.bos_token = opts.bosToken;
    if (opts.eosToken !== undefined) named.eos_token = opts.eosToken;
    this.templateTokens = named;
    const flag = (key: string, id: number, template: number[]): number[] => {
      const v = config[key];
      if (v === undefined || v === null) return template;
      if (typeof v !== "boolean")
        throw new Error(`${this.source}: tokenizer_config's ${key} must be a boolean, got ${typeof v}`);
      if (v && id < 0)
        throw new Error(
          `${this.source}: tokenizer_config sets ${key} but names no such token (set ${key.replace("add_", "")})`,
        );
      return v ? [id] : [];
    };
    this.prefixIds = flag("add_bos_token", this.bosId, info.prefixIds);
    this.suffixIds = flag("add_eos_token", this.eosId, info.suffixIds);
    this.addBos = this.prefixIds.length > 0 && this.prefixIds[0] === this.bosId;
    this.addEos = this.suffixIds.length > 0 && this.suffixIds[this.suffixIds.length - 1] === this.eosId;
    const template = opts.chatTemplate ?? configChatTemplate(config, this.source);
    if (template !== undefined) this.chatTemplate = template;
  }

  /**
   * Reads `tokenizer.json`, and beside it `tokenizer_config.json` and `chat_template.jinja` when present
   * (a `chat_template.jinja` file wins over the config's `chat_template`, as in transformers).
   */
  static fromFile(path: string, opts: Omit<HfTokenizerOptions, "source"> = {}): HfTokenizer {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(readFileSync(path, "utf8"));
    } catch (e) {
      throw new Error(`${path}: cannot read tokenizer.json: ${(e as Error).message}`);
    }
    let config = opts.config;
    const cfgPath = join(dirname(path), "tokenizer_config.json");
    if (config === undefined && existsSync(cfgPath)) {
      try {
        config = JSON.parse(readFileSync(cfgPath, "utf8"));
      } catch (e) {
        throw new Error(`${cfgPath}: cannot read tokenizer_config.json: ${(e as Error).message}`);
      }
      if (typeof config !== "object" || config === null || Array.isArray(config))
        throw new Error(`${cfgPath}: tokenizer_config.json must hold a JSON object`);
    }
    let chatTemplate = opts.chatTemplate;
    const jinjaPath = join(dirname(path), "chat_template.jinja");
    if (chatTemplate === undefined && existsSync(jinjaPath)) chatTemplate = readFileSync(jinjaPath, "utf8");
    return new HfTokenizer(json, {
      ...opts,
      config,
      ...(chatTemplate !== undefined ? { chatTemplate } : {}),
      source: path,
    });
  }

  /**
   * The byte-level BPE vocabulary of a GGUF file (`tokenizer.ggml.model` = `gpt2`, as llama.cpp stores
   * Llama 3, Qwen 2, SmolLM …) as a tokenizer: `tokens` by id, `merges`, control (3) and user-defined (4)
   * tokens as added tokens, the pre-tokenizer named by `tokenizer.ggml.pre`
   * ({@link GGUF_PRE_TOKENIZERS}), BOS / EOS as `add_bos_token` / `add_eos_token` say (llama.cpp's
   * default for this vocabulary: neither), and `tokenizer.chat_template`.
   * @param file the GGUF file's name, for errors
   */
  static fromGguf(tok: GgufTokenizer, file = "<gguf>"): HfTokenizer {
    const source = `${file} (tokenizer.ggml.*)`;
    if (tok.model !== "gpt2")
      throw new Error(
        `${source}: tokenizer.ggml.model "${tok.model}" is not a byte-level BPE ("gpt2") vocabulary`,
      );
    const preName = tok.pre ?? "default";
    const pre = GGUF_PRE_TOKENIZERS[preName];
    if (pre === undefined)
      throw new Error(
        `${source}: tokenizer.ggml.pre "${preName}" is not supported (int21 knows ${Object.keys(GGUF_PRE_TOKENIZERS).join(", ")}); pass a tokenizer.json`,
      );
    if (tok.merges === undefined) throw new Error(`${source}: tokenizer.ggml.merges is missing`);
    const vocab: Record<string, number> = {};
    const added: Record<string, unknown>[] = [];
    tok.tokens.forEach((t, i) => {
      if (Object.hasOwn(vocab, t))
        throw new Error(`${source}: token ${JSON.stringify(t)} appears twice (ids ${vocab[t]} and ${i})`);
      vocab[t] = i;
      const type = tok.tokenTypes?.[i];
      if (type === 3 || type === 4) added.push({ id: i, content: t, special: type === 3, normalized: false });
    });
    const config: Record<string, unknown> = {};
    if (tok.bosId !== undefined) config.bos_token = tok.tokens[tok.bosId];
    if (tok.eosId !== undefined) config.eos_token = tok.tokens[tok.eosId];
    config.add_bos_token = tok.addBos ?? false;
    config.add_eos_token = tok.addEos ?? false;
    const json = {
      added_tokens: added,
      normalizer: pre.normalizer,
      pre_tokenizer: pre.preTokenizer,
      post_processor: null,
      decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: { type: "BPE", unk_token: null, byte_fallback: false, vocab, merges: tok.merges },
    };
    return new HfTokenizer(json, {
      config,
      source,
      ...(tok.chatTemplate !== undefined ? { chatTemplate: tok.chatTemplate } : {}),
    });
  }

  /**
   * Token ids of `text`. `special: true` adds the tokenizer's own special tokens (Hugging Face's
   * `add_special_tokens=True`: {@link HfTokenizer.prefixIds} and {@link HfTokenizer.suffixIds});
   * otherwise `bos` / `eos` add BOS / EOS.
   */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    let ids: number[];
    try {
      ids = this.inner.encode(text, { add_special_tokens: false }).ids;
    } catch (e) {
      throw new Error(`${this.source}: cannot encode the text: ${(e as Error).message}`);
    }
    for (const id of ids)
      if (!Number.isInteger(id))
        throw new Error(`${this.source}: the text has a piece with no id (the file has no unk_token)`);
    if (opts.special) return [...this.prefixIds, ...ids, ...this.suffixIds];
    if (opts.bos) {
      if (this.bosId < 0) throw new Error(`${this.source}: no BOS token (pass bosToken)`);
      ids.unshift(this.bosId);
    }
    if (opts.eos) {
      if (this.eosId < 0) throw new Error(`${this.source}: no EOS token (pass eosToken)`);
      ids.push(this.eosId);
    }
    return ids;
  }

  private text(ids: number[]): string {
    if (ids.length === 0) return "";
    try {
      return this.inner.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false });
    } catch (e) {
      throw new Error(`${this.source}: cannot decode: ${(e as Error).message}`);
    }
  }

  private checkId(token: number): void {
    if (!Number.isInteger(token) || token < 0 || token >= this.vocabSize)
      throw new Error(`${this.source}: token ${token} is outside [0, ${this.vocabSize})`);
  }

  /** The text `token` adds after `prev`: `decode([prev, token]) − decode([prev])`. */
  decode(prev: number, token: number): string {
    this.checkId(token);
    if (prev < 0 || prev === this.bosId) return this.text([token]);
    const before = this.text([prev]);
    return this.text([prev, token]).slice(before.length);
  }

  decodeAll(tokens: readonly number[]): string {
    for (const t of tokens) this.checkId(t);
    return this.text(tokens.slice());
  }

  /**
   * Decodes the growing sequence and emits what is new, holding text back while it ends in U+FFFD
   * (an incomplete byte sequence). The decoded window restarts from the last token every 64 tokens,
   * so the cost per token stays bounded.
   */
  streamDecoder(): StreamDecoder {
    let window: number[] = [];
    let emitted = 0; // characters of text(window) already returned
    return {
      push: (_prev, token) => {
        this.checkId(token);
        window.push(token);
        const full = this.text(window);
        if (full.endsWith("\uFFFD")) return "";
        const out = full.slice(emitted);
        emitted = full.length;
        if (window.length > 64) {
          // re-anchor on the last token: later text = text([last, …]) − text([last])
          window = [token];
          emitted = this.text(window).length;
        }
        return out;
      },
      flush: () => {
        const full = this.text(window);
        const out = full.slice(emitted);
        emitted = full.length;
        return out;
      },
    };
  }
}

const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const regexThenBytes = (regex: string) => ({
  type: "Sequence",
  pretokenizers: [
    { type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false },
    { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
  ],
});
const GPT2_BYTES = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };

/**
 * The pre-tokenizers (and normalizers) of the `tokenizer.ggml.pre` names int21 maps to Hugging Face
 * sections: the regular expressions are those of the families' own tokenizer.json files.
 */
export const GGUF_PRE_TOKENIZERS: Readonly<
  Record<string, { normalizer: Record<string, unknown> | null; preTokenizer: Record<string, unknown> }>
> = {
  default: { normalizer: null, preTokenizer: GPT2_BYTES },
  gpt2: { normalizer: null, preTokenizer: GPT2_BYTES },
  "gpt-2": { normalizer: null, preTokenizer: GPT2_BYTES },
  smollm: { normalizer: null, preTokenizer: GPT2_BYTES },
  "llama-bpe": { normalizer: null, preTokenizer: regexThenBytes(LLAMA3_SPLIT) },
  llama3: { normalizer: null, preTokenizer: regexThenBytes(LLAMA3_SPLIT) },
  qwen2: { normalizer: { type: "NFC" }, preTokenizer: regexThenBytes(QWEN2_SPLIT) },
};
