import { existsSync } from "node:fs";
import { join } from "node:path";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import { cli, removeTempDirs, tempDir } from "./testing";

const MODEL = sharedPath(SHARED.stories260K);
const DATA = sharedPath(SHARED.tinystoriesValid);
afterAll(removeTempDirs);

describe("int21 (dispatcher)", () => {
  it("lists the commands with --help (exit 0) and without arguments (exit 2)", async () => {
    const help = await cli(["--help"]);
    expect(help.code).toBe(0);
    for (const c of ["quantize", "finetune", "eval", "generate", "inspect", "demo"])
      expect(help.out).toContain(c);
    expect((await cli([])).code).toBe(2);
  }, 60_000);

  it("prints the version", async () => {
    const r = await cli(["--version"]);
    expect(r.code).toBe(0);
    expect(r.out.trim()).toMatch(/^\d+\.\d+\.\d+/);
  }, 60_000);

  it("names an unknown command (exit 2)", async () => {
    const r = await cli(["quantise", MODEL]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('unknown command "quantise"');
  }, 60_000);

  it("prints a command's options with <command> --help", async () => {
    const r = await cli(["quantize", "--help"]);
    expect(r.code).toBe(0);
    for (const o of ["--bits", "--group", "--method", "--act-order", "--calib", "--output"])
      expect(r.out).toContain(o);
  }, 60_000);
});

describe("quantize → inspect → eval → generate on stories260K", () => {
  const dir = tempDir();
  const out = join(dir, "q4.safetensors");

  it("quantize writes a checkpoint, copies the tokenizer, prints size, bits per weight and per-layer errors", async () => {
    const r = await cli([
      "quantize",
      MODEL,
      "--bits",
      "4",
      "--group",
      "64",
      "--method",
      "gptq",
      "--calib",
      DATA,
      "--calib-windows",
      "8",
      "-o",
      out,
      "--threads",
      "1",
    ]);
    expect(r.err).toContain("100%");
    expect(r.code).toBe(0);
    expect(existsSync(out)).toBe(true);
    expect(existsSync(join(dir, "tok512.bin"))).toBe(true);
    expect(r.out).toMatch(/4\.\d+ bits per projection weight/);
    expect(r.out).toContain("rtn error");
    // 35 projections: 5 layers × 7
    expect(r.out.split("\n").filter((l) => /^\s+\d\s+w[qkvo123]\s/.test(l))).toHaveLength(35);
  }, 30_000);

  it("quantize --json parses and reports GPTQ errors below RTN's on average", async () => {
    const j = join(dir, "q2.safetensors");
    const r = await cli([
      "quantize",
      MODEL,
      "--bits",
      "2",
      "--method",
      "gptq",
      "--calib",
      DATA,
      "--calib-windows",
      "8",
      "-o",
      j,
      "--json",
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.out);
    expect(s.format).toBe("int2-g64-asym-f16");
    expect(s.layers).toHaveLength(35);
    const mean = (k: string) => s.layers.reduce((a: number, l: Record<string, number>) => a + l[k], 0) / 35;
    expect(mean("relError")).toBeLessThan(mean("rtnRelError"));
    expect(s.fileBytes).toBeLessThan(s.float32Bytes / 3);
    expect(r.err).toBe("");
  }, 30_000);

  it("quantize --act-order stores the column order; inspect reports it", async () => {
    const ao = join(dir, "q3-act-order.safetensors");
    const r = await cli([
      "quantize",
      MODEL,
      "--bits",
      "3",
      "--method",
      "gptq",
      "--act-order",
      "--calib",
      DATA,
      "--calib-windows",
      "4",
      "-o",
      ao,
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(r.code).toBe(0);
    const i = await cli(["inspect", ao, "--all"]);
    expect(i.out).toContain("35 × int3-g64-asym-f16 (act-order)");
    expect(i.out).toContain("layers.0.wq.g_idx");
    const bad = await cli(["quantize", MODEL, "--method", "rtn", "--act-order", "-o", ao]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("--act-order needs --method gptq");
    const noCalib = await cli(["quantize", MODEL, "--method", "gptq", "-o", ao]);
    expect(noCalib.code).toBe(2);
    expect(noCalib.err).toContain("--calib <text> is required with --method gptq");
    const bits = await cli(["quantize", MODEL, "--bits", "5", "-o", ao]);
    expect(bits.code).toBe(2);
    expect(bits.err).toContain("--bits");
  }, 30_000);

  it("inspect shows the format and packed tensors (text and JSON)", async () => {
    const r = await cli(["inspect", out]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("int21 checkpoint");
    expect(r.out).toContain("35 × int4-g64-asym-f16");
    const j = JSON.parse((await cli(["inspect", out, "--json"])).out);
    expect(j.kind).toBe("int21");
    expect(j.config.dim).toBe(64);
    const qw = j.tensors.find((t: { name: string }) => t.name === "layers.0.wq.qweight");
    expect(qw).toMatchObject({ dtype: "U32", format: "int4-g64-asym-f16" });
  }, 60_000);

  it("eval: the INT4 model is close to the float one; KL to the float teacher is small but positive", async () => {
    const f = JSON.parse(
      (
        await cli([
          "eval",
          MODEL,
          "--data",
          DATA,
          "--max-tokens",
          "2000",
          "--ctx",
          "256",
          "--json",
          "--quiet",
          "--threads",
          "1",
        ])
      ).out,
    );
    const q = JSON.parse(
      (
        await cli([
          "eval",
          out,
          "--data",
          DATA,
          "--max-tokens",
          "2000",
          "--ctx",
          "256",
          "--teacher",
          MODEL,
          "--json",
          "--quiet",
          "--threads",
          "1",
        ])
      ).out,
    );
    expect(f.tokens).toBe(q.tokens);
    expect(f.perplexity).toBeGreaterThan(2);
    expect(f.perplexity).toBeLessThan(10);
    expect(q.teacherMeanNll).toBeCloseTo(f.meanNll, 4);
    expect(q.meanNll).toBeGreaterThan(f.meanNll);
    expect(q.meanNll).toBeLessThan(f.meanNll + 0.3);
    expect(q.meanKl).toBeGreaterThan(0);
    expect(q.meanKl).toBeLessThan(0.3);
  }, 30_000);

  it("generate streams the greedy INT4 text starting with the golden opening", async () => {
    const r = await cli([
      "generate",
      out,
      "--prompt",
      "Once upon a time",
      "--temperature",
      "0",
      "--steps",
      "40",
      "--threads",
      "1",
    ]);
    expect(r.code).toBe(0);
    expect(r.out.startsWith("Once upon a time, there was")).toBe(true);
    expect(r.err).toMatch(/5 prompt tokens \(with BOS\), \d+ generated/);
  }, 60_000);
});
