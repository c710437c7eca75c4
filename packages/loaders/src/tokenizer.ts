import { readFileSync } from "node:fs";
import type { EncodeOptions, StreamDecoder, Tokenizer } from "@int21/model-llama";

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

/**
 * Binary min-heap of merge candidates ordered by (score descending, left position ascending), which
 * is exactly the order in which llama2.c's quadratic loop picks merges.
 */
class MergeHeap {
  private score: number[] = [];
  private left: number[] = [];
  private id: number[] = [];
  private stamp: number[] = [];
  get size(): number {
    return this.score.length;
  }
  private before(a: number, b: number): boolean {
    return this.score[a] > this.score[b] || (this.score[a] === this.score[b] && this.left[a] < this.left[b]);
  }
  private swap(a: number, b: number): void {
    for (const arr of [this.score, this.left, this.id, this.stamp]) {
      const t = arr[a];
      arr[a] = arr[b];
      arr[b] = t;
    }
  }
  push(score: number, left: number, id: number, stamp: number): void {
    this.score.push(score);
    this.left.push(left);
    this.id.push(id);
    this.stamp.push(stamp);
    let i = this.score.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  /** Removes the top entry and returns [left, id, stamp]. */
  pop(out: number[]): void {
    out[0] = this.left[0];
    out[1] = this.id[0];
    out[2] = this.stamp[0];
    const last = this.score.length - 1;
    this.swap(0, last);
    this.score.pop();
    this.left.pop();
    this.id.pop();
    this.stamp.pop();
    let i = 0;
    const n = this.score.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.before(l, m)) m = l;
      if (r < n && this.before(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }
}

/**
 * The llama2.c tokenizer (`tokenizer.bin`): SentencePiece-style BPE where merges are chosen by the
 * score of the merged piece, with a dummy-prefix space and byte-fallback tokens `<0x00>`..`<0xFF>`
 * at ids 3..258.
 *
 * File layout: `maxTokenLength: i32 | { score: f32 | len: i32 | bytes: u8[len] } × vocabSize`, little-endian.
 *
 * `encode` follows llama2.c's `encode()`:
 * ```
 * tokens = bos ? [BOS] : []
 * if text != "": tokens.push(id(" "))                      // add_dummy_prefix
 * for each UTF-8 code point c of text:                     // ≤ 4 bytes, stray continuations split
 *   tokens.push(id(c)) if c is a piece, else tokens.push(byte + 3) for each byte of c
 * repeat: merge the adjacent pair whose concatenation is a piece with the highest score
 *         (leftmost on ties, scores must exceed -1e10) until no pair merges
 * if eos: tokens.push(EOS)
 * ```
 * Merging uses a heap instead of llama2.c's quadratic rescan; the picked order is identical.
 */
export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId = 1;
  readonly eosId = 2;
  /** Whether `encode(text, { special: true })` adds BOS: llama2.c always does; a GGUF's `tokenizer.ggml.add_bos_token` may say otherwise. */
  addBos = true;
  /** Whether `encode(text, { special: true })` adds EOS (GGUF's `tokenizer.ggml.add_eos_token`). */
  addEos = false;
  /** Longest piece in bytes, from the file header. */
  readonly maxTokenLength: number;
  /** Merge score of each piece. */
  readonly scores: Float32Array;
  /** Raw bytes of each piece. */
  readonly pieces: Uint8Array[];
  private readonly keys: string[];
  private readonly lookup = new Map<string, number>();
  /** Byte value of each byte-fallback piece, else -1. */
  private readonly byteOf: Int16Array;

  private constructor(
    scores: Float32Array,
    pieces: Uint8Array[],
    maxTokenLength: number,
    source = "tokenizer",
  ) {
    this.vocabSize = pieces.length;
    this.scores = scores;
    this.pieces = pieces;
    this.maxTokenLength = maxTokenLength;
    this.keys = pieces.map(latin1);
    this.byteOf = new Int16Array(pieces.length).fill(-1);
    for (let i = 0; i < pieces.length; i++) {
      if (!this.lookup.has(this.keys[i])) this.lookup.set(this.keys[i], i);
      const m = BYTE_PIECE.exec(this.keys[i]);
      if (m) this.byteOf[i] = Number.parseInt(m[1], 16);
    }
    if (pieces.length < 259)
      throw new Error(`${source}: ${pieces.length} tokens, expected at least 259 (3 specials + 256 bytes)`);
    for (let b = 0; b < 256; b++) {
      if (this.byteOf[b + 3] !== b)
        throw new Error(
          `${source}: id ${b + 3} should be the byte-fallback piece <0x${hex2(b)}>, got ${JSON.stringify(this.keys[b + 3])}`,
        );
    }
  }

  /**
   * Parses a `tokenizer.bin` image. `source` names it in errors; `vocabSize`, when given, must match
   * the number of entries (llama2.c reads as many as the model's vocabulary).
   */
  static fromBytes(bytes: Uint8Array, source = "tokenizer.bin", vocabSize?: number): Llama2cTokenizer {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.byteLength < 4)
      throw new Error(`${source}: ${bytes.byteLength} bytes, too short for the header`);
    const maxTokenLength = dv.getInt32(0, true);
    if (maxTokenLength <= 0 || maxTokenLength > 1 << 16)
      throw new Error(`${source}: max_token_length ${maxTokenLength} is not plausible (corrupt header?)`);
    const scores: number[] = [];
    const pieces: Uint8Array[] = [];
    let off = 4;
    while (off < bytes.byteLength) {
      const i = pieces.length;
      if (off + 8 > bytes.byteLength)
        throw new Error(`${source}: truncated in the header of token ${i} at byte ${off}`);
      const score = dv.getFloat32(off, true);
      const len = dv.getInt32(off + 4, true);
      off += 8;
      if (!Number.isFinite(score)) throw new Error(`${source}: token ${i} has a non-finite score`);
      if (len < 0 || len > maxTokenLength)
        throw new Error(`${source}: token ${i} has length ${len}, outside [0, ${maxTokenLength}]`);
      if (off + len > bytes.byteLength)
        throw new Error(`${source}: truncated inside token ${i} (needs ${len} bytes at ${off})`);
      scores.push(score);
      pieces.push(bytes.slice(off, off + len));
      off += len;
    }
    if (vocabSize !== undefined && pieces.length !== vocabSize)
      throw new Error(`${source}: holds ${pieces.length} tokens but the model's vocabSize is ${vocabSize}`);
    return new Llama2cTokenizer(Float32Array.from(scores), pieces, maxTokenLength, source);
  }

