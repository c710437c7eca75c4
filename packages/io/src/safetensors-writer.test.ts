import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseSafetensors } from "./safetensors-reader";
import { type SafetensorsWriteInput, serializeSafetensors, writeSafetensors } from "./safetensors-writer";

const dir = mkdtempSync(join(tmpdir(), "int21-io-stw-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("safetensors golden bytes", () => {
  // Written by hand from the format description. The reference Python library (safetensors 0.8) produces
  // exactly these bytes for the same tensors: I64 first, then F32, then F16 (larger dtypes first), compact JSON,
  // header right-padded with spaces to a multiple of 8.
  const json =
    '{"__metadata__":{"format":"pt"},' +
    '"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},' +
    '"a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},' +
    '"b":{"dtype":"F16","shape":[2],"data_offsets":[12,16]}}';
  // biome-ignore format: one line per field of the byte layout
  const golden = new Uint8Array([
    200, 0, 0, 0, 0, 0, 0, 0, // header length 200 = 196 bytes of JSON + 4 spaces
    ...new TextEncoder().encode(json),
    0x20, 0x20, 0x20, 0x20,
    7, 0, 0, 0, 0, 0, 0, 0, // ids = [7n]
    0x00, 0x00, 0x00, 0x3f, // a = [0.5]
    0x00, 0x3c, 0x00, 0xc0, // b = [1, -2] as f16
  ]);
  const tensors: SafetensorsWriteInput = {
    b: { dtype: "F16", shape: [2], data: new Float32Array([1, -2]) },
    a: { dtype: "F32", shape: [1], data: [0.5] },
    ids: { dtype: "I64", shape: [1], data: [7] },
  };

  it("serializes to the exact bytes", () => {
    expect(json.length).toBe(196);
    expect([...serializeSafetensors(tensors, { format: "pt" })]).toEqual([...golden]);
  });

  it("writes the same bytes to a file", async () => {
    const path = join(dir, "golden.safetensors");
    await writeSafetensors(path, tensors, { format: "pt" });
    expect([...readFileSync(path)]).toEqual([...golden]);
  });

  it("parses the golden bytes", () => {
    const st = parseSafetensors(golden, "golden");
    expect(st.metadata).toEqual({ format: "pt" });
    expect(st.names).toEqual(["ids", "a", "b"]);
    expect(st.tensors.b).toEqual({ dtype: "F16", shape: [2], byteLength: 4, byteOffset: 8 + 200 + 12 });
    expect([...st.readF32("b")]).toEqual([1, -2]);
    expect([...st.readF32("a")]).toEqual([0.5]);
    expect([...(st.readRaw("ids").data as BigInt64Array)]).toEqual([7n]);
  });

  it("omits an empty __metadata__", () => {
    const bytes = serializeSafetensors({ x: { dtype: "U8", shape: [], data: [3] } });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(new TextDecoder().decode(bytes.subarray(8, 8 + n)).trimEnd()).toBe(
      '{"x":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}',
    );
    expect(n % 8).toBe(0);
  });

  it("rejects bad writer input, naming the tensor", () => {
    expect(() => serializeSafetensors({ w: { dtype: "F32", shape: [2, 2], data: [1, 2, 3] } })).toThrow(
      /tensor "w": shape \[2,2\] needs 4 values, data has 3/,
    );
    expect(() => serializeSafetensors({ w: { dtype: "U8", shape: [1], data: [256] } })).toThrow(
      /tensor "w": value 256 at index 0 is not an integer in \[0, 255\]/,
    );
    expect(() => serializeSafetensors({ w: { dtype: "Q4" as never, shape: [1], data: [1] } })).toThrow(
      /tensor "w": unknown dtype "Q4"/,
    );
  });
});

describe("writeSafetensors failures", () => {
  it("a tensor that fails to encode halfway through leaves the previous file and no temporary file", async () => {
    const sub = join(dir, "fail");
    mkdirSync(sub);
    const path = join(sub, "ckpt.safetensors");
    writeFileSync(path, "previous");
    // F32 "a" is written first (larger dtypes first), then U8 "w" fails to encode
    const bad: SafetensorsWriteInput = {
      w: { dtype: "U8", shape: [1], data: [256] },
      a: { dtype: "F32", shape: [1024], data: new Float32Array(1024) },
    };
    await expect(writeSafetensors(path, bad)).rejects.toThrow(/tensor "w": value 256/);
    expect(readFileSync(path, "utf8")).toBe("previous");
    expect(readdirSync(sub)).toEqual(["ckpt.safetensors"]);
  });

  it("names the file when the target is a directory", async () => {
    const path = join(dir, "is-a-dir.safetensors");
    mkdirSync(path);
    await expect(writeSafetensors(path, { x: { dtype: "U8", shape: [1], data: [1] } })).rejects.toThrow(
      `io: cannot write ${path} (check): the path is a directory`,
    );
  });
});
