// A llama2.c tokenizer written back as the SentencePiece `tokenizer.model` it was exported from (a protobuf
// `ModelProto`: BPE, byte fallback, dummy prefix, identity normalizer), so tools that read scores from it —
// llama.cpp's convert_hf_to_gguf.py — keep llama2.c's merge order.
import type { Llama2cTokenizer } from "./tokenizer";

const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;

/** Protobuf writer: just the wire types a `ModelProto` needs. */
class ProtoWriter {
  private readonly chunks: number[] = [];
  varint(v: number): void {
    // negative int32 values are written as 10-byte two's complement, as protobuf does
    let n = BigInt.asUintN(64, BigInt(v));
    do {
      let b = Number(n & 0x7fn);
      n >>= 7n;
      if (n !== 0n) b |= 0x80;
      this.chunks.push(b);
    } while (n !== 0n);
  }
  key(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }
  int(field: number, v: number): void {
    this.key(field, 0);
    this.varint(v);
  }
  float(field: number, v: number): void {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.chunks.push(...b);
  }
  bytes(field: number, b: Uint8Array): void {
    this.key(field, 2);
    this.varint(b.length);
    for (const x of b) this.chunks.push(x);
  }
  string(field: number, s: string): void {
    this.bytes(field, new TextEncoder().encode(s));
  }
  finish(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }
}

/**
 * The SentencePiece `tokenizer.model` of a llama2.c tokenizer, laid out as Llama 2's: every piece with its
 * score (`<unk>` UNKNOWN, `<s>` / `</s>` CONTROL, `<0xXX>` BYTE, the rest NORMAL, spaces as `▁`), trainer
 * spec BPE with byte fallback (unk 0, bos 1, eos 2, no pad), normalizer `identity` with a dummy prefix and
 * whitespace kept. SentencePiece's BPE merges by these scores as llama2.c does; int21's own reader
 * (`parseSentencePieceModel` / `sentencePieceToLlama2c`) reads it back to the same pieces and scores.
 * Throws naming the id for a piece that is not UTF-8.
 */
export function llama2cSentencePieceModel(tok: Llama2cTokenizer): Uint8Array {
  const dec = new TextDecoder("utf-8", { fatal: true });
  const w = new ProtoWriter();
  tok.pieces.forEach((bytes, id) => {
    let text: string;
    let type: number;
    if (id === 0) [text, type] = ["<unk>", 2];
    else if (id === 1) [text, type] = ["<s>", 3];
    else if (id === 2) [text, type] = ["</s>", 3];
    else {
      try {
        text = dec.decode(bytes).replaceAll(" ", "▁");
      } catch {
        throw new Error(`llama2cSentencePieceModel: piece ${id} is not UTF-8 text`);
      }
      type = BYTE_PIECE.test(text) ? 6 : 1;
    }
    const p = new ProtoWriter();
    p.string(1, text);
    p.float(2, tok.scores[id]);
    p.int(3, type);
    w.bytes(1, p.finish());
  });
  const trainer = new ProtoWriter();
  trainer.int(3, 2); // model_type BPE
  trainer.int(4, tok.vocabSize);
  trainer.int(35, 1); // byte_fallback
  trainer.int(40, 0); // unk_id
  trainer.int(41, 1); // bos_id
  trainer.int(42, 2); // eos_id
  trainer.int(43, -1); // pad_id
  w.bytes(2, trainer.finish());
  const norm = new ProtoWriter();
  norm.string(1, "identity");
  norm.int(3, 1); // add_dummy_prefix
  norm.int(4, 0); // remove_extra_whitespaces
  norm.int(5, 1); // escape_whitespaces
  w.bytes(3, norm.finish());
  return w.finish();
}
