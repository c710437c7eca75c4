import { GGML_TYPES, parseGguf, serializeGguf } from "@int21/io";
import { describe, expect, it } from "vitest";
import { ggmlBlocksOf, quantizedFromGgmlBlocks } from "../ggml-blocks-linear";
import { bitsPerWeight, bytes, createQuantizedLinear, groupCount } from "../quantized-linear";
import { dequantizeRows } from "../dequantize-rows";
import { createReferenceBackend } from "../reference/backend";
import { weightAt } from "../reference/weight-at";
import { rtnQuantize } from "../rtn";
import { randomWeights } from "../testing/random";
import fixtures from "./__fixtures__/ggml-blocks.json";
import {
  type BlockFormatRecord,
  GGML_BLOCK_FORMATS,
  blockFormatOfGgmlType,
  isBlockFormat,
} from "./ggml-blocks";
import { FORMATS, getFormat } from "./registry";

// __fixtures__/ggml-blocks.json: for each type, 4 rows of seeded data (x, float32), the bytes llama.cpp's
// quantizer writes for them (q) and gguf-py's dequantization of those bytes (y), all base64. Made with
// /tmp/peervenv/bin/python (numpy, gguf 0.x from llama.cpp's gguf-py) and llama.cpp's libggml-base.so (Feb 2025
// build); the printed JSON is stored as biome formats it:
//
//   import base64, ctypes, json
//   import numpy as np
//   from gguf import GGMLQuantizationType as T, quants
//   lib = ctypes.CDLL("/tmp/llama.cpp/build/bin/libggml-base.so")
//   lib.ggml_quantize_chunk.restype = ctypes.c_size_t
//   lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
//                                       ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
//   class InitParams(ctypes.Structure):
//       _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]
//   lib.ggml_init.restype = ctypes.c_void_p
//   lib.ggml_init(InitParams(1 << 20, None, False))  # fills ggml's f16 → f32 table the quantizers read
//   b64 = lambda a: base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()
//   out = {}
//   for name in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]:
//       t = T[name]
//       bs, bb = quants.GGML_QUANT_SIZES[t]
//       K = 2 * bs if bs == 32 else bs
//       rng = np.random.default_rng(1234 + t.value)
//       rows = [
//           rng.normal(0, 0.02, K),                                        # weight-like
//           rng.normal(0, 1, K) * np.exp(rng.normal(0, 1, K)),             # heavy tails
//           np.where(np.arange(K) % 64 < 16, 0, rng.uniform(0.1, 3, K)),   # zero runs, positive only
//           np.where(np.arange(K) % 32 < 16, -2.5, rng.normal(1, 0.3, K)), # constant runs
//       ]
//       x = np.stack(rows).astype(np.float32)
//       q = np.zeros(len(rows) * K // bs * bb, np.uint8)
//       # ggml_quantize_chunk without an imatrix: the quantizer llama-quantize runs for the type
//       n = lib.ggml_quantize_chunk(t.value, x.ctypes.data, q.ctypes.data, 0, len(rows), K, None)
//       assert n == q.size
//       q = q.reshape(len(rows), -1)
//       try:  # gguf-py's own quantizer (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) must write the same bytes
//           gq = quants.quantize(x, t)
//           assert np.array_equal(gq, q), name
//           py = True
//       except NotImplementedError:
//           py = False
//       y = quants.dequantize(q, t).astype(np.float32)
//       out[name.lower()] = {"rows": len(rows), "K": K, "ggufQuantize": py, "x": b64(x), "q": b64(q), "y": b64(y)}
//   print(json.dumps(out, indent=1))

interface Fixture {
  rows: number;
  K: number;
  ggufQuantize: boolean;
  x: string;
  q: string;
  y: string;
}

const FIX = fixtures as Record<string, Fixture>;

function b64(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, "base64"));
}
function f32(s: string): Float32Array {
  const b = b64(s);
  return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
}

/** The fixture key of a record: ggml's lower-case type name. */
const fixtureKey = (f: BlockFormatRecord): string => f.block.ggmlType.toLowerCase();

const EXPECTED: Record<string, [number, string, number]> = {
  q4_0: [6002, "Q4_0", 4.5],
  q4_1: [6003, "Q4_1", 5],
  q5_0: [6006, "Q5_0", 5.5],
  q5_1: [6007, "Q5_1", 6],
  q8_0: [6008, "Q8_0", 8.5],
  q2_k: [6010, "Q2_K", 2.625],
  q3_k: [6011, "Q3_K", 3.4375],
  q4_k: [6012, "Q4_K", 4.5],
  q5_k: [6013, "Q5_K", 5.5],
  q6_k: [6014, "Q6_K", 6.5625],
  "iq4_nl-ggml": [6020, "IQ4_NL", 4.5],
  iq4_xs: [6023, "IQ4_XS", 4.25],
};

