import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import { cli, removeTempDirs, tempDir } from "../testing";

const MODEL = sharedPath(SHARED.stories260K);
const DATA = sharedPath(SHARED.tinystoriesValid);
afterAll(removeTempDirs);

describe("int21 eval", () => {
  it("prints NLL and perplexity; overlapping windows (stride < ctx) give a lower NLL than disjoint short ones", async () => {
    const base = ["eval", MODEL, "--data", DATA, "--max-tokens", "1500", "--quiet", "--threads", "1"];
    const text = await cli([...base, "--ctx", "64"]);
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/mean NLL \d\.\d{4} nats\/token, perplexity \d+\.\d{3}/);
    const disjoint = JSON.parse((await cli([...base, "--ctx", "64", "--json"])).out);
    const strided = JSON.parse((await cli([...base, "--ctx", "64", "--stride", "16", "--json"])).out);
    expect(disjoint.perplexity).toBeCloseTo(Math.exp(disjoint.meanNll), 6);
    expect(strided.tokens).toBe(1499);
    expect(strided.meanNll).toBeLessThan(disjoint.meanNll);
  }, 60_000);

  it("follows the tokenizer's BOS rule: a Qwen2 fixture's text starts without BOS, --bos forces one", async () => {
    const dir = sharedPath("fixtures/hf-families/qwen2");
    const data = join(tempDir(), "text.txt");
    writeFileSync(
      data,
      "Once upon a time, a little girl named Lily went to the park. It was a sunny day.\n".repeat(4),
    );
    const base = [
      "eval",
      dir,
      "--data",
      data,
      "--ctx",
      "48",
      "--stride",
      "16",
      "--json",
      "--quiet",
      "--threads",
      "1",
    ];
    const plain = JSON.parse((await cli(base)).out);
    const forced = JSON.parse((await cli([...base, "--bos"])).out);
    const llama = JSON.parse(
      (await cli(["eval", MODEL, "--data", data, "--ctx", "48", "--json", "--quiet", "--threads", "1"])).out,
    );
    expect(plain.bos).toBe(false);
    expect(forced.bos).toBe(true);
    expect(llama.bos).toBe(true); // llama2.c always
    // strided windows score every token but the first: one more with BOS in front
    expect(forced.tokens).toBe(plain.tokens + 1);
    expect(forced.meanNll).not.toBe(plain.meanNll);
  }, 60_000);

  it("the model against itself as teacher has zero KL", async () => {
    const r = JSON.parse(
      (
        await cli([
          "eval",
          MODEL,
          "--data",
          DATA,
          "--max-tokens",
          "300",
          "--ctx",
          "128",
          "--teacher",
          MODEL,
          "--json",
          "--quiet",
          "--threads",
          "1",
        ])
      ).out,
    );
    expect(Math.abs(r.meanKl)).toBeLessThan(1e-6);
    expect(r.teacherMeanNll).toBeCloseTo(r.meanNll, 8);
  }, 60_000);

  it("bad arguments name the option (exit 2); a missing data file is named (exit 1)", async () => {
    const ctx = await cli(["eval", MODEL, "--data", DATA, "--ctx", "4096", "--threads", "1", "--quiet"]);
    expect(ctx.code).toBe(2);
    expect(ctx.err).toContain("--ctx 4096");
    const stride = await cli([
      "eval",
      MODEL,
      "--data",
      DATA,
      "--ctx",
      "32",
      "--stride",
      "64",
      "--threads",
      "1",
      "--quiet",
    ]);
    expect(stride.code).toBe(2);
    expect(stride.err).toContain("--stride 64");
    const neg = await cli(["eval", MODEL, "--data", DATA, "--ctx", "-3"]);
    expect(neg.code).toBe(2);
    expect(neg.err).toContain("--ctx");
    const noData = await cli(["eval", MODEL]);
    expect(noData.code).toBe(2);
    expect(noData.err).toContain("--data");
    const missing = await cli(["eval", MODEL, "--data", "/nonexistent/text.txt"]);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain("--data /nonexistent/text.txt: no such file");
  }, 60_000);

  it("a truncated model file is named, and nothing is scored", async () => {
    const dir = tempDir();
    const { readFileSync } = await import("node:fs");
    const bad = join(dir, "truncated.bin");
    const bytes = readFileSync(MODEL);
    writeFileSync(bad, bytes.subarray(0, bytes.length - 1000));
    const r = await cli([
      "eval",
      bad,
      "--data",
      DATA,
      "--tokenizer",
      sharedPath(SHARED.tok512),
      "--threads",
      "1",
      "--quiet",
    ]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(bad);
    expect(r.out).toBe("");
  }, 60_000);
});
