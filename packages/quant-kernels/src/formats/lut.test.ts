import { packMatrix } from "@int21/bitpack";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dequantizeRows } from "../dequantize-rows";
import { isF16Exact } from "../f16";
import { createQuantizedLinear, packQuantizedLinear } from "../quantized-linear";
import { createReferenceBackend } from "../reference/backend";
import { codeAt, weightAt } from "../reference/weight-at";
import { gptqQuantize } from "../gptq";
import { createHessian } from "../hessian";
import { relativeOutputError } from "../output-error";
import { rtnQuantize } from "../rtn";
import { gaussian, makeRng, randomUniform, randomWeights } from "../testing/random";
import type { QuantizedLinear } from "../types";
import { type WasmBackend, createWasmBackend } from "../wasm/wasm-backend";
import type { FormatRecord } from "./format";
import { IQ4_NL_CODEBOOK, IQ4_NL_FORMAT } from "./iq4-nl";
import { defineLutFormat } from "./lut";
import { NF4_CODEBOOK, NF4_FORMATS } from "./nf4";
import { FIRST_USER_FORMAT_ID, FORMATS, getFormat, registerFormat } from "./registry";

const ref = createReferenceBackend();

/** A random layer of `f` with random codes and random (for lut: signed) scales. */
function randomLayer(
  f: FormatRecord,
  N: number,
  K: number,
  seed: number,
  gIdx?: Int32Array,
): QuantizedLinear {
  const rng = makeRng(seed);
  const nG = f.groupSize === -1 ? 1 : Math.ceil(K / f.groupSize);
  const codes = Uint8Array.from({ length: N * K }, () => Math.floor(rng() * (f.qmax + 1)));
  const scales = Float32Array.from({ length: N * nG }, () => {
    const s = Math.fround((0.01 + rng()) * (rng() < 0.3 ? -1 : 1));
    return f.scaleDtype === "f16" ? f.params(s * f.codebook![0], s * f.codebook![0]).scale : s;
  });
  return packQuantizedLinear(f, N, K, codes, scales, undefined, gIdx);
}

/** The independent oracle: scale · codebook[code], read back from the codes the layer was packed from. */
function oracle(q: QuantizedLinear, f: FormatRecord): Float32Array {
  const N = q.outFeatures;
  const K = q.inFeatures;
  const nG = q.scales.length / N;
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const code = codeAt(q, n, k);
      const g = q.gIdx ? q.gIdx[k] : f.groupSize === -1 ? 0 : Math.floor(k / f.groupSize);
      out[n * K + k] = q.scales[n * nG + g] * f.codebook![code];
    }
  }
  return out;
}

