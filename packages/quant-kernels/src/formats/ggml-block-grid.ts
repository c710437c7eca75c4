// The values one weight of a ggml block can take once the block's scales are fixed, and writing its code:
// what GPTQ needs to quantize a block format column by column after the block's scales were chosen.
import { IQ4_NL_VALUES, f16BitsToF32 } from "@int21/io";
import type { BlockFormatRecord } from "./ggml-blocks";

/**
 * The grid of weight `i` of a block at `bytes[o]` with its scales fixed: `value(c) = a·level(c) + b` for
 * codes `c < levels` (`level(c) = lut[c]` when `lut` is set, else `c`), as the format's decoder computes it.
 */
export interface BlockGrid {
  readonly levels: number;
  readonly lut?: readonly number[];
  /** Writes `a` and `b` of weight `i` to `ab[0]`, `ab[1]`. */
  affine(bytes: Uint8Array, o: number, i: number, ab: Float64Array): void;
  /** Stores code `c` for weight `i`, leaving every other weight's code and the scales unchanged. */
  setCode(bytes: Uint8Array, o: number, i: number, c: number): void;
}

const half = (b: Uint8Array, o: number): number => f16BitsToF32(b[o] | (b[o + 1] << 8));

/** Nibble `i` of 32 weights at `q`: low nibble of `q[i]` for i < 16, high nibble of `q[i − 16]` after. */
function setNibble32(b: Uint8Array, q: number, i: number, c: number): void {
  if (i < 16) b[q + i] = (b[q + i] & 0xf0) | c;
  else b[q + i - 16] = (b[q + i - 16] & 0x0f) | (c << 4);
}

function setBit(b: Uint8Array, o: number, bit: number, v: number): void {
  if (v) b[o] |= 1 << bit;
  else b[o] &= ~(1 << bit);
}

/** 5-bit code of Q5_0/Q5_1: low nibble in `qs` (at `q`), bit 4 in bit i of the u32 `qh` (at `h`). */
function set5(b: Uint8Array, h: number, q: number, i: number, c: number): void {
  setNibble32(b, q, i, c & 15);
  setBit(b, h + (i >> 3), i & 7, c >> 4);
}

/** 6-bit scale and min of sub-block j of a Q4_K / Q5_K block (12 bytes at `s`). */
function k4(b: Uint8Array, s: number, j: number): [number, number] {
  if (j < 4) return [b[s + j] & 63, b[s + j + 4] & 63];
  return [(b[s + j + 4] & 15) | ((b[s + j - 4] >> 6) << 4), (b[s + j + 4] >> 4) | ((b[s + j] >> 6) << 4)];
}

