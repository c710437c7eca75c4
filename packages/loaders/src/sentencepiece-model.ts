// A SentencePiece `tokenizer.model` (the protobuf `ModelProto`) read without the sentencepiece library,
// and its BPE kind turned into a llama2.c tokenizer (the same pieces, scores and merge rule).
import { readFileSync } from "node:fs";
import { ggufTokenizerToLlama2c } from "./gguf-model";
import type { Llama2cTokenizer } from "./tokenizer";

/** `SentencePiece.Type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. */
export interface SentencePiece {
  piece: string;
  score: number;
  type: number;
}

/** What int21 reads of a `ModelProto`. */
export interface SentencePieceModel {
  pieces: SentencePiece[];
  /** `TrainerSpec.model_type`: 1 unigram, 2 BPE, 3 word, 4 char (default 1). */
  modelType: number;
  byteFallback: boolean;
  /** `NormalizerSpec.name` (e.g. `identity`, `nmt_nfkc`). */
  normalizerName: string;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
}

/** Protobuf wire reader over `bytes[start, end)`; every read is bounds-checked. */
class Wire {
  constructor(
    private readonly bytes: Uint8Array,
    public pos: number,
    private readonly end: number,
    private readonly fail: (why: string) => never,
  ) {}
  get done(): boolean {
    return this.pos >= this.end;
  }
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail(`truncated varint at byte ${this.pos}`);
      const b = this.bytes[this.pos++];
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return result;
      scale *= 128;
    }
    return this.fail(`varint longer than 10 bytes at byte ${this.pos}`);
  }
  /** A length-delimited field's extent. */
  span(): [number, number] {
    const n = this.varint();
    if (n > this.end - this.pos) this.fail(`a field of ${n} bytes at byte ${this.pos} runs past its message`);
    const s = this.pos;
    this.pos += n;
    return [s, this.pos];
  }
  float(): number {
    if (this.end - this.pos < 4) this.fail(`truncated float at byte ${this.pos}`);
    const v = new DataView(this.bytes.buffer, this.bytes.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }
  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.advance(8);
    else if (wireType === 2) this.span();
    else if (wireType === 5) this.advance(4);
    else this.fail(`unsupported protobuf wire type ${wireType} at byte ${this.pos}`);
  }
  private advance(n: number): void {
    if (this.end - this.pos < n) this.fail(`truncated field at byte ${this.pos}`);
    this.pos += n;
  }
}

/**
 * Parses a SentencePiece `tokenizer.model`: `ModelProto { repeated SentencePiece pieces = 1 {piece = 1,
 * score = 2, type = 3}; TrainerSpec trainer_spec = 2 {model_type = 3, byte_fallback = 35}; NormalizerSpec
 * normalizer_spec = 3 {name = 1, add_dummy_prefix = 3, remove_extra_whitespaces = 4} }`; other fields are
 * skipped. Linear in the file's size.
 * @param source the file's name, at the start of every message
 */
