import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Tokenizer as HfLibTokenizer } from "@huggingface/tokenizers";
import type { EncodeOptions, StreamDecoder, Tokenizer } from "./tokenizer";

/** Options of {@link HfTokenizer}. */
export interface HfTokenizerOptions {
  /** `tokenizer_config.json` contents (bos/eos token names, cleanup flags). */
  config?: Record<string, unknown>;
  /** BOS token text; default from `config.bos_token`, else the first of `<s>`, `<|begin_of_text|>`, `<|endoftext|>` present. */
  bosToken?: string;
  /** EOS token text; default from `config.eos_token`, else the first of `</s>`, `<|end_of_text|>`, `<|endoftext|>` present. */
  eosToken?: string;
  /** Name used in errors (default `tokenizer.json`). */
  source?: string;
}

function tokenName(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string")
    return (v as { content: string }).content;
  return undefined;
}

/**
 * A Hugging Face `tokenizer.json` (BPE, WordPiece, Unigram; byte-level or SentencePiece-style) behind
 * the {@link Tokenizer} interface, through `@huggingface/tokenizers` (the Hub's own JS implementation).
 *
 * `encode` never lets the library add special tokens: BOS / EOS are added here when asked, so a
 * post-processor template cannot double them. Decoding skips special tokens and applies the file's
 * decoder (e.g. `▁` → space, byte fallback, strip of the first space).
 */
export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  /** The underlying library tokenizer. */
  readonly inner: HfLibTokenizer;
  private readonly source: string;

  constructor(json: Record<string, unknown>, opts: HfTokenizerOptions = {}) {
    this.source = opts.source ?? "tokenizer.json";
    if (!json || typeof json !== "object" || !json.model)
      throw new Error(`${this.source}: not a tokenizer.json (no "model" section)`);
    const config = opts.config ?? {};
    try {
      this.inner = new HfLibTokenizer(json, config);
    } catch (e) {
      throw new Error(`${this.source}: @huggingface/tokenizers rejected it: ${(e as Error).message}`);
    }
    const vocab = this.inner.get_vocab(true);
    let max = -1;
    for (const id of vocab.values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    const find = (explicit: string | undefined, fromConfig: unknown, fallbacks: string[]): number => {
      const names = explicit !== undefined ? [explicit] : [tokenName(fromConfig), ...fallbacks];
      for (const n of names) {
        if (n === undefined) continue;
        const id = this.inner.token_to_id(n);
        if (id !== undefined) return id;
        if (explicit !== undefined)
          throw new Error(`${this.source}: token ${JSON.stringify(n)} is not in the vocabulary`);
      }
      return -1;
    };
    this.bosId = find(opts.bosToken, config.bos_token, ["<s>", "<|begin_of_text|>", "<|endoftext|>"]);
    this.eosId = find(opts.eosToken, config.eos_token, ["</s>", "<|end_of_text|>", "<|endoftext|>"]);
  }

  /** Reads `tokenizer.json` (and `tokenizer_config.json` beside it when present). */
  static fromFile(path: string, opts: Omit<HfTokenizerOptions, "source"> = {}): HfTokenizer {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(readFileSync(path, "utf8"));
    } catch (e) {
      throw new Error(`${path}: cannot read tokenizer.json: ${(e as Error).message}`);
    }
    let config = opts.config;
    const cfgPath = join(dirname(path), "tokenizer_config.json");
    if (config === undefined && existsSync(cfgPath)) config = JSON.parse(readFileSync(cfgPath, "utf8"));
    return new HfTokenizer(json, { ...opts, config, source: path });
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids = this.inner.encode(text, { add_special_tokens: false }).ids;
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
    return this.inner.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false });
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
