import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseGguf } from "./gguf-reader";
import { serializeGguf } from "./gguf-writer";
import { serializeSafetensors } from "./safetensors-writer";
import { nonFiniteProblem, validateGguf, validateSafetensors } from "./validate";

const dir = mkdtempSync(join(tmpdir(), "int21-io-validate-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("nonFiniteProblem", () => {
  it("counts NaN and infinities and names the first", () => {
    expect(nonFiniteProblem(Float32Array.from([1, 2, 3]), "f", "t")).toBeUndefined();
    const p = nonFiniteProblem(Float32Array.from([1, Number.NaN, Number.POSITIVE_INFINITY, 4]), "f.bin", "w");
    expect(p).toEqual({
      file: "f.bin",
      tensor: "w",
      message: 'f.bin: tensor "w" holds 2 non-finite values (the first, NaN, at element 1)',
    });
  });
});

describe("validateSafetensors", () => {
  it("finds no problem in a good file, and every NaN / infinite tensor in a bad one", async () => {
    const good = join(dir, "good.safetensors");
    writeFileSync(
      good,
      serializeSafetensors({
        a: { dtype: "F32", shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) },
        ids: { dtype: "I32", shape: [1], data: Int32Array.from([7]) },
      }),
    );
    expect(await validateSafetensors(good)).toEqual([]);
    const bad = join(dir, "bad.safetensors");
    writeFileSync(
      bad,
      serializeSafetensors({
        a: { dtype: "F32", shape: [2], data: Float32Array.from([1, Number.NaN]) },
        b: { dtype: "F32", shape: [2], data: Float32Array.from([1, 2]) },
        c: { dtype: "F16", shape: [1], data: Float32Array.from([Number.NEGATIVE_INFINITY]) },
      }),
    );
    const problems = await validateSafetensors(bad);
    expect(problems.map((p) => p.tensor)).toEqual(["a", "c"]);
    for (const p of problems) expect(p.message).toContain(bad);
    expect(await validateSafetensors(bad, { scanValues: false })).toEqual([]);
  });

  it("reports a corrupt header as one problem naming the file", async () => {
    const path = join(dir, "junk.safetensors");
    writeFileSync(path, "not a safetensors file at all");
    const problems = await validateSafetensors(path);
    expect(problems).toHaveLength(1);
    expect(problems[0].file).toBe(path);
    expect(problems[0].message).toContain(path);
  });
});

describe("validateGguf", () => {
  it("scans dequantized tensors: a NaN block scale is found", async () => {
    const bytes = serializeGguf({
      metadata: { "general.architecture": { type: "string", value: "llama" } },
      tensors: [
        {
          name: "w",
          type: "Q8_0",
          shape: [1, 32],
          data: Float32Array.from({ length: 32 }, (_, i) => i / 32),
        },
        { name: "n", type: "F32", shape: [4], data: Float32Array.from([1, 2, 3, 4]) },
      ],
    });
    const good = join(dir, "good.gguf");
    writeFileSync(good, bytes);
    expect(await validateGguf(good)).toEqual([]);
    // Q8_0 block: f16 scale then 32 int8 codes.
    const bad = bytes.slice();
    const q8 = parseGguf(bytes).tensors.w.byteOffset;
    bad[q8] = 0x00;
    bad[q8 + 1] = 0x7e; // f16 NaN
    const path = join(dir, "bad.gguf");
    writeFileSync(path, bad);
    const problems = await validateGguf(path);
    expect(problems.map((p) => p.tensor)).toEqual(["w"]);
    expect(problems[0].message).toContain(path);
    const junk = join(dir, "junk.gguf");
    writeFileSync(junk, "GGUF\x03\x00\x00\x00");
    const j = await validateGguf(junk);
    expect(j).toHaveLength(1);
    expect(j[0].message).toContain(junk);
  });
});