export function parseSentencePieceModel(bytes: Uint8Array, source = "tokenizer.model"): SentencePieceModel {
  const fail = (why: string): never => {
    throw new Error(`${source}: not a valid SentencePiece model: ${why}`);
  };
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const out: SentencePieceModel = {
    pieces: [],
    modelType: 1,
    byteFallback: false,
    normalizerName: "",
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
  };
  const top = new Wire(bytes, 0, bytes.length, fail);
  while (!top.done) {
    const key = top.varint();
    const field = Math.floor(key / 8);
    const wt = key % 8;
    if (wt !== 2 || (field !== 1 && field !== 2 && field !== 3)) {
      top.skip(wt);
      continue;
    }
    const [s, e] = top.span();
    const m = new Wire(bytes, s, e, fail);
    if (field === 1) {
      const p: SentencePiece = { piece: "", score: 0, type: 1 };
      while (!m.done) {
        const k = m.varint();
        const f = Math.floor(k / 8);
        if (f === 1 && k % 8 === 2) {
          const [a, b] = m.span();
          try {
            p.piece = utf8.decode(bytes.subarray(a, b));
          } catch {
            fail(`piece ${out.pieces.length} is not valid UTF-8`);
          }
        } else if (f === 2 && k % 8 === 5) p.score = m.float();
        else if (f === 3 && k % 8 === 0) p.type = m.varint();
        else m.skip(k % 8);
      }
      if (!Number.isFinite(p.score)) fail(`piece ${out.pieces.length} has a non-finite score`);
      if (p.type < 1 || p.type > 6) fail(`piece ${out.pieces.length} has type ${p.type} (expected 1–6)`);
      out.pieces.push(p);
    } else if (field === 2) {
      while (!m.done) {
        const k = m.varint();
        const f = Math.floor(k / 8);
        if (f === 3 && k % 8 === 0) out.modelType = m.varint();
        else if (f === 35 && k % 8 === 0) out.byteFallback = m.varint() !== 0;
        else m.skip(k % 8);
      }
    } else {
      while (!m.done) {
        const k = m.varint();
        const f = Math.floor(k / 8);
        if (f === 1 && k % 8 === 2) {
          const [a, b] = m.span();
          out.normalizerName = new TextDecoder().decode(bytes.subarray(a, b));
        } else if (f === 3 && k % 8 === 0) out.addDummyPrefix = m.varint() !== 0;
        else if (f === 4 && k % 8 === 0) out.removeExtraWhitespaces = m.varint() !== 0;
        else m.skip(k % 8);
      }
    }
  }
  if (out.pieces.length === 0) fail("it holds no pieces");
  return out;
}

/**
 * A {@link Llama2cTokenizer} from a SentencePiece BPE model laid out as Llama 2's (`<unk>`, `<s>`, `</s>`,
 * then the 256 byte pieces, byte fallback, a dummy prefix, whitespace kept, identity normalizer): the
 * same pieces and scores llama2.c's `tokenizer.bin` is exported from, so the same ids. Other models
 * (Unigram, NFKC-normalizing, whitespace-collapsing) are refused by name.
 */
export function sentencePieceToLlama2c(
  model: SentencePieceModel,
  source = "tokenizer.model",
): Llama2cTokenizer {
  const refuse = (why: string): never => {
    throw new Error(
      `${source}: ${why}; int21 reads Llama-2-style SentencePiece BPE models only: use the model's tokenizer.json`,
    );
  };
  if (model.modelType !== 2)
    refuse(
      `a ${["", "Unigram", "BPE", "word", "char"][model.modelType] ?? `type ${model.modelType}`} SentencePiece model`,
    );
  if (!model.byteFallback) refuse("a SentencePiece model without byte fallback");
  if (!model.addDummyPrefix) refuse("a SentencePiece model without the dummy-prefix space");
  if (model.removeExtraWhitespaces) refuse("a SentencePiece model that collapses whitespace");
  if (model.normalizerName !== "" && model.normalizerName !== "identity")
    refuse(`a SentencePiece model with the ${JSON.stringify(model.normalizerName)} normalizer`);
  try {
    return ggufTokenizerToLlama2c(
      {
        model: "llama",
        tokens: model.pieces.map((p) => p.piece),
        scores: Float32Array.from(model.pieces, (p) => p.score),
        tokenTypes: Int32Array.from(model.pieces, (p) => p.type),
        bosId: 1,
        eosId: 2,
      },
      source,
    );
  } catch (e) {
    return refuse((e as Error).message.replace(/^gguf: /, ""));
  }
}

/** Reads a SentencePiece `tokenizer.model` file as a {@link Llama2cTokenizer} ({@link sentencePieceToLlama2c}). */
export function readSentencePieceTokenizer(path: string): Llama2cTokenizer {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new Error(`${path}: cannot read tokenizer.model: ${(e as Error).message}`);
  }
  return sentencePieceToLlama2c(parseSentencePieceModel(bytes, path), path);
}
