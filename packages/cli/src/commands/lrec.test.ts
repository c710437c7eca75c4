import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseSafetensors } from "@int21/io";
import { loadInt21Checkpoint } from "@int21/loaders";
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
    // the default cosine schedule: 1 warmup step (min(10, 12/10)) from lr/1, then down towards lr/10;
    // the recipe's peak lr, λ for INT2 and LoftQ start (the LREC methods table's winner)
    expect(s.lr).toMatchObject({ peak: 1.5e-3, schedule: "cosine" });
    expect(s).toMatchObject({ lambda: 120, init: "svd-act", loftqIterations: 3, loftqMethod: "gptq" });
    expect(s.lr.last).toBeLessThan(s.lr.peak / 2);
    expect(s.lr.last).toBeGreaterThanOrEqual(s.lr.peak / 10);
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
  }, 180_000); // the default start (activation-weighted SVD) and trained scales cost more than B = 0

  it("an identical rerun of the finished run says so and rewrites nothing", async () => {
    const files = [out, lrecStatePath(out), out.replace(/\.safetensors$/, ".lrec-loss.svg")];
    const before = files.map((f) => statSync(f).mtimeMs);
    const r = await cli(args(12).filter((a) => a !== "--json"));
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /^this run is already finished \(12 of 12 steps; state .*\); nothing was trained or written\.\n/,
    );
    expect(r.out).toContain(`its outputs: ${out} (packed base + LREC adapter)`);
    expect(files.map((f) => statSync(f).mtimeMs)).toEqual(before);
  }, 60_000);

  it("a rerun with other settings stops, listing each difference; --resume continues with more steps", async () => {
    const lr = await cli([...args(12), "--lr", "1e-2"]);
    expect(lr.code).toBe(1);
    expect(lr.err).toContain(
      `int21 lrec: ${lrecStatePath(out)} holds step 12 of a different run; it differs in:\n  lr: 0.0015 → 0.01\n`,
    );
    expect(lr.err).toContain("Rerun with --fresh to start over");
    const data = await cli([...args(12), "--seq", "40", "--rank", "2"]);
    expect(data.code).toBe(1);
    expect(data.err).toMatch(/\n {2}r: 4 → 2\n/);
    expect(data.err).toMatch(/\n {2}seq: 48 → 40\n/);
    const more = await cli(args(16));
    expect(more.code).toBe(1);
    expect(more.err).toMatch(/\n {2}steps: 12 → 16\n/);
    const r = await cli([...args(16), "--resume"]);
    expect(r.code).toBe(0);
    expect(r.err).toContain("--resume: continuing");
    const s = JSON.parse(r.out);
    expect(s.resumed).toBe(true);
    expect(s.resumedDespite).toEqual(["steps"]);
    expect(s.steps).toBe(16);
  }, 240_000); // each run that trains re-quantizes with LoftQ (3 GPTQ passes) and scores the held-out tokens twice

  it("an absurd --lr stops as diverged (exit 1) and writes no output checkpoint", async () => {
    const o = join(dir, "diverged.safetensors");
    const a = args(40).map((x) => (x === out ? o : x));
    const r = await cli([...a, "--lr", "1000", "--diverge-steps", "4"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      /int21 lrec: lrec: runLrec: training diverged at step \d+: .* for 4 steps in a row/,
    );
    expect(r.err).toMatch(/rerun with a lower --lr/);
    expect(existsSync(o)).toBe(false);
    expect(existsSync(o.replace(/\.safetensors$/, ".lrec-loss.svg"))).toBe(false);
  }, 180_000); // LoftQ and the held-out scoring come before the first step

  it("EMEF on the LREC checkpoint trains only a new adapter (LREC frozen); eval and generate stack both", async () => {
    const ad = join(dir, "task");
    const r = await cli([
      "finetune",
      out,
      "--data",
      DATA,
      "--steps",
      "3",
      "--seq",
      "48",
      "--rank",
      "2",
      "-o",
      ad,
      "--json",
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(r.code).toBe(0);
    // rank 2 on q_proj and v_proj of 5 layers: the LREC adapter's parameters are not counted
    expect(JSON.parse(r.out).trainableParameters).toBe(5 * (2 * 128 + 2 * 96));
    const e = [
      "eval",
      out,
      "--data",
      DATA,
      "--max-tokens",
      "400",
      "--ctx",
      "128",
      "--json",
      "--quiet",
      "--threads",
      "1",
    ];
    const lrecOnly = JSON.parse((await cli(e)).out);
    const both = JSON.parse((await cli([...e, "--adapter", ad])).out);
    expect(both.tokens).toBe(lrecOnly.tokens);
    expect(both.meanNll).not.toBeCloseTo(lrecOnly.meanNll, 4);
    const g = await cli([
      "generate",
      out,
      "--adapter",
      ad,
      "--temperature",
      "0",
      "--steps",
      "20",
      "--quiet",
      "--threads",
      "1",
    ]);
    expect(g.code).toBe(0);
  }, 60_000);

  it("--holdout scores another file; the held-out evaluation and the bits per weight are printed; --adapter-dtype counts", async () => {
    const hold = join(dir, "holdout.txt");
    writeFileSync(hold, readFileSync(DATA, "utf8").slice(0, 6000));
    const o2 = join(dir, "q2-holdout.safetensors");
    const base = [
      "lrec",
      q2,
      "--teacher",
      MODEL,
      "--data",
      DATA,
      "--holdout",
      hold,
      "--steps",
      "3",
      "--rank",
      "2",
      "--seq",
      "32",
      "--batch",
      "1",
      "--eval-tokens",
      "300",
      "--threads",
      "1",
      "--quiet",
    ];
    const r = await cli([...base, "-o", o2]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      new RegExp(`held-out \\(${hold.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}, 300 tokens\\): NLL \\d`),
    );
    expect(r.out).toMatch(/of the gap recovered/);
    expect(r.out).toMatch(
      /bits per weight of the block projections: \d+\.\d+ \(packed codes, scales, zeros \(trained\) and the adapter at f16\)/,
    );
    const j = await cli([
      ...base,
      "-o",
      join(dir, "q2-int8.safetensors"),
      "--adapter-dtype",
      "int8",
      "--no-train-scales",
      "--json",
    ]);
    expect(j.code).toBe(0);
    const s = JSON.parse(j.out);
    expect(s.heldOutSource).toBe(hold);
    expect(s.heldOutTokens).toBe(300);
    expect(s.adapterDtype).toBe("int8");
    expect(s.trainScales).toBe(false);
    const f16 = Number(/bits per weight of the block projections: (\d+\.\d+)/.exec(r.out)?.[1]);
    // same base format, the adapter at 8 bits (+ row scales) instead of 16
    expect(s.bitsPerWeight).toBeLessThan(f16);
    // the files hold the adapter as counted: f16 by default, int8 codes + f16 row scales with int8
    const f16File = await loadInt21Checkpoint(o2);
    const int8File = await loadInt21Checkpoint(join(dir, "q2-int8.safetensors"));
    for (const t of Object.values(f16File.adapters!.tensors)) expect(t.storage).toBe("F16");
    for (const t of Object.values(int8File.adapters!.tensors)) expect(t.storage).toBe("I8");
    // adapter data: 1 byte a value + 2 per row against 2 a value (the header grows by the row-scale entries)
    const adapterBytes = (f: string) => {
      const st = parseSafetensors(readFileSync(f), f);
      return st.names
        .filter((n) => n.startsWith("adapter."))
        .reduce((b, n) => b + st.tensors[n].byteLength, 0);
    };
    expect(adapterBytes(join(dir, "q2-int8.safetensors"))).toBeLessThan(adapterBytes(o2));
    const missing = await cli([...base, "-o", o2, "--holdout", join(dir, "nope.txt")]);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain("--holdout");
  }, 240_000);

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
    const h = await cli(["lrec", "--help"]);
    expect(h.code).toBe(0);
    for (const opt of [
      "--resume",
      "--fresh",
      "--diverge-factor",
      "--diverge-steps",
      "lrec-state.safetensors",
    ])
      expect(h.out).toContain(opt);
    const d = await cli(["lrec", q2, "--teacher", MODEL, "--data", DATA, "-o", out, "--diverge-steps", "0"]);
    expect(d.code).toBe(2);
    expect(d.err).toContain("--diverge-steps");
    const z = await cli([
      "lrec",
      q2,
      "--teacher",
      MODEL,
      "--data",
      DATA,
      "-o",
      out,
      "--init",
      "zero",
      "--loftq-iters",
      "2",
    ]);
    expect(z.code).toBe(2);
    expect(z.err).toContain("--loftq-iters starts the adapter at the low-rank part of the error");
    // the help says what the defaults are and how long they take
    expect(h.out).toMatch(/90\.6 % of the INT2 GPTQ gap/);
    expect(h.out).toMatch(/--steps <n> +optimizer steps \(default: 1000\)/);
  }, 30_000);
});
