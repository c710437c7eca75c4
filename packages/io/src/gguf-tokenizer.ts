// The tokenizer a GGUF file stores under `tokenizer.ggml.*` (llama.cpp's keys), read and validated.
// Turning it into a working tokenizer is the model package's job; this only checks and types the data.

import type { GgufValue } from "./gguf-format";

/** A tokenizer as GGUF stores it. */
export interface GgufTokenizer {
  /** `tokenizer.ggml.model`: "llama" (SentencePiece), "gpt2" (byte-level BPE), ... */
  readonly model: string;
  /** `tokenizer.ggml.pre`: the pre-tokenizer name, when present. */
  readonly pre?: string;
  /** `tokenizer.ggml.tokens`: token strings by id. */
  readonly tokens: readonly string[];
  /** `tokenizer.ggml.scores`: one per token, when present. */
  readonly scores?: Float32Array;
  /** `tokenizer.ggml.token_type`: one per token (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte). */
  readonly tokenTypes?: Int32Array;
  /** `tokenizer.ggml.merges`: BPE merges ("a b"), when present. */
  readonly merges?: readonly string[];
  readonly bosId?: number;
  readonly eosId?: number;
  readonly unknownId?: number;
  readonly paddingId?: number;
  /**
   * `tokenizer.ggml.add_bos_token`: whether a text starts with BOS. Absent when the file does not say; llama.cpp
   * then adds BOS for SentencePiece (`llama`) vocabularies only, and so does int21.
   */
  readonly addBos?: boolean;
  /** `tokenizer.ggml.add_eos_token`: whether a text ends with EOS (absent: no). */
  readonly addEos?: boolean;
  /** `tokenizer.chat_template`, when present. */
  readonly chatTemplate?: string;
}

/**
 * Reads the tokenizer from GGUF metadata (`file.metadata` of {@link openGguf} or {@link parseGguf}).
 * Checks types, that scores and token types have one entry per token, and that special ids are token ids.
 * @param file the file's path, for error messages
 * @throws Error naming the file and key when the tokenizer is missing or inconsistent
 */
export function readGgufTokenizer(
  metadata: Readonly<Record<string, GgufValue>>,
  file = "<gguf>",
): GgufTokenizer {
  const get = (key: string): GgufValue | undefined =>
    Object.hasOwn(metadata, key) ? metadata[key] : undefined;
  const fail = (key: string, why: string): never => {
    throw new Error(`gguf: ${file}: ${key} ${why}`);
  };
  const str = (key: string): string | undefined => {
    const v = get(key);
    if (v === undefined) return undefined;
    return v.type === "string" ? v.value : fail(key, `must be a string, got ${v.type}`);
  };
  const strings = (key: string): string[] | undefined => {
    const v = get(key);
    if (v === undefined) return undefined;
    return v.type === "array" && v.itemType === "string"
      ? (v.value as string[])
      : fail(key, "must be an array of strings");
  };
  const model =
    str("tokenizer.ggml.model") ?? fail("tokenizer.ggml.model", "is missing (the file has no tokenizer)");
  const tokens = strings("tokenizer.ggml.tokens") ?? fail("tokenizer.ggml.tokens", "is missing");
  const n = tokens.length;
  const perToken = <T extends Float32Array | Int32Array>(
    key: string,
    itemType: "f32" | "i32",
  ): T | undefined => {
    const v = get(key);
    if (v === undefined) return undefined;
    if (v.type !== "array" || v.itemType !== itemType) fail(key, `must be an array of ${itemType}`);
    const items = v.value as T;
    if (items.length !== n) fail(key, `has ${items.length} entries but there are ${n} tokens`);
    return items;
  };
  const id = (key: string): number | undefined => {
    const v = get(key);
    if (v === undefined) return undefined;
    if (v.type !== "u32" && v.type !== "i32") fail(key, `must be a u32, got ${v.type}`);
    const x = v.value as number;
    if (x < 0 || x >= n) fail(key, `${x} is not a token id (there are ${n} tokens)`);
    return x;
  };
  const flag = (key: string): boolean | undefined => {
    const v = get(key);
    if (v === undefined) return undefined;
    return v.type === "bool" ? v.value : fail(key, `must be a bool, got ${v.type}`);
  };
  return {
    model,
    pre: str("tokenizer.ggml.pre"),
    tokens,
    scores: perToken<Float32Array>("tokenizer.ggml.scores", "f32"),
    tokenTypes: perToken<Int32Array>("tokenizer.ggml.token_type", "i32"),
    merges: strings("tokenizer.ggml.merges"),
    bosId: id("tokenizer.ggml.bos_token_id"),
    eosId: id("tokenizer.ggml.eos_token_id"),
    unknownId: id("tokenizer.ggml.unknown_token_id"),
    paddingId: id("tokenizer.ggml.padding_token_id"),
    addBos: flag("tokenizer.ggml.add_bos_token"),
    addEos: flag("tokenizer.ggml.add_eos_token"),
    chatTemplate: str("tokenizer.chat_template"),
  };
}