  /** Reads and parses a `tokenizer.bin` file. */
  static fromFile(path: string, vocabSize?: number): Llama2cTokenizer {
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(readFileSync(path));
    } catch (e) {
      throw new Error(`${path}: cannot read the tokenizer (${(e as Error).message})`);
    }
    return Llama2cTokenizer.fromBytes(bytes, path, vocabSize);
  }

  /** Id of a piece given as raw bytes, or -1. */
  pieceId(bytes: Uint8Array): number {
    return this.lookup.get(latin1(bytes)) ?? -1;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const bytes = new TextEncoder().encode(text);
    const toks: number[] = [];
    const bos = opts.special ? this.addBos : opts.bos;
    const eos = opts.special ? this.addEos : opts.eos;
    if (bos) toks.push(this.bosId);
    if (bytes.length > 0) {
      const space = this.lookup.get(" ");
      if (space === undefined) throw new Error("tokenizer: no ' ' piece for the dummy prefix");
      toks.push(space);
    }
    let i = 0;
    while (i < bytes.length) {
      let j = i + 1;
      while (j < bytes.length && (bytes[j] & 0xc0) === 0x80 && j - i < 4) j++;
      let key = "";
      for (let k = i; k < j; k++) key += String.fromCharCode(bytes[k]);
      const id = this.lookup.get(key);
      if (id !== undefined) toks.push(id);
      else for (let k = i; k < j; k++) toks.push(bytes[k] + 3);
      i = j;
    }
    const merged = this.merge(toks);
    if (eos) merged.push(this.eosId);
    return merged;
  }

  /** Applies the best-score-first merges to `toks` (a doubly linked list over positions plus a heap). */
  private merge(toks: number[]): number[] {
    const n = toks.length;
    if (n < 2) return toks.slice();
    const id = Int32Array.from(toks);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const stamp = new Int32Array(n); // bumped whenever the token at a position changes or dies
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new MergeHeap();
    const consider = (l: number): void => {
      const r = next[l];
      if (l < 0 || r < 0) return;
      const m = this.lookup.get(this.keys[id[l]] + this.keys[id[r]]);
      if (m === undefined || !(this.scores[m] > -1e10)) return;
      // the stamp of the pair combines both ends; either changing invalidates the entry
      heap.push(this.scores[m], l, m, stamp[l] * 0x100000 + stamp[r]);
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    const top = [0, 0, 0];
    while (heap.size > 0) {
      heap.pop(top);
      const [l, m, s] = top;
      const r = next[l];
      if (id[l] < 0 || r < 0 || stamp[l] * 0x100000 + stamp[r] !== s) continue;
      if (this.keys[id[l]] + this.keys[id[r]] !== this.keys[m]) continue;
      id[l] = m;
      stamp[l]++;
      id[r] = -1;
      stamp[r]++;
      next[l] = next[r];
      if (next[r] >= 0) prev[next[r]] = l;
      consider(prev[l]);
      consider(l);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(id[i]);
    return out;
  }

  private checkId(token: number, what: string): void {
    if (!Number.isInteger(token) || token < 0 || token >= this.vocabSize)
      throw new Error(`tokenizer: ${what} ${token} is outside [0, ${this.vocabSize})`);
  }

  /** Raw bytes llama2.c prints for `token` after `prev` (byte tokens give their byte). */
  pieceBytes(prev: number, token: number): Uint8Array {
    this.checkId(token, "token");
    const b = this.byteOf[token];
    if (b >= 0) return Uint8Array.of(b);
    const p = this.pieces[token];
    if (prev === this.bosId && p[0] === 0x20) return p.subarray(1);
    return p;
  }

  decode(prev: number, token: number): string {
    return new TextDecoder().decode(this.pieceBytes(prev, token));
  }

  decodeAll(tokens: readonly number[]): string {
    const d = this.streamDecoder();
    let s = "";
    let prev = this.bosId;
    for (const t of tokens) {
      s += d.push(prev, t);
      prev = t;
    }
    return s + d.flush();
  }

  streamDecoder(): StreamDecoder {
    const td = new TextDecoder("utf-8");
    return {
      push: (prev, token) => td.decode(this.pieceBytes(prev, token), { stream: true }),
      flush: () => td.decode(),
    };
  }
}

function hex2(b: number): string {
  return b.toString(16).toUpperCase().padStart(2, "0");
}
