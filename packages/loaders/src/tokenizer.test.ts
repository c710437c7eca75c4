import { readFileSync } from "node:fs";
import { SHARED, sharedPath } from "@int21/shared-data";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Llama2cTokenizer } from "./tokenizer";

const tok512 = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
const tok32k = Llama2cTokenizer.fromFile(sharedPath(SHARED.llama2Tokenizer));

/**
 * The encoder exactly as llama2.c's encode() loops: rescan every adjacent pair each round, take the
 * highest score (first on ties). Quadratic; the reference the heap version is checked against.
 */
function referenceEncode(t: Llama2cTokenizer, text: string, bos: boolean, eos: boolean): number[] {
  const enc = new TextEncoder();
  const dec = (id: number) => Array.from(t.pieces[id]);
  const bytes = enc.encode(text);
  const toks: number[] = bos ? [1] : [];
  if (bytes.length > 0) toks.push(t.pieceId(enc.encode(" ")));
  let i = 0;
  while (i < bytes.length) {
    let j = i + 1;
    while (j < bytes.length && (bytes[j] & 0xc0) === 0x80 && j - i < 4) j++;
    const id = t.pieceId(bytes.subarray(i, j));
    if (id >= 0) toks.push(id);
    else for (let k = i; k < j; k++) toks.push(bytes[k] + 3);
    i = j;
  }
  for (;;) {
    let best = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let k = 0; k + 1 < toks.length; k++) {
      const id = t.pieceId(Uint8Array.from([...dec(toks[k]), ...dec(toks[k + 1])]));
      if (id >= 0 && t.scores[id] > best) {
        best = t.scores[id];
        bestId = id;
        bestIdx = k;
      }
    }
    if (bestIdx < 0) break;
    toks.splice(bestIdx, 2, bestId);
  }
  if (eos) toks.push(2);
  return toks;
}

describe("Llama2cTokenizer: parsing", () => {
  it("reads the 512-token stories tokenizer and the 32k Llama 2 tokenizer", () => {
    expect(tok512.vocabSize).toBe(512);
    expect(tok512.maxTokenLength).toBe(7);
    expect(tok32k.vocabSize).toBe(32000);
    expect(tok32k.maxTokenLength).toBe(27);
    expect(new TextDecoder().decode(tok512.pieces[1])).toBe("\n<s>\n");
    expect(new TextDecoder().decode(tok512.pieces[3 + 0x41])).toBe("<0x41>");
  });

  it("rejects truncated, corrupt and mismatched files with the file name", () => {
    const bytes = new Uint8Array(readFileSync(sharedPath(SHARED.tok512)));
    expect(() => Llama2cTokenizer.fromBytes(bytes.subarray(0, bytes.length - 3), "tok512.bin")).toThrow(
      /tok512.bin: truncated inside token 511/,
    );
    expect(() => Llama2cTokenizer.fromBytes(bytes.subarray(0, 2), "x.bin")).toThrow(/x.bin: 2 bytes/);
    expect(() => Llama2cTokenizer.fromBytes(bytes, "tok512.bin", 32000)).toThrow(
      /512 tokens but the model's vocabSize is 32000/,
    );
    const bad = bytes.slice();
    new DataView(bad.buffer).setInt32(8, 1000, true); // length of token 0
    expect(() => Llama2cTokenizer.fromBytes(bad, "bad.bin")).toThrow(/bad.bin: token 0 has length 1000/);
    expect(() => Llama2cTokenizer.fromBytes(bytes.subarray(0, 4 + 5 * 8), "short.bin")).toThrow(
      /at least 259/,
    );
  });
});

describe("Llama2cTokenizer: encode", () => {
  it("hand-checked ids on the 512-token tokenizer", () => {
    // " Once" 403, " upon" 407, " a" 261, " time" 378 (each a piece; merges traced by hand).
    expect(tok512.encode("Once upon a time", { bos: true })).toEqual([1, 403, 407, 261, 378]);
    // [" ","L","i","l","y"] → "il"(-31) → " L"(-48) → "ily"(-51) → " Lily"(-58)
    expect(tok512.encode("Lily")).toEqual([317]);
    // 🙂 = F0 9F 99 82 is no piece: byte fallback to byte+3
    expect(tok512.encode("héllo 🙂")).toEqual([270, 485, 306, 414, 410, 243, 162, 156, 133]);
    expect(tok512.encode("")).toEqual([]);
    expect(tok512.encode("", { bos: true, eos: true })).toEqual([1, 2]);
    expect(tok512.encode("a", { bos: true, eos: true })).toEqual([1, 261, 2]);
  });

  it("hand-checked ids on the 32k Llama 2 tokenizer (known SentencePiece ids)", () => {
    expect(tok32k.encode("Hello world", { bos: true })).toEqual([1, 15043, 3186]);
    // a newline has no piece of its own: byte fallback <0x0A> = 13
    expect(tok32k.encode("\n")).toEqual([29871, 13]);
  });

  it("equals llama2.c's quadratic merge loop (512 tokens, random strings)", () => {
    const alphabet = fc.constantFrom(
      ..."abcdefghijklmnopqrstuvwxyz  ..,'\"!?LTSOnce upon a timeé€🙂\n\t".split(""),
    );
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 60 }), fc.boolean(), fc.boolean(), (chars, bos, eos) => {
        const s = chars.join("");
        expect(tok512.encode(s, { bos, eos })).toEqual(referenceEncode(tok512, s, bos, eos));
      }),
      { seed: 42, numRuns: 200 },
    );
  });

  it("equals llama2.c's quadratic merge loop (32k tokens, random Unicode)", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 30 }), (s) => {
        expect(tok32k.encode(s, { bos: true })).toEqual(referenceEncode(tok32k, s, true, false));
      }),
      { seed: 42, numRuns: 60 },
    );
    const story = "Once upon a time, there was a little girl named Lily. She loved to play outside.";
    expect(tok32k.encode(story)).toEqual(referenceEncode(tok32k, story, false, false));
  });
});

describe("Llama2cTokenizer: decode", () => {
  it("strips the leading space after BOS and turns byte tokens into raw bytes", () => {
    expect(tok512.decode(1, 403)).toBe("Once");
    expect(tok512.decode(403, 407)).toBe(" upon");
    expect(tok512.decode(403, 3 + 0x41)).toBe("A");
    expect(() => tok512.decode(1, 512)).toThrow(/token 512 is outside \[0, 512\)/);
  });

  it("decodeAll inverts encode (text without a leading space) on both tokenizers", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 40 }), (s) => {
        fc.pre(s.length > 0 && !s.startsWith(" "));
        expect(tok512.decodeAll(tok512.encode(s))).toBe(s);
        expect(tok32k.decodeAll(tok32k.encode(s))).toBe(s);
      }),
      { seed: 42, numRuns: 100 },
    );
  });

  it("stream decoding holds back partial UTF-8 characters", () => {
    const ids = tok512.encode("a🙂b");
    const d = tok512.streamDecoder();
    const parts: string[] = [];
    let prev = 1;
    for (const t of ids) {
      parts.push(d.push(prev, t));
      prev = t;
    }
    expect(d.flush()).toBe("");
    expect(parts.join("")).toBe("a🙂b");
    expect(parts).toContain("🙂");
    expect(parts.filter((p) => p === "").length).toBe(3); // three of the four emoji bytes print nothing
  });
});
