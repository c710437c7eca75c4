// Test fixture: a character tokenizer (BOS 1, EOS 2, char c → 3 + code) with the TextEncoder shape.
import type { TextEncoder } from "../dataset";

/** Each UTF-16 unit is one token `3 + code`; BOS = 1, EOS = 2. */
export function charTokenizer(): TextEncoder & { decode(ids: number[]): string } {
  return {
    encode(text, opts = {}) {
      const ids = Array.from(text, (c) => 3 + c.charCodeAt(0));
      if (opts.bos) ids.unshift(1);
      if (opts.eos) ids.push(2);
      return ids;
    },
    decode: (ids) => String.fromCharCode(...ids.filter((i) => i >= 3).map((i) => i - 3)),
  };
}
