// The tokenizer interface the runner speaks (generate, eval); the implementations (llama2.c
// `tokenizer.bin`, Hugging Face `tokenizer.json`, GGUF vocabularies) are in @int21/loaders.

/** Options of {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /** Prepend the BOS id (default false). */
  bos?: boolean;
  /** Append the EOS id (default false). */
  eos?: boolean;
  /**
   * Add the special tokens the tokenizer's own configuration adds (Hugging Face's
   * `add_special_tokens=True`, GGUF's `tokenizer.ggml.add_bos_token`; llama2.c: BOS) instead of `bos` / `eos`.
   */
  special?: boolean;
}

/**
 * Turns the tokens of a generation back into text as they arrive. Pieces that end inside a
 * multi-byte UTF-8 character (byte-fallback tokens) are held back until the character is complete.
 */
export interface StreamDecoder {
  /** Text made printable by `token`, which follows `prev` (may be ""). */
  push(prev: number, token: number): string;
  /** Whatever is still held back (an incomplete UTF-8 tail decodes to U+FFFD). */
  flush(): string;
}

/**
 * The one tokenizer interface the runner speaks: llama2.c `tokenizer.bin` (`Llama2cTokenizer`)
 * and Hugging Face `tokenizer.json` (`HfTokenizer`), both in `@int21/loaders`.
 */
export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  /**
   * Whether the tokenizer's configuration starts a text with BOS (`encode(text, { special: true })`
   * does): Hugging Face `add_bos_token` / post-processor, GGUF `tokenizer.ggml.add_bos_token`, llama2.c
   * always. Absent means true (llama2.c's behaviour).
   */
  readonly addBos?: boolean;
  /** Whether the tokenizer's configuration ends a text with EOS. Absent means false. */
  readonly addEos?: boolean;
  /** The tokenizer's Jinja chat template, when it has one. */
  readonly chatTemplate?: string;
  /** Token ids of `text`, with BOS / EOS when asked. */
  encode(text: string, opts?: EncodeOptions): number[];
  /**
   * The text of one token as llama2.c prints it after `prev`: the leading space is dropped right after
   * BOS. A byte-fallback token that is only part of a UTF-8 character gives U+FFFD here; use
   * {@link Tokenizer.decodeAll} or a {@link StreamDecoder} for exact text.
   */
  decode(prev: number, token: number): string;
  /** Exact text of a token sequence (as if streamed from BOS), byte-fallback tokens assembled into UTF-8. */
  decodeAll(tokens: readonly number[]): string;
  /** A fresh {@link StreamDecoder}. */
  streamDecoder(): StreamDecoder;
}