const GRIDS: Record<string, BlockGrid> = {
  Q4_0: {
    levels: 16,
    affine(b, o, _i, ab) {
      const d = half(b, o);
      ab[0] = d;
      ab[1] = -8 * d;
    },
    setCode: (b, o, i, c) => setNibble32(b, o + 2, i, c),
  },
  Q4_1: {
    levels: 16,
    affine(b, o, _i, ab) {
      ab[0] = half(b, o);
      ab[1] = half(b, o + 2);
    },
    setCode: (b, o, i, c) => setNibble32(b, o + 4, i, c),
  },
  Q5_0: {
    levels: 32,
    affine(b, o, _i, ab) {
      const d = half(b, o);
      ab[0] = d;
      ab[1] = -16 * d;
    },
    setCode: (b, o, i, c) => set5(b, o + 2, o + 6, i, c),
  },
  Q5_1: {
    levels: 32,
    affine(b, o, _i, ab) {
      ab[0] = half(b, o);
      ab[1] = half(b, o + 2);
    },
    setCode: (b, o, i, c) => set5(b, o + 4, o + 8, i, c),
  },
  Q8_0: {
    levels: 256,
    affine(b, o, _i, ab) {
      const d = half(b, o);
      ab[0] = d;
      ab[1] = -128 * d;
    },
    // code c stands for the int8 c − 128
    setCode: (b, o, i, c) => {
      b[o + 2 + i] = (c - 128) & 255;
    },
  },
  Q2_K: {
    levels: 4,
    affine(b, o, i, ab) {
      const sc = b[o + (i >> 4)];
      ab[0] = half(b, o + 80) * (sc & 15);
      ab[1] = -half(b, o + 82) * (sc >> 4);
    },
    setCode(b, o, i, c) {
      const p = o + 16 + 32 * (i >> 7) + (i & 31);
      const s = 2 * ((i >> 5) & 3);
      b[p] = (b[p] & ~(3 << s)) | (c << s);
    },
  },
  Q3_K: {
    levels: 8,
    affine(b, o, i, ab) {
      const k = i >> 4;
      const s = o + 96;
      const low = k < 8 ? b[s + k] & 15 : b[s + k - 8] >> 4;
      const high = (b[s + 8 + (k & 3)] >> (2 * (k >> 2))) & 3;
      const a = half(b, o + 108) * ((low | (high << 4)) - 32);
      ab[0] = a;
      ab[1] = -4 * a;
    },
    setCode(b, o, i, c) {
      const h = i >> 7;
      const s = (i >> 5) & 3;
      const l = i & 31;
      const p = o + 32 + 32 * h + l;
      b[p] = (b[p] & ~(3 << (2 * s))) | ((c & 3) << (2 * s));
      setBit(b, o + l, 4 * h + s, c >> 2);
    },
  },
  Q4_K: {
    levels: 16,
    affine(b, o, i, ab) {
      const [sc, m] = k4(b, o + 4, i >> 5);
      ab[0] = half(b, o) * sc;
      ab[1] = -half(b, o + 2) * m;
    },
    setCode(b, o, i, c) {
      const j = i >> 5;
      const p = o + 16 + 32 * (j >> 1) + (i & 31);
      b[p] = j & 1 ? (b[p] & 0x0f) | (c << 4) : (b[p] & 0xf0) | c;
    },
  },
  Q5_K: {
    levels: 32,
    affine(b, o, i, ab) {
      const [sc, m] = k4(b, o + 4, i >> 5);
      ab[0] = half(b, o) * sc;
      ab[1] = -half(b, o + 2) * m;
    },
    setCode(b, o, i, c) {
      const j = i >> 5;
      const l = i & 31;
      const p = o + 48 + 32 * (j >> 1) + l;
      b[p] = j & 1 ? (b[p] & 0x0f) | ((c & 15) << 4) : (b[p] & 0xf0) | (c & 15);
      setBit(b, o + 16 + l, j, c >> 4);
    },
  },
  Q6_K: {
    levels: 64,
    affine(b, o, i, ab) {
      const a = half(b, o + 208) * ((b[o + 192 + (i >> 4)] << 24) >> 24);
      ab[0] = a;
      ab[1] = -32 * a;
    },
    setCode(b, o, i, c) {
      const h = i >> 7;
      const s = (i >> 5) & 3;
      const l = i & 31;
      const p = o + 64 * h + 32 * (s & 1) + l;
      b[p] = s < 2 ? (b[p] & 0xf0) | (c & 15) : (b[p] & 0x0f) | ((c & 15) << 4);
      const q = o + 128 + 32 * h + l;
      b[q] = (b[q] & ~(3 << (2 * s))) | ((c >> 4) << (2 * s));
    },
  },
  IQ4_NL: {
    levels: 16,
    lut: IQ4_NL_VALUES,
    affine(b, o, _i, ab) {
      ab[0] = half(b, o);
      ab[1] = 0;
    },
    setCode: (b, o, i, c) => setNibble32(b, o + 2, i, c),
  },
  IQ4_XS: {
    levels: 16,
    lut: IQ4_NL_VALUES,
    affine(b, o, i, ab) {
      const j = i >> 5;
      const sh = b[o + 2] | (b[o + 3] << 8);
      const ls = ((b[o + 4 + (j >> 1)] >> (4 * (j & 1))) & 15) | (((sh >> (2 * j)) & 3) << 4);
      ab[0] = half(b, o) * (ls - 32);
      ab[1] = 0;
    },
    setCode: (b, o, i, c) => setNibble32(b, o + 8 + 16 * (i >> 5), i & 31, c),
  },
};

/** The {@link BlockGrid} of a block format (every registered ggml block format has one). */
export function blockGridOf(f: BlockFormatRecord): BlockGrid {
  const g = GRIDS[f.block.ggmlType];
  if (g === undefined) throw new Error(`quant-kernels: no per-weight grid for the block format ${f.name}`);
  return g;
}

/**
 * The code of the grid value nearest to `w` for weight `i` of the block at `bytes[o]` (ties to the lower
 * code; with `a = 0` every code gives `b`: code 0). Writes the reconstructed value to `ab[2]`.
 */
export function nearestGridCode(
  g: BlockGrid,
  bytes: Uint8Array,
  o: number,
  i: number,
  w: number,
  ab: Float64Array,
): number {
  g.affine(bytes, o, i, ab);
  const a = ab[0];
  const b = ab[1];
  let c = 0;
  if (g.lut !== undefined) {
    let best = Number.POSITIVE_INFINITY;
    for (let k = 0; k < g.levels; k++) {
      const e = Math.abs(a * g.lut[k] + b - w);
      if (e < best) {
        best = e;
        c = k;
      }
    }
    ab[2] = Math.fround(a * g.lut[c] + b);
  } else {
    if (a !== 0) c = Math.min(g.levels - 1, Math.max(0, Math.round((w - b) / a)));
    ab[2] = Math.fround(a * c + b);
  }
  return c;
}