describe("codebook (lut) formats: NF4 and IQ4_NL", () => {
  it("are registered with decode 'lut', their codebooks and storage cost", () => {
    const nf4 = getFormat("nf4-g64-f32");
    expect(nf4.decode).toBe("lut");
    expect(Array.from(nf4.codebook!)).toEqual(NF4_CODEBOOK.map(Math.fround));
    expect(nf4.bitsPerWeight).toBe(4.5);
    expect(nf4.layout).toBe("q: u32[8] | scale: f32 → 4.5 bpw, w = scale·codebook[q]");
    expect(getFormat("nf4-g128-f16").bitsPerWeight).toBe(4.125);
    expect(getFormat(5021)).toBe(getFormat("nf4-g64-f16"));
    const iq = getFormat("iq4_nl");
    expect(iq).toBe(IQ4_NL_FORMAT);
    expect(iq.id).toBe(5111);
    expect(Array.from(iq.codebook!)).toEqual(IQ4_NL_CODEBOOK);
    // ggml's block_iq4_nl: 2-byte f16 d + 16 bytes of nibbles per 32 weights = 18 bytes.
    expect(iq.bytesPerGroup).toBe(18);
    expect(iq.bitsPerWeight).toBe(4.5);
    for (const f of FORMATS) if (f.decode === "affine") expect(f.codebook).toBeUndefined();
  });

  it("NF4 round-to-nearest: scale = absmax, each code the nearest NF4 value (golden)", () => {
    const f = getFormat("nf4-g64-f32");
    const w = new Float32Array([-2, -1, 0, 0.5, 2, 1.45]);
    const codes = new Uint8Array(w.length);
    const p = f.quantizeGroup(w, 0, w.length, 1, codes, 0);
    expect(p).toEqual({ scale: 2, zero: 0 });
    // w/scale = −1, −0.5, 0, 0.25, 1, 0.725 → NF4 entries −1, −0.5251, 0, 0.2461, 1, 0.7230
    expect(Array.from(codes)).toEqual([0, 2, 7, 10, 15, 14]);
    const out = new Float32Array(w.length);
    f.dequantizeGroup(codes, 0, w.length, 1, p, out, 0);
    expect(Array.from(out)).toEqual(Array.from(codes, (c) => Math.fround(2 * NF4_CODEBOOK[c])));
    // A negative absmax value keeps a positive scale (NF4 is ±1 at its ends).
    expect(f.params(-3, 1).scale).toBe(3);
  });

  it("IQ4_NL round-to-nearest: d = m / −127 as ggml's first guess, f16 d (golden)", () => {
    const f = IQ4_NL_FORMAT;
    const w = new Float32Array([1.27, -0.5, 0, 0.1]);
    const codes = new Uint8Array(4);
    const p = f.quantizeGroup(w, 0, 4, 1, codes, 0);
    expect(p.scale).toBeLessThan(0); // m = 1.27 > 0 lands on the −127 end
    expect(isF16Exact(p.scale)).toBe(true);
    expect(Math.abs(p.scale)).toBeGreaterThanOrEqual(0.01);
    expect(Math.abs(p.scale)).toBeLessThan(0.01 * (1 + 2 ** -10));
    // w/d ≈ −127, 50, 0, −10 → kvalues −127 (0), 53 (12), 1 (8), −10 (7)
    expect(Array.from(codes)).toEqual([0, 12, 8, 7]);
    // A block whose largest magnitude is negative gets a positive d.
    expect(f.params(-2.54, 1).scale).toBeGreaterThan(0);
    // All-zero block: the smallest scale, reconstruction within 2^-24·1.
    const z = new Uint8Array(3);
    const pz = f.quantizeGroup(new Float32Array(3), 0, 3, 1, z, 0);
    expect(pz.scale).toBe(2 ** -24);
    expect(Math.abs(f.value(z[0], pz.scale, 0))).toBeLessThanOrEqual(2 ** -24);
  });

  it("quantizeRow = quantizeGroup per contiguous group, for lut and affine formats (property)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(
          ...NF4_FORMATS,
          IQ4_NL_FORMAT,
          getFormat("int4-g32-asym-f16"),
          getFormat("int3-pc-sym-f32"),
        ),
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 0, max: 1e6 }),
        (f, K, seed) => {
          const w = randomWeights(K + 3, seed);
          const nG = f.groupSize === -1 ? 1 : Math.ceil(K / f.groupSize);
          const codes = new Uint8Array(K + 1);
          const scales = new Float32Array(nG + 2);
          const zeros = new Float32Array(nG + 2);
          f.quantizeRow(w, 3, K, codes, 1, scales, zeros, 2);
          const G = f.groupSize === -1 ? K : f.groupSize;
          for (let g = 0; g < nG; g++) {
            const c = new Uint8Array(K);
            const len = Math.min(G, K - g * G);
            const p = f.quantizeGroup(w, 3 + g * G, len, 1, c, 0);
            expect(scales[2 + g]).toBe(p.scale);
            expect(zeros[2 + g]).toBe(p.zero);
            expect(Array.from(codes.subarray(1 + g * G, 1 + g * G + len))).toEqual(
              Array.from(c.subarray(0, len)),
            );
          }
        },
      ),
      { seed: 7, numRuns: 80 },
    );
  });

  it("reference dequantize, weightAt, dequantizeRows, qmatmul and qmatmulT compute scale · codebook[q]", () => {
    for (const f of [...NF4_FORMATS, IQ4_NL_FORMAT]) {
      const N = 9;
      const K = 150;
      const gIdx = Int32Array.from({ length: K }, (_, k) => (k * 7) % Math.ceil(K / f.groupSize));
      for (const gi of [undefined, gIdx]) {
        const q = randomLayer(f, N, K, f.id, gi);
        const want = oracle(q, f);
        const W = new Float32Array(N * K).fill(Number.NaN);
        ref.dequantize(q, W);
        expect(W).toEqual(want);
        expect(weightAt(q, 4, 77)).toBe(want[4 * K + 77]);
        const rowsOut = new Float32Array(2 * K);
        dequantizeRows(q, [8, 3], rowsOut);
        expect(rowsOut).toEqual(
          Float32Array.from([...want.subarray(8 * K, 9 * K), ...want.subarray(3 * K, 4 * K)]),
        );
        const x = randomUniform(3 * K, 5);
        const y = new Float32Array(3 * N);
        ref.qmatmul(x, 3, q, y);
        const g = randomUniform(3 * N, 6);
        const dx = new Float32Array(3 * K);
        ref.qmatmulT(g, 3, q, dx);
        for (let r = 0; r < 3; r++) {
          for (let n = 0; n < N; n++) {
            let s = 0;
            for (let k = 0; k < K; k++) s += x[r * K + k] * want[n * K + k];
            expect(y[r * N + n]).toBe(Math.fround(s));
          }
          for (let k = 0; k < K; k++) {
            let s = 0;
            for (let n = 0; n < N; n++) s += g[r * N + n] * want[n * K + k];
            expect(dx[r * K + k]).toBe(Math.fround(s));
          }
        }
      }
    }
  });

  it("createQuantizedLinear: lut zeros are 0 (filled when omitted), scales non-zero of either sign", () => {
    const f = getFormat("nf4-g32-f32");
    const qweight = packMatrix(new Uint8Array(2 * 32), 2, 32, 4);
    const q = createQuantizedLinear({
      format: f,
      outFeatures: 2,
      inFeatures: 32,
      qweight,
      scales: new Float32Array([1, -2]),
    });
    expect(Array.from(q.zeros)).toEqual([0, 0]);
    const base = { format: f, outFeatures: 2, inFeatures: 32, qweight };
    expect(() => createQuantizedLinear({ ...base, scales: new Float32Array([1, 0]) })).toThrow(
      /scales\[1\] \(row 1, group 0\) = 0 is not finite and non-zero/,
    );
    expect(() =>
      createQuantizedLinear({ ...base, scales: new Float32Array([1, 1]), zeros: new Float32Array([0, 8]) }),
    ).toThrow(/zeros\[1\] = 8, but the codebook format nf4-g32-f32 has zero 0/);
    expect(() =>
      createQuantizedLinear({ ...base, format: "iq4_nl", scales: new Float32Array([1, 0.1]) }),
    ).toThrow(/scales\[1\] = 0\.1\d* is not an f16 value \(format iq4_nl stores f16\)/);
  });

  it("the quantize → dequantize bound holds for RTN layers through rtnQuantize", () => {
    for (const f of [...NF4_FORMATS, IQ4_NL_FORMAT]) {
      const N = 5;
      const K = 200;
      const W = randomWeights(N * K, f.id);
      const q = rtnQuantize(W, N, K, f);
      const out = new Float32Array(N * K);
      ref.dequantize(q, out);
      const G = f.groupSize;
      for (let n = 0; n < N; n++) {
        for (let g0 = 0; g0 < K; g0 += G) {
          const grp = W.subarray(n * K + g0, n * K + Math.min(K, g0 + G));
          const bound = f.errorBound(Math.min(...grp), Math.max(...grp));
          for (let i = 0; i < grp.length; i++)
            expect(Math.abs(out[n * K + g0 + i] - grp[i])).toBeLessThanOrEqual(bound);
        }
      }
    }
  });

  it("GPTQ quantizes to codebook formats through the record and beats RTN on output error", () => {
    const N = 48;
    const K = 256;
    const rows = 400;
    const rng = makeRng(21);
    // Correlated activations (rank 6 plus noise, uneven column scales): where GPTQ's updates pay off.
    const M = Float64Array.from({ length: 6 * K }, () => gaussian(rng));
    const colScale = Float64Array.from({ length: K }, () => 0.2 + 5 * rng() ** 3);
    const X = new Float32Array(rows * K);
    for (let r = 0; r < rows; r++) {
      const z = Array.from({ length: 6 }, () => gaussian(rng));
      for (let k = 0; k < K; k++) {
        let v = 0.1 * gaussian(rng);
        for (let i = 0; i < 6; i++) v += z[i] * M[i * K + k];
        X[r * K + k] = v * colScale[k];
      }
    }
    const h = createHessian(K);
    h.add(X, rows);
    const W = randomWeights(N * K, 5, 0.05, 0.02);
    for (const name of ["nf4-g64-f32", "nf4-g128-f16", "iq4_nl"]) {
      const g = gptqQuantize(W, N, K, name, h);
      expect(g.format.decode).toBe("lut");
      const rtn = relativeOutputError(X, rows, W, rtnQuantize(W, N, K, name));
      const err = relativeOutputError(X, rows, W, g);
      expect(err, `${name}: GPTQ ${err} vs RTN ${rtn}`).toBeLessThan(0.9 * rtn);
    }
  });

  it("defineLutFormat refuses a bad codebook, naming the format", () => {
    const spec = { id: 20_000, name: "bad", bits: 2, groupSize: 32, scaleDtype: "f32" } as const;
    expect(() => defineLutFormat({ ...spec, codebook: [0, 1, 2] })).toThrow(
      /bad: codebook must hold 2\^2 = 4 values, has 3/,
    );
    expect(() => defineLutFormat({ ...spec, codebook: [0, 2, 1, 3] })).toThrow(
      /bad: codebook must be strictly ascending/,
    );
    expect(() => defineLutFormat({ ...spec, codebook: [0, 1, 2, Number.NaN] })).toThrow(/bad: codebook\[3\]/);
    expect(() => defineLutFormat({ ...spec, groupSize: 48 as 32, codebook: [0, 1, 2, 3] })).toThrow(
      /bad: groupSize/,
    );
  });
});

