import { existsSync } from "node:fs";
import { join } from "node:path";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import { cli, removeTempDirs, tempDir } from "../testing";
import { lrecStatePath } from "./lrec";

const MODEL = sharedPath(SHARED.stories260K);
const DATA = sharedPath(SHARED.tinystoriesValid);
afterAll(removeTempDirs);

describe("int21 lrec (stories260K INT2 GPTQ against its float teacher)", () => {
  const dir = tempDir();
  const q2 = join(dir, "q2.safetensors");
  const out = join(dir, "q2-lrec.safetensors");
  const args = (steps: number) => [
    "lrec",
    q2,
    "--teacher",
    MODEL,
    "--data",
    DATA,
    "--steps",
    String(steps),
    "--rank",
    "4",
    "--seq",
    "48",
    "--batch",
    "2",
    "--eval-tokens",
    "600",
    "-o",
    out,
    "--threads",
    "1",
    "--json",
    "--quiet",
  ];

  it("lowers the held-out KL to the teacher; the output checkpoint holds the adapter and evaluates better", async () => {
    const q = await cli([
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
      q2,
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(q.code).toBe(0);
    const r = await cli(args(12));
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const s = JSON.parse(r.out);
    expect(s.steps).toBe(12);
    expect(s.resumed).toBe(false);
    expect(s.after.meanKl).toBeLessThan(s.before.meanKl);
    expect(existsSync(lrecStatePath(out))).toBe(true);
    expect(existsSync(s.lossChart)).toBe(true);
    const i = JSON.parse((await cli(["inspect", out, "--json"])).out);
    expect(i.metadata.adapters.int21Adapters[0].name).toBe("lrec");
    const ev = (m: string) =>
      cli([
        "eval",
        m,
        "--data",
        DATA,
        "--max-tokens",
        "800",
        "--ctx",
        "128",
        "--json",
        "--quiet",
        "--threads",
        "1",
      ]);
    const before = JSON.parse((await ev(q2)).out);
    const after = JSON.parse((await ev(out)).out);
    expect(after.meanNll).toBeLessThan(before.meanNll);
  }, 90_000);

  it("rerunning with more steps resumes from the state file", async () => {
    const r = await cli(args(16));
    expect(r.code).toBe(0);
    const s = JSON.parse(r.out);
    expect(s.resumed).toBe(true);
    expect(s.steps).toBe(16);
  }, 60_000);

  it("refuses a float student (exit 2) and names a missing teacher (exit 1)", async () => {
    const f = await cli([
      "lrec",
      MODEL,
      "--teacher",
      MODEL,
      "--data",
      DATA,
      "-o",
      join(dir, "x.safetensors"),
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(f.code).toBe(2);
    expect(f.err).toContain("is a float model; LREC trains a packed one");
    const t = await cli([
      "lrec",
      q2,
      "--teacher",
      "/nonexistent/teacher.bin",
      "--data",
      DATA,
      "-o",
      join(dir, "x.safetensors"),
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(t.code).toBe(1);
    expect(t.err).toContain("teacher /nonexistent/teacher.bin: no such file or directory");
    const l = await cli([
      "lrec",
      q2,
      "--teacher",
      MODEL,
      "--data",
      DATA,
      "-o",
      join(dir, "x.safetensors"),
      "--lambda",
      "-1",
    ]);
    expect(l.code).toBe(2);
    expect(l.err).toContain("--lambda");
  }, 30_000);
});