describe("ggml block formats: registry", () => {
  it("registers the 12 block formats under ggml's names with stable ids and exact bits per weight", () => {
    expect(FORMATS.filter((f) => f.decode === "block").map((f) => f.name)).toEqual(Object.keys(EXPECTED));
    for (const [name, [id, type, bpw]] of Object.entries(EXPECTED)) {
      const f = getFormat(name);
      expect(isBlockFormat(f)).toBe(true);
      expect(getFormat(id)).toBe(f);
      expect(f.bitsPerWeight).toBe(bpw);
      expect(f.block?.ggmlType).toBe(type);
      expect(f.block?.ggmlTypeId).toBe(GGML_TYPES[type as "Q4_0"].id);
      expect(f.bitsPerWeightAt(4096)).toBe(bpw);
      expect(blockFormatOfGgmlType(type)).toBe(f);
      expect(blockFormatOfGgmlType(GGML_TYPES[type as "Q4_0"].id)).toBe(f);
      expect(groupCount(f, 4096)).toBe(0);
      expect(f.layout).toContain(`→ ${bpw} bpw`);
    }
    // The planar codebook iq4_nl keeps its name and id.
    expect(getFormat("iq4_nl").decode).toBe("lut");
    expect(getFormat("iq4_nl").id).toBe(5111);
    expect(blockFormatOfGgmlType("F16")).toBeUndefined();
    expect(blockFormatOfGgmlType("IQ2_XS")).toBeUndefined();
  });

  it("refuses the per-group API with an error naming the format", () => {
    const f = getFormat("q4_k");
    expect(() => f.params(-1, 1)).toThrow(/q4_k is a ggml block format/);
    expect(() => f.value(1, 1, 0)).toThrow(/q4_k is a ggml block format/);
  });
});