describe("registerFormat: a user codebook format", () => {
  const user = defineLutFormat({
    id: FIRST_USER_FORMAT_ID + 7,
    name: "user-lut2-g32-f32",
    bits: 2,
    groupSize: 32,
    scaleDtype: "f32",
    codebook: [-1, -0.25, 0.4, 1],
  });
  registerFormat(user);
  let wasm: WasmBackend;
  beforeAll(async () => {
    wasm = await createWasmBackend({ threads: 1 });
  });
  afterAll(() => wasm.dispose());

  it("is found by name and id and listed in FORMATS", () => {
    expect(getFormat("user-lut2-g32-f32")).toBe(user);
    expect(getFormat(FIRST_USER_FORMAT_ID + 7)).toBe(user);
    expect(FORMATS).toContain(user);
  });

  it("refuses taken ids and names, reserved ids and incomplete records", () => {
    const make = (id: number, name: string) =>
      defineLutFormat({ id, name, bits: 2, groupSize: 32, scaleDtype: "f32", codebook: [0, 1, 2, 3] });
    expect(() => registerFormat(make(FIRST_USER_FORMAT_ID + 7, "other"))).toThrow(
      /other: id 10007 is taken by user-lut2-g32-f32/,
    );
    expect(() => registerFormat(make(FIRST_USER_FORMAT_ID + 8, "nf4-g64-f32"))).toThrow(
      /a format named nf4-g64-f32 is registered already \(id 5020\)/,
    );
    expect(() => registerFormat(make(431, "mine"))).toThrow(/mine: id must be an integer ≥ 10000/);
    const { dequantizeRow: _, ...partial } = make(FIRST_USER_FORMAT_ID + 9, "partial");
    expect(() => registerFormat(partial as FormatRecord)).toThrow(
      /partial: the record has no dequantizeRow\(\)/,
    );
    expect(() => getFormat("partial")).toThrow(/unknown format/);
  });

  it("the wasm backend runs it natively (table decode), bit for bit with the reference on dequantize", () => {
    for (const k of ["dequantize", "qmatmul", "qmatmulT"] as const) expect(wasm.supports(k, user)).toBe(true);
    const N = 6;
    const K = 70;
    const q = rtnQuantize(randomWeights(N * K, 3), N, K, user);
    const want = new Float32Array(N * K);
    ref.dequantize(q, want);
    const got = new Float32Array(N * K);
    wasm.dequantize(q, got);
    expect(got).toEqual(want);
    // It is the codebook result, not the affine one of the same codes.
    for (let i = 0; i < N * K; i++) {
      const p = Math.floor(i / K) * Math.ceil(K / 32) + Math.floor((i % K) / 32);
      expect(want[i]).toBe(Math.fround(q.scales[p] * user.codebook![codeOf(q, i)]));
    }
    expect(wasm.isResident(q)).toBe(true);
  });
});

