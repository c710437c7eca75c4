import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { f16ToF32, f32ToBf16, f32ToF16 } from "./half";
import { openSafetensors, parseSafetensors } from "./safetensors-reader";
import { type SafetensorsWriteTensor, serializeSafetensors, writeSafetensors } from "./safetensors-writer";

const dir = mkdtempSync(join(tmpdir(), "int21-io-st-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A file with an arbitrary (possibly invalid) JSON header text and `dataBytes` zero bytes of data. */
function rawFile(headerText: string, dataBytes: number, headerLength?: number): Uint8Array {
  const text = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + text.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength ?? text.length), true);
  out.set(text, 8);
  return out;
}

const entry = (dtype: string, shape: number[], begin: number, end: number) => ({
  dtype,
  shape,
  data_offsets: [begin, end],
});

const writable = [
  "F32",
  "F16",
  "BF16",
  "F64",
  "I8",
  "I16",
  "I32",
  "I64",
  "U8",
  "U16",
  "U32",
  "BOOL",
] as const;

const arbTensor: fc.Arbitrary<SafetensorsWriteTensor> = fc
  .record({
    dtype: fc.constantFrom(...writable),
    shape: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }),
  })
  .chain(({ dtype, shape }) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const range: Record<string, [number, number]> = {
      I8: [-128, 127],
      I16: [-32768, 32767],
      I32: [-(2 ** 31), 2 ** 31 - 1],
      I64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
      U8: [0, 255],
      U16: [0, 65535],
      U32: [0, 2 ** 32 - 1],
      BOOL: [0, 1],
    };
    const values =
      dtype in range
        ? fc.array(fc.integer({ min: range[dtype][0], max: range[dtype][1] }), { minLength: n, maxLength: n })
        : fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: n, maxLength: n });
    return values.map((data) => ({ dtype, shape, data }));
  });

const arbInput = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 8 }).filter((s) => s !== "__metadata__"),
  arbTensor,
  { maxKeys: 6 },
);

function expected(t: SafetensorsWriteTensor): number[] {
  const data = Float32Array.from(t.data as ArrayLike<number>);
  if (t.dtype === "F16")
    return [...f16ToF32(f32ToF16(data, new Uint16Array(data.length)), new Float32Array(data.length))];
  if (t.dtype === "BF16") {
    const bits = f32ToBf16(data, new Uint16Array(data.length));
    return [...bits].map((b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]);
  }
  if (t.dtype === "F64") return Array.from(t.data as ArrayLike<number>);
  return [...data];
}

describe("safetensors round trip", () => {
  it("parse(serialize(x)) gives back every tensor (property)", () => {
    fc.assert(
      fc.property(arbInput, fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }), (input, metadata) => {
        const st = parseSafetensors(serializeSafetensors(input, metadata), "mem");
        expect({ ...st.metadata }).toEqual(metadata);
        expect(new Set(st.names)).toEqual(new Set(Object.keys(input)));
        for (const [name, t] of Object.entries(input)) {
          expect(st.tensors[name].dtype).toBe(t.dtype);
          expect(st.tensors[name].shape).toEqual(t.shape);
          const raw = st.readRaw(name);
          if (t.dtype === "F32" || t.dtype === "F16" || t.dtype === "BF16" || t.dtype === "F64") {
            expect([...st.readF32(name)]).toEqual(expected(t).map(Math.fround));
          } else if (t.dtype === "I64") {
            expect([...(raw.data as BigInt64Array)].map(Number)).toEqual([...(t.data as number[])]);
          } else {
            expect([...(raw.data as Int32Array)]).toEqual([...(t.data as number[])]);
          }
        }
      }),
      { seed: 42, numRuns: 150 },
    );
  });

  it("a file written with writeSafetensors reads back the same through positioned reads", async () => {
    const samples = fc.sample(arbInput, { seed: 7, numRuns: 12 });
    for (const [i, input] of samples.entries()) {
      const path = join(dir, `rt-${i}.safetensors`);
      await writeSafetensors(path, input, { i: String(i) });
      expect([...readFileSync(path)]).toEqual([...serializeSafetensors(input, { i: String(i) })]);
      const f = await openSafetensors(path);
      try {
        const mem = parseSafetensors(readFileSync(path));
        for (const name of f.names) {
          const raw = await f.readRaw(name);
          expect([...(raw.data as Int32Array)]).toEqual([...(mem.readRaw(name).data as Int32Array)]);
          const dtype = f.tensors[name].dtype;
          if (dtype === "F32" || dtype === "F16" || dtype === "BF16" || dtype === "F64") {
            const out = new Float32Array(f.tensors[name].byteLength + 3);
            await f.readF32(name, out);
            const want = mem.readF32(name);
            expect([...out.subarray(0, want.length)]).toEqual([...want]);
          }
        }
      } finally {
        await f.close();
      }
    }
  });

  it("reads F8 types and refuses readF32 on integers", () => {
    const st = parseSafetensors(
      serializeSafetensors({
        e5: { dtype: "F8_E5M2", shape: [3], data: new Uint8Array([0x3c, 0xc0, 0x7c]) },
        e4: { dtype: "F8_E4M3", shape: [4], data: new Uint8Array([0x38, 0xc0, 0x01, 0x7f]) },
        e8: { dtype: "F8_E8M0", shape: [2], data: new Uint8Array([127, 130]) },
        n: { dtype: "I32", shape: [1], data: [1] },
      }),
      "f8",
    );
    expect([...st.readF32("e5")]).toEqual([1, -2, Number.POSITIVE_INFINITY]);
    const e4 = st.readF32("e4"); // 0x38 = 1.0, 0xc0 = -2, 0x01 = 2^-9, 0x7f = NaN
    expect([e4[0], e4[1], e4[2]]).toEqual([1, -2, 2 ** -9]);
    expect(Number.isNaN(e4[3])).toBe(true);
    expect([...st.readF32("e8")]).toEqual([1, 8]);
    expect(() => st.readF32("n")).toThrow(
      /f8: tensor "n": dtype I32 is not a float type; read it with readRaw/,
    );
    expect(() => st.readF32("nope")).toThrow(/f8: no tensor named "nope"/);
  });
});