describe.each(GGML_BLOCK_FORMATS.map((f) => [f.name, f] as const))("%s", (_name, f) => {
  const fx = FIX[fixtureKey(f)];
  const { rows: N, K } = fx;
  const x = f32(fx.x);
  const want = b64(fx.q);
  const y = f32(fx.y);
  const rowBytes = (K / f.block.blockSize) * f.block.blockBytes;

  it(`quantizeRow writes llama.cpp's bytes${fx.ggufQuantize ? " (= gguf-py's quantize)" : ""}`, () => {
    const got = new Uint8Array(N * rowBytes);
    const none = new Float32Array(0);
    for (let n = 0; n < N; n++) f.quantizeRow(x, n * K, K, got, n * rowBytes, none, none, 0);
    expect(Buffer.from(got).toString("base64")).toBe(fx.q);
    // rtnQuantize runs the same quantizer.
    expect(Buffer.from(ggmlBlocksOf(rtnQuantize(x, N, K, f))).toString("base64")).toBe(fx.q);
  });

  it("dequantizeRow of llama.cpp's bytes equals gguf-py's dequantize", () => {
    const q = quantizedFromGgmlBlocks(f.block.ggmlType, want, N, K);
    const out = new Float32Array(N * K);
    createReferenceBackend().dequantize(q, out);
    expect(Array.from(out)).toEqual(Array.from(y));
    const some = new Float32Array(2 * K);
    dequantizeRows(q, [N - 1, 0], some);
    expect(Array.from(some.subarray(0, K))).toEqual(Array.from(y.subarray((N - 1) * K, N * K)));
    expect(weightAt(q, 1, K - 3)).toBe(y[K + K - 3]);
  });

  it("imports and exports the bytes unchanged (zero-copy when rows are whole words)", () => {
    for (const blocks of [1, 3]) {
      const Kb = blocks * f.block.blockSize;
      const rb = blocks * f.block.blockBytes;
      const data = new Uint8Array(5 * rb);
      for (let i = 0; i < data.length; i++) data[i] = (i * 37 + 11) & 255;
      // Keep every f16 field finite: clear the exponent's top bit.
      for (let b = 0; b < data.length / f.block.blockBytes; b++)
        for (const h of f.block.halfOffsets) data[b * f.block.blockBytes + h + 1] &= 0x3f;
      const q = quantizedFromGgmlBlocks(f, data, 5, Kb);
      expect(q.qweight.bits).toBe(8);
      expect(q.qweight.cols).toBe(rb);
      expect(q.scales.length).toBe(0);
      expect(bytes(q)).toBe(5 * Math.ceil(rb / 4) * 4);
      const back = ggmlBlocksOf(q);
      expect(back).toEqual(data);
      const aligned = rb % 4 === 0;
      expect(back.buffer === data.buffer).toBe(aligned);
      expect(
        quantizedFromGgmlBlocks(f, data, 5, Kb, { copy: true }).qweight.words.buffer === data.buffer,
      ).toBe(false);
    }
    const q = rtnQuantize(randomWeights(4 * 4 * f.block.blockSize, 5), 4, 4 * f.block.blockSize, f);
    expect(bitsPerWeight(q)).toBe(f.bitsPerWeight);
  });

  it("round-trips random weights within the format's bound, block by block", () => {
    const Kr = 2 * f.block.blockSize;
    const W = randomWeights(6 * Kr, 99, 0.3);
    const q = rtnQuantize(W, 6, Kr, f);
    const out = new Float32Array(6 * Kr);
    createReferenceBackend().dequantize(q, out);
    const B = f.block.blockSize;
    for (let b = 0; b < (6 * Kr) / B; b++) {
      let lo = Number.POSITIVE_INFINITY;
      let hi = Number.NEGATIVE_INFINITY;
      for (let i = b * B; i < (b + 1) * B; i++) {
        lo = Math.min(lo, W[i]);
        hi = Math.max(hi, W[i]);
      }
      const bound = f.errorBound(lo, hi);
      for (let i = b * B; i < (b + 1) * B; i++) expect(Math.abs(out[i] - W[i])).toBeLessThanOrEqual(bound);
    }
  });

  it("rejects bad storage with errors naming the problem", () => {
    const B = f.block.blockSize;
    const good = quantizedFromGgmlBlocks(f, want, N, K);
    const base = {
      format: f,
      outFeatures: N,
      inFeatures: K,
      qweight: good.qweight,
      scales: new Float32Array(0),
    };
    expect(() => createQuantizedLinear({ ...base, inFeatures: K + 1 })).toThrow(/not a multiple of .* block/);
    expect(() => createQuantizedLinear({ ...base, scales: new Float32Array(1) })).toThrow(
      /scales must be empty/,
    );
    expect(() => createQuantizedLinear({ ...base, gIdx: new Int32Array(K) })).toThrow(/no act-order gIdx/);
    expect(() => quantizedFromGgmlBlocks(f, want.subarray(1), N, K)).toThrow(/needs \d+/);
    expect(() => rtnQuantize(randomWeights(B + 1, 1), 1, B + 1, f)).toThrow(/not a multiple/);
    expect(() => rtnQuantize(randomWeights(B, 1), 1, B, f, { mseClip: true })).toThrow(/mseClip/);
    const bad = want.slice();
    const h = f.block.halfOffsets[0];
    bad[f.block.blockBytes + h] = 0;
    bad[f.block.blockBytes + h + 1] = 0x7c; // +inf
    const perRow = K / B;
    expect(() => quantizedFromGgmlBlocks(f, bad, N, K)).toThrow(
      new RegExp(`row ${Math.floor(1 / perRow)}, block ${1 % perRow}: .*Infinity`),
    );
  });
});

describe("GGUF round trip", () => {
  it("every block format: layer → GGUF tensor (io's writer) → reader → layer, bytes and values unchanged", () => {
    const tensors = GGML_BLOCK_FORMATS.map((f) => {
      const K = 3 * f.block.blockSize;
      const q = rtnQuantize(randomWeights(5 * K, f.id, 0.2), 5, K, f);
      return { f, q, K, t: { name: f.name, type: f.block.ggmlType, shape: [5, K], raw: ggmlBlocksOf(q) } };
    });
    const file = parseGguf(serializeGguf({ metadata: {}, tensors: tensors.map((x) => x.t) }));
    const ref = createReferenceBackend();
    for (const { f, q, K } of tensors) {
      const raw = file.readTensorRaw(f.name);
      const back = quantizedFromGgmlBlocks(f.block.ggmlType, raw, 5, K);
      expect(ggmlBlocksOf(back)).toEqual(ggmlBlocksOf(q));
      const a = new Float32Array(5 * K);
      const b = new Float32Array(5 * K);
      ref.dequantize(q, a);
      ref.dequantize(back, b);
      expect(b).toEqual(a);
      // io's float reader (GGUF → float32) decodes the same values.
      expect(file.readTensorF32(f.name)).toEqual(a);
    }
  });
});

describe("quantizedFromGgmlBlocks", () => {
  it("names the ggml types that have no block format", () => {
    expect(() => quantizedFromGgmlBlocks("IQ2_XS", new Uint8Array(74), 1, 256)).toThrow(
      /ggml type IQ2_XS has no int21 block format; block formats exist for Q4_0, .*IQ4_XS/,
    );
    expect(() => quantizedFromGgmlBlocks(getFormat("int4-g64-asym-f16"), new Uint8Array(8), 1, 64)).toThrow(
      /not a ggml block format/,
    );
  });
});