describe("wasm table decode: codebooks of 4, 8, 16 (registers) and 256 entries (memory)", () => {
  const formats = ([2, 3, 4, 8] as const).map((bits, i) =>
    registerFormat(
      defineLutFormat({
        id: FIRST_USER_FORMAT_ID + 30 + i,
        name: `user-lut${bits}-g64-f16`,
        bits,
        groupSize: 64,
        scaleDtype: "f16",
        // Uneven, asymmetric levels: x³-spaced on [−1, 0.8].
        codebook: Array.from({ length: 2 ** bits }, (_, j) => {
          const t = -1 + (1.8 * j) / (2 ** bits - 1);
          return t * t * t + 0.01 * j;
        }),
      }),
    ),
  );
  let wasm: WasmBackend;
  beforeAll(async () => {
    wasm = await createWasmBackend({ threads: 1 });
  });
  afterAll(() => wasm.dispose());

  it.each(formats.map((f) => [f.name, f] as const))(
    "%s: wasm = reference, bit for bit on dequantize",
    (_, f) => {
      const N = 7;
      const K = 200;
      for (const gIdx of [undefined, Int32Array.from({ length: K }, (_, k) => (k * 5) % 4)]) {
        const q = randomLayer(f, N, K, f.id, gIdx);
        const want = oracle(q, f);
        const got = new Float32Array(N * K);
        wasm.dequantize(q, got);
        expect(got).toEqual(want);
        for (const rows of [1, 5]) {
          const x = randomUniform(rows * K, rows);
          const y0 = new Float32Array(rows * N);
          const y1 = new Float32Array(rows * N);
          ref.qmatmul(x, rows, q, y0);
          wasm.qmatmul(x, rows, q, y1);
          for (let i = 0; i < y0.length; i++)
            expect(Math.abs(y1[i] - y0[i])).toBeLessThan(1e-4 * (1 + Math.abs(y0[i])));
        }
      }
    },
  );
});