describe("safetensors corruption", () => {
  const good = serializeSafetensors({
    w: { dtype: "F32", shape: [2, 3], data: [1, 2, 3, 4, 5, 6] },
    b: { dtype: "F16", shape: [3], data: [1, 2, 3] },
  });
  const n = Number(new DataView(good.buffer).getBigUint64(0, true));

  /** Checks the same error from the in-memory parser and from the file reader. */
  async function expectBoth(bytes: Uint8Array, message: RegExp, label: string): Promise<void> {
    expect(() => parseSafetensors(bytes, `${label}.safetensors`)).toThrow(message);
    const path = join(dir, `${label}.safetensors`);
    writeFileSync(path, bytes);
    await expect(openSafetensors(path)).rejects.toThrow(message);
    await expect(openSafetensors(path)).rejects.toThrow(path);
  }

  it("detects truncation at every interesting point", async () => {
    await expectBoth(good.subarray(0, 0), /trunc0\.safetensors: file is 0 bytes, too short/, "trunc0");
    await expectBoth(good.subarray(0, 5), /trunc5\.safetensors: file is 5 bytes, too short/, "trunc5");
    await expectBoth(
      good.subarray(0, 8),
      /trunc8\.safetensors: header length \d+ runs past the end of the file/,
      "trunc8",
    );
    await expectBoth(
      good.subarray(0, 8 + n / 2),
      /truncH\.safetensors: header length \d+ runs past the end/,
      "truncH",
    );
    await expectBoth(
      good.subarray(0, 8 + n),
      /truncD0\.safetensors: tensor "[wb]": data_offsets .* run past the end/,
      "truncD0",
    );
    await expectBoth(
      good.subarray(0, good.length - 1),
      /truncD\.safetensors: tensor "b": data_offsets \[24, 30\] run past/,
      "truncD",
    );
    expect(() => parseSafetensors(good.subarray(0, 8 + n + 10), "mid")).toThrow(
      /mid: tensor "w": data_offsets \[0, 24\]/,
    );
  });

  it("rejects a header length beyond the file or above the limit", async () => {
    await expectBoth(
      rawFile("{}", 0, 1000),
      /hl\.safetensors: header length 1000 runs past the end of the file \(10 bytes/,
      "hl",
    );
    const huge = rawFile("{}", 0);
    new DataView(huge.buffer).setUint32(4, 1, true);
    await expectBoth(
      huge,
      /hh\.safetensors: header length 4294967298 exceeds the 100000000-byte limit/,
      "hh",
    );
    await expectBoth(rawFile("{", 0), /hs\.safetensors: header length 1 is too small/, "hs");
  });

  it("rejects bad JSON and headers that are not objects", async () => {
    await expectBoth(rawFile('{"w": {"dtype": "F32",', 0), /bj\.safetensors: header is not valid JSON/, "bj");
    await expectBoth(rawFile("[1, 2]   ", 0), /ba\.safetensors: header does not start with '\{'/, "ba");
    await expectBoth(
      rawFile('{"__metadata__": {"a": 1}}', 0),
      /bm\.safetensors: __metadata__\["a"\] must be a string/,
      "bm",
    );
    const bad = rawFile('{"a":1}', 0);
    bad[10] = 0xff; // invalid UTF-8 inside the header
    expect(() => parseSafetensors(bad, "utf")).toThrow(/utf: header is not valid UTF-8/);
  });

  it("rejects unknown dtypes, naming file and tensor", async () => {
    const h = JSON.stringify({ w: entry("F4", [2], 0, 1) });
    await expectBoth(rawFile(h, 1), /ud\.safetensors: tensor "w": unknown or unsupported dtype "F4"/, "ud");
  });

  it("rejects shape/size mismatches and bad shapes", async () => {
    await expectBoth(
      rawFile(JSON.stringify({ w: entry("F32", [2, 3], 0, 20) }), 20),
      /sm\.safetensors: tensor "w": shape \[2,3\] × F32 \(4 bytes\) is 24 bytes, but data_offsets \[0, 20\] span 20/,
      "sm",
    );
    await expectBoth(
      rawFile(JSON.stringify({ w: entry("F32", [-1], 0, 0) }), 0),
      /bs\.safetensors: tensor "w": shape \[-1\]/,
      "bs",
    );
    await expectBoth(
      rawFile(JSON.stringify({ w: entry("F32", [1], 4, 0) }), 4),
      /bo\.safetensors: tensor "w": data_offsets must be \[begin, end\]/,
      "bo",
    );
  });

  it("rejects overlapping, gapped, out-of-range and incomplete offsets", async () => {
    await expectBoth(
      rawFile(JSON.stringify({ a: entry("U8", [4], 0, 4), b: entry("U8", [4], 2, 6) }), 6),
      /ov\.safetensors: tensor "b": data_offsets \[2, 6\] overlap tensor "a"/,
      "ov",
    );
    await expectBoth(
      rawFile(JSON.stringify({ a: entry("U8", [2], 0, 2), b: entry("U8", [2], 4, 6) }), 6),
      /gap\.safetensors: tensor "b": data_offsets begin at 4, leaving a gap after byte 2/,
      "gap",
    );
    await expectBoth(
      rawFile(JSON.stringify({ a: entry("U8", [4], 100, 104) }), 4),
      /oor\.safetensors: tensor "a": data_offsets \[100, 104\] run past the end of the file \(data area is 4 bytes/,
      "oor",
    );
    await expectBoth(
      rawFile(JSON.stringify({ a: entry("U8", [4], 0, 4) }), 9),
      /tail\.safetensors: tensors cover 4 bytes but the data area is 9 bytes/,
      "tail",
    );
  });

  it("reads tensors on demand and checks the output size", async () => {
    const path = join(dir, "ok.safetensors");
    writeFileSync(path, good);
    const f = await openSafetensors(path);
    expect(f.names).toEqual(["w", "b"]);
    expect([...(await f.readF32("w"))]).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...(await f.readF32("b"))]).toEqual([1, 2, 3]);
    await expect(f.readF32("w", new Float32Array(5))).rejects.toThrow(
      /tensor "w": output has 5 elements, needs 6/,
    );
    await f.close();
    await expect(f.readF32("w")).rejects.toThrow(/read after close/);
  });

  it("names the path when the file does not exist", async () => {
    const path = join(dir, "missing.safetensors");
    await expect(openSafetensors(path)).rejects.toThrow(`io: cannot open ${path}`);
  });
});

