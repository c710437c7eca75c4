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

/** Sets the high (`high` true) or low nibble of byte `p` to `c` (< 16). */
function setNibble(b: Uint8Array, p: number, high: boolean, c: number): void {
  b[p] = high ? (b[p] & 0x0f) | (c << 4) : (b[p] & 0xf0) | c;
}

/** Nibble `i` of 32 weights at `q`: low nibble of `q[i]` for i < 16, high nibble of `q[i − 16]` after. */
function setNibble32(b: Uint8Array, q: number, i: number, c: number): void {
  setNibble(b, q + (i & 15), i >= 16, c);
}

/** Sets 2-bit field `s` (bits `2s`, `2s + 1`) of byte `p` to `c` (< 4). */
function set2(b: Uint8Array, p: number, s: number, c: number): void {
  b[p] = (b[p] & ~(3 << (2 * s))) | (c << (2 * s));
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

/** `value(c) = a·(c − zero)`. */
function setScaled(ab: Float64Array, a: number, zero: number): void {
  ab[0] = a;
  ab[1] = -zero * a;
}

/** Affine of a 32-weight block with the f16 `d` at byte 0: `value(c) = d·(c − zero)`. */
const dAffine =
  (zero: number): BlockGrid["affine"] =>
  (b, o, _i, ab) =>
    setScaled(ab, half(b, o), zero);

/** Affine of a 32-weight block with `d` and `m` f16 at bytes 0 and 2: `value(c) = d·c + m`. */
const dmAffine: BlockGrid["affine"] = (b, o, _i, ab) => {
  ab[0] = half(b, o);
  ab[1] = half(b, o + 2);
};

/** Affine of Q4_K / Q5_K: `value(c) = d·sc·c − dmin·m` with the 6-bit scale and min of weight i's sub-block. */
const k4Affine: BlockGrid["affine"] = (b, o, i, ab) => {
  const s = o + 4;
  const j = i >> 5;
  const sc = j < 4 ? b[s + j] & 63 : (b[s + j + 4] & 15) | ((b[s + j - 4] >> 6) << 4);
  const m = j < 4 ? b[s + j + 4] & 63 : (b[s + j + 4] >> 4) | ((b[s + j] >> 6) << 4);
  ab[0] = half(b, o) * sc;
  ab[1] = -half(b, o + 2) * m;
};

/** setCode of a 32-weight block of 4-bit codes packed as {@link setNibble32} at byte `q`. */
const nibbles32 =
  (q: number): BlockGrid["setCode"] =>
  (b, o, i, c) =>
    setNibble32(b, o + q, i, c);

const GRIDS: Record<string, BlockGrid> = {
  Q4_0: { levels: 16, affine: dAffine(8), setCode: nibbles32(2) },
  Q4_1: { levels: 16, affine: dmAffine, setCode: nibbles32(4) },
  Q5_0: { levels: 32, affine: dAffine(16), setCode: (b, o, i, c) => set5(b, o + 2, o + 6, i, c) },
  Q5_1: { levels: 32, affine: dmAffine, setCode: (b, o, i, c) => set5(b, o + 4, o + 8, i, c) },
  Q8_0: {
    levels: 256,
    affine: dAffine(128),
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
    setCode: (b, o, i, c) => set2(b, o + 16 + 32 * (i >> 7) + (i & 31), (i >> 5) & 3, c),
  },
  Q3_K: {
    levels: 8,
    affine(b, o, i, ab) {
      const k = i >> 4;
      const s = o + 96;
      const low = k < 8 ? b[s + k] & 15 : b[s + k - 8] >> 4;
      const high = (b[s + 8 + (k & 3)] >> (2 * (k >> 2))) & 3;
      setScaled(ab, half(b, o + 108) * ((low | (high << 4)) - 32), 4);
    },
    setCode(b, o, i, c) {
      const h = i >> 7;
      const s = (i >> 5) & 3;
      const l = i & 31;
      set2(b, o + 32 + 32 * h + l, s, c & 3);
      setBit(b, o + l, 4 * h + s, c >> 2);
    },
  },
  Q4_K: {
    levels: 16,
    affine: k4Affine,
    setCode(b, o, i, c) {
      const j = i >> 5;
      setNibble(b, o + 16 + 32 * (j >> 1) + (i & 31), (j & 1) === 1, c);
    },
  },
  Q5_K: {
    levels: 32,
    affine: k4Affine,
    setCode(b, o, i, c) {
      const j = i >> 5;
      const l = i & 31;
      setNibble(b, o + 48 + 32 * (j >> 1) + l, (j & 1) === 1, c & 15);
      setBit(b, o + 16 + l, j, c >> 4);
    },
  },
  Q6_K: {
    levels: 64,
    affine: (b, o, i, ab) => setScaled(ab, half(b, o + 208) * ((b[o + 192 + (i >> 4)] << 24) >> 24), 32),
    setCode(b, o, i, c) {
      const h = i >> 7;
      const s = (i >> 5) & 3;
      const l = i & 31;
      setNibble(b, o + 64 * h + 32 * (s & 1) + l, s >= 2, c & 15);
      set2(b, o + 128 + 32 * h + l, s, c >> 4);
    },
  },
  IQ4_NL: {
    levels: 16,
    lut: IQ4_NL_VALUES,
    affine(b, o, _i, ab) {
      ab[0] = half(b, o);
      ab[1] = 0;
    },
    setCode: nibbles32(2),
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