describe("registerFormat: a user decode kind no backend has a kernel for", () => {
  // w = scale · (q − 1.5): four half-integer levels ±0.5, ±1.5 — a decode only its record implements.
  const base = getFormat("int2-g32-sym-f32");
  const halfStep = (q: number, scale: number) => Math.fround(scale * (q - 1.5));
  const custom: FormatRecord = {
    ...base,
    id: FIRST_USER_FORMAT_ID + 20,
    name: "user-halfstep2-g32-f32",
    decode: "halfstep",
    value: halfStep,
    dequantizeRow(q, n, out, outOff) {
      const K = q.inFeatures;
      const nG = q.scales.length / q.outFeatures;
      for (let k = 0; k < K; k++)
        out[outOff + k] = halfStep(codeOf(q, n * K + k), q.scales[n * nG + (k >> 5)]);
    },
  };
  registerFormat(custom);
  let wasm: WasmBackend;
  beforeAll(async () => {
    wasm = await createWasmBackend({ threads: 1 });
  });
  afterAll(() => wasm.dispose());

  it("the wasm backend does not claim it and falls back to the reference, which runs the record's decode", () => {
    for (const k of ["dequantize", "qmatmul", "qmatmulT"] as const) {
      expect(wasm.supports(k, custom)).toBe(false);
      expect(wasm.supports(k, base)).toBe(true);
    }
    const N = 5;
    const K = 70;
    const nG = Math.ceil(K / 32);
    const rng = makeRng(9);
    const codes = Uint8Array.from({ length: N * K }, () => Math.floor(rng() * 4));
    const scales = Float32Array.from({ length: N * nG }, () => Math.fround(0.1 + rng()));
    const q = packQuantizedLinear(custom, N, K, codes, scales, undefined);
    const want = Float32Array.from(codes, (c, i) =>
      halfStep(c, scales[Math.floor(i / K) * nG + ((i % K) >> 5)]),
    );
    const got = new Float32Array(N * K);
    wasm.dequantize(q, got);
    expect(got).toEqual(want);
    expect(weightAt(q, 2, 40)).toBe(want[2 * K + 40]);
    const x = randomUniform(2 * K, 4);
    const y0 = new Float32Array(2 * N);
    const y1 = new Float32Array(2 * N);
    ref.qmatmul(x, 2, q, y0);
    wasm.qmatmul(x, 2, q, y1);
    expect(y1).toEqual(y0);
    const g = randomUniform(2 * N, 5);
    const d0 = new Float32Array(2 * K);
    const d1 = new Float32Array(2 * K);
    ref.qmatmulT(g, 2, q, d0);
    wasm.qmatmulT(g, 2, q, d1);
    expect(d1).toEqual(d0);
    for (let r = 0; r < 2; r++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[r * K + k] * want[k];
      expect(y0[r * N]).toBe(Math.fround(s));
    }
    // Nothing went resident: the wasm kernels never saw the layer.
    expect(wasm.isResident(q)).toBe(false);
  });
});

function codeOf(q: QuantizedLinear, i: number): number {
  const K = q.inFeatures;
  const n = Math.floor(i / K);
  const k = i % K;
  const bit = k * q.qweight.bits;
  return (
    (q.qweight.words[n * q.qweight.wordsPerRow + (bit >>> 5)] >>> (bit & 31)) & ((1 << q.qweight.bits) - 1)
  );
}