describe("safetensors past 4 GiB", () => {
  it("reads a tensor beyond 4 GiB of a sparse 6 GB file without touching the rest", async () => {
    const { openSync, writeSync, closeSync, ftruncateSync } = await import("node:fs");
    const big = 1_500_000_000; // 6 GB of F32, never read
    const text = JSON.stringify({
      big: { dtype: "F32", shape: [big], data_offsets: [0, 4 * big] },
      small: { dtype: "F32", shape: [2], data_offsets: [4 * big, 4 * big + 8] },
    });
    const header = new Uint8Array(8 + text.length);
    new DataView(header.buffer).setBigUint64(0, BigInt(text.length), true);
    header.set(new TextEncoder().encode(text), 8);
    const path = join(dir, "sparse.safetensors");
    const fd = openSync(path, "w");
    try {
      writeSync(fd, header, 0, header.length, 0);
      ftruncateSync(fd, header.length + 4 * big);
      writeSync(fd, new Uint8Array(new Float32Array([1.5, -2]).buffer), 0, 8, header.length + 4 * big);
    } finally {
      closeSync(fd);
    }
    const f = await openSafetensors(path);
    try {
      expect(f.tensors.small.byteOffset).toBe(header.length + 4 * big);
      expect([...(await f.readF32("small"))]).toEqual([1.5, -2]);
    } finally {
      await f.close();
      rmSync(path);
    }
  });
});
