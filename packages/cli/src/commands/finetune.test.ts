import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import { cli, removeTempDirs, tempDir } from "../testing";
import { FINETUNE_OUTPUTS } from "./finetune";

const MODEL = sharedPath(SHARED.stories260K);
afterAll(removeTempDirs);

/** A small Alpaca file: "Continue the story: <first sentence>" → the second sentence, from TinyStories. */
function alpacaFile(dir: string, n: number, skip = 0, name = "alpaca.json"): string {
  const stories = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").split("<|endoftext|>");
  const recs: { instruction: string; input: string; output: string }[] = [];
  for (const s of stories.slice(skip)) {
    const sentences = s.trim().split(/(?<=[.!?])\s+/);
    if (sentences.length >= 2)
      recs.push({ instruction: "Continue the story.", input: sentences[0], output: sentences[1] });
    if (recs.length === n) break;
  }
  const p = join(dir, name);
  writeFileSync(p, JSON.stringify(recs, null, 1));
  return p;
}

describe("int21 finetune (EMEF on stories260K packed to INT4)", () => {
  const dir = tempDir();
  const data = alpacaFile(dir, 120);
  const out = join(dir, "adapter");
  const args = (steps: number) => [
    "finetune",
    MODEL,
    "--bits",
    "4",
    "--data",
    data,
    "--steps",
    String(steps),
    "--rank",
    "4",
    "--lr",
    "5e-3",
    "--seq",
    "256",
    "--batch",
    "2",
    "--checkpoint-every",
    "5",
    "-o",
    out,
    "--threads",
    "1",
  ];

  it("trains, writes the PEFT adapter, loss chart and history; the loss falls", async () => {
    const r = await cli([...args(10), "--json"]);
    expect(r.err).toContain("finetune [");
    expect(r.err).not.toContain("load stories260K.bin [");
    expect(r.code).toBe(0);
    const s = JSON.parse(r.out);
    expect(s.steps).toBe(10);
    expect(s.resumedFrom).toBe(0);
    expect(s.data.kind).toBe("alpaca");
    // 5 layers × (q: 4·(64+64) + v: 4·(64+32)) LoRA parameters
    expect(s.trainableParameters).toBe(5 * (4 * 128 + 4 * 96));
    for (const f of [
      "adapter_config.json",
      "adapter_model.safetensors",
      "loss.svg",
      "history.json",
      "trainer/trainer-state.safetensors",
    ])
      expect(existsSync(join(out, f))).toBe(true);
    const h = JSON.parse(readFileSync(join(out, "history.json"), "utf8"));
    const first = (h.train as [number, number][]).slice(0, 3).reduce((a, [, l]) => a + l, 0) / 3;
    const last = (h.train as [number, number][]).slice(-3).reduce((a, [, l]) => a + l, 0) / 3;
    expect(last).toBeLessThan(first);
    expect(s.heldOutLoss).toBeGreaterThan(0);
  }, 60_000);

  it("writes a README.md with the Alpaca template the adapter expects; --help shows it too", async () => {
    const readme = readFileSync(join(out, "README.md"), "utf8");
    expect(readme).toContain("### Instruction:");
    expect(readme).toContain("### Response:");
    expect(readme).toContain(`int21 generate ${MODEL} --adapter ${out}`);
    expect(readme).toMatch(/quantized to 4 bits/);
    const h = await cli(["finetune", "--help"]);
    expect(h.code).toBe(0);
    expect(h.out).toContain("Alpaca prompt template");
    expect(h.out).toContain("    ### Input:\n    {input}");
    for (const opt of ["--resume", "--fresh", "--diverge-factor", "--diverge-steps", "--max-drop"])
      expect(h.out).toContain(opt);
    expect(h.out).toContain("(default: 1.5)");
  });

  it("an identical rerun of the finished run says so and rewrites nothing", async () => {
    const files = [
      ...FINETUNE_OUTPUTS.map((f) => join(out, f)),
      join(out, "trainer/trainer-state.safetensors"),
    ];
    const before = files.map((f) => statSync(f).mtimeMs);
    const r = await cli([...args(10), "--quiet"]);
    expect(r.err).toBe(`--data ${data}: kept 120 of 120 Alpaca records\n`);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /^this run is already finished \(10 of 10 steps; checkpoint .*trainer\/\); nothing was trained or written\.\n/,
    );
    expect(r.out).toContain(`its outputs are in ${out}/: adapter_config.json, adapter_model.safetensors`);
    expect(files.map((f) => statSync(f).mtimeMs)).toEqual(before);
  }, 60_000);

  it("a rerun with other data, lr, rank or steps stops, listing each difference and --fresh / --resume", async () => {
    const other = alpacaFile(dir, 100, 300, "other.json");
    const a = args(10).map((x) => (x === data ? other : x === "5e-3" ? "1e-2" : x));
    const r = await cli([...a, "--quiet"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(
      `int21 finetune: ${join(out, "trainer")}/ holds step 10 of a different run; it differs in:\n`,
    );
    expect(r.err).toMatch(/\n {2}lr: 0\.005 → 0\.01\n/);
    expect(r.err).toMatch(/\n {2}data: sha256:[0-9a-f]{12}… → sha256:[0-9a-f]{12}…\n/);
    expect(r.err).toMatch(/\n {2}trainExamples: /);
    expect(r.err).toContain("Rerun with --fresh to start over");
    expect(r.err).toContain("or with --resume to continue from step 10 with these settings");
    const rank = await cli([...args(10), "--rank", "2", "--quiet"]);
    expect(rank.code).toBe(1);
    expect(rank.err).toMatch(/\n {2}rank: 4 → 2\n/);
    expect(rank.err).toContain("--fresh");
    // --resume cannot make a rank-2 adapter out of a rank-4 checkpoint: says --fresh
    const rank2 = await cli([...args(10), "--rank", "2", "--resume", "--quiet"]);
    expect(rank2.code).toBe(1);
    expect(rank2.err).toMatch(/cannot be continued with these settings; rerun with --fresh/);
  }, 60_000);

  it("--resume continues a finished run with more steps", async () => {
    const more = await cli([...args(15), "--quiet"]);
    expect(more.code).toBe(1);
    expect(more.err).toMatch(/\n {2}steps: 10 → 15\n/);
    const r = await cli([...args(15), "--resume", "--json", "--quiet"]);
    expect(r.err).toContain("--resume: continuing");
    expect(r.code).toBe(0);
    const s = JSON.parse(r.out);
    expect(s.resumedFrom).toBe(10);
    expect(s.resumedDespite).toContain("steps");
    expect(s.steps).toBe(15);
    expect(s.skippedSteps).toBe(0);
  }, 60_000);

  it("an absurd --lr stops as diverged (exit 1); the last good checkpoint and adapter are kept, nothing else written", async () => {
    const o = join(dir, "diverge");
    const a = args(4).map((x) => (x === out ? o : x));
    expect((await cli([...a, "--quiet"])).code).toBe(0);
    const files = [...FINETUNE_OUTPUTS.map((f) => join(o, f)), join(o, "trainer/trainer-state.safetensors")];
    const before = files.map((f) => statSync(f).mtimeMs);
    const adapter = readFileSync(join(o, "adapter_model.safetensors"));
    const big = args(60).map((x) => (x === out ? o : x === "5e-3" ? "10" : x));
    const r = await cli([...big, "--resume", "--diverge-steps", "5", "--quiet"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      /training diverged at step \d+: the loss .* stayed above 1\.5 × its running minimum .* for 5 steps in a row; the last good checkpoint \(step \d+\) is kept in .*Nothing else was written; rerun with a lower --lr and --resume to continue from step \d+, or --fresh\./,
    );
    const kept = Number(/last good checkpoint \(step (\d+)\)/.exec(r.err)?.[1]);
    expect(kept).toBeGreaterThanOrEqual(4);
    expect(kept).toBeLessThan(60);
    // loss.svg, history.json and README.md are the 4-step run's; the adapter is that of the last good checkpoint
    expect(statSync(join(o, "history.json")).mtimeMs).toBe(before[3]);
    expect(statSync(join(o, "loss.svg")).mtimeMs).toBe(before[2]);
    if (kept === 4) expect(readFileSync(join(o, "adapter_model.safetensors")).equals(adapter)).toBe(true);
    // the default guard (20 steps) stops it too
    const fresh = join(dir, "diverge-default");
    const d = await cli([...big.map((x) => (x === o ? fresh : x)), "--quiet"]);
    expect(d.code).toBe(1);
    expect(d.err).toMatch(/for 20 steps in a row; no checkpoint was written before the loss went bad/);
    expect(existsSync(join(fresh, "adapter_model.safetensors"))).toBe(false);
    expect(existsSync(join(fresh, "history.json"))).toBe(false);
  }, 120_000);

  it("counts and reports dropped and cut records; --max-drop fails the run when too many are dropped", async () => {
    const recs = Array.from({ length: 10 }, (_, i) => ({
      instruction: "Continue the story.",
      input: i < 4 ? "Tom had a big red ball. ".repeat(12) : "Tom had a ball.",
      output:
        i === 9
          ? "He played with it all day long in the sun with his dog and his mom and his dad. ".repeat(3)
          : "He played.",
    }));
    const f = join(dir, "long.json");
    writeFileSync(f, JSON.stringify(recs));
    const o = join(dir, "drops");
    const base = [
      "finetune",
      MODEL,
      "--data",
      f,
      "--seq",
      "200",
      "--steps",
      "1",
      "--batch",
      "1",
      "-o",
      o,
      "--threads",
      "1",
      "--quiet",
    ];
    const r = await cli([...base, "--json"]);
    expect(r.code).toBe(0);
    expect(r.err).toBe(
      `--data ${f}: kept 6 of 10 Alpaca records (4 dropped: their prompt alone is longer than --seq 200; 1 cut to --seq 200 tokens)\n`,
    );
    const s = JSON.parse(r.out);
    expect(s.data).toMatchObject({ records: 10, kept: 6, dropped: 4, truncated: 1 });
    const strict = await cli([...base, "--max-drop", "0.3", "--fresh"]);
    expect(strict.code).toBe(1);
    expect(strict.err).toContain(
      `--data ${f}: 4 of 10 records dropped (their prompt alone is longer than --seq 200), more than --max-drop 0.3 (3 records); raise --seq or --max-drop`,
    );
    expect((await cli([...base, "--max-drop", "4", "--fresh"])).code).toBe(0);
    expect((await cli([...base, "--max-drop", "3", "--fresh"])).code).toBe(1);
    // plain text: tokens, documents, windows and the unused tail
    const t = await cli([
      "finetune",
      MODEL,
      "--data",
      sharedPath(SHARED.tinystoriesValid),
      "--seq",
      "64",
      "--steps",
      "1",
      "-o",
      join(dir, "text"),
      "--threads",
      "1",
      "--quiet",
    ]);
    expect(t.code).toBe(0);
    expect(t.err).toMatch(
      /: \d+ tokens in \d+ documents → \d+ windows of --seq 64 tokens \(\d+ tokens at the end unused\)\n$/,
    );
  }, 90_000);

  it("the adapter changes what generate and inspect see", async () => {
    const q = join(dir, "q4.safetensors");
    expect(
      (await cli(["quantize", MODEL, "--bits", "4", "--method", "rtn", "-o", q, "--quiet", "--threads", "1"]))
        .code,
    ).toBe(0);
    const g = [
      "generate",
      q,
      "--prompt",
      "Once upon a time",
      "--temperature",
      "0",
      "--steps",
      "40",
      "--quiet",
      "--threads",
      "1",
    ];
    const base = await cli(g);
    const adapted = await cli([...g, "--adapter", out]);
    expect(adapted.code).toBe(0);
    expect(adapted.out).not.toBe(base.out);
    const i = JSON.parse((await cli(["inspect", out, "--json"])).out);
    expect(i.kind).toBe("peft-adapter");
    expect(i.config.r).toBe(4);
    expect(i.tensors).toHaveLength(20);
  }, 60_000);

  it("--max-resident-mb 0 (each packed layer re-packed when used) trains to the same losses", async () => {
    const run = async (extra: string[], o: string) => {
      const short = args(3).map((a) => (a === out ? o : a));
      const r = await cli([...short, "--json", "--quiet", ...extra]);
      expect(r.code).toBe(0);
      return (JSON.parse(readFileSync(join(o, "history.json"), "utf8")).train as [number, number][]).map(
        ([, l]) => l,
      );
    };
    const plain = await run([], join(dir, "res-default"));
    const bounded = await run(["--max-resident-mb", "0"], join(dir, "res-zero"));
    expect(bounded).toHaveLength(3);
    expect(bounded).toEqual(plain);
    for (const [opt, v] of [
      ["--max-drop", "1.5"],
      ["--max-drop", "-1"],
      ["--diverge-factor", "1"],
      ["--diverge-steps", "0"],
    ]) {
      const b = await cli(["finetune", MODEL, "--data", data, "-o", out, opt, v]);
      expect(b.code).toBe(2);
      expect(b.err).toContain(opt);
    }
    const bad = await cli(["finetune", MODEL, "--data", data, "-o", out, "--max-resident-mb", "-5"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("--max-resident-mb");
  }, 60_000);

  it("bad arguments name the option (exit 2); a missing data file is named (exit 1)", async () => {
    const rank = await cli(["finetune", MODEL, "--data", data, "--rank", "0", "-o", out]);
    expect(rank.code).toBe(2);
    expect(rank.err).toContain("--rank");
    const noOut = await cli(["finetune", MODEL, "--data", data]);
    expect(noOut.code).toBe(2);
    expect(noOut.err).toContain("--output");
    const missing = await cli(["finetune", MODEL, "--data", join(dir, "nope.json"), "-o", out]);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain(`--data ${join(dir, "nope.json")}: no such file`);
    const badJson = join(dir, "bad.json");
    writeFileSync(badJson, '[{"instruction": "x"}]');
    const bj = await cli([
      "finetune",
      MODEL,
      "--data",
      badJson,
      "-o",
      join(dir, "o2"),
      "--threads",
      "1",
      "--quiet",
    ]);
    expect(bj.code).toBe(1);
    expect(bj.err).toContain(badJson);
  }, 30_000);

  it("--embedding-bits packs the frozen token embedding too; it needs --bits and enters the run's identity", async () => {
    const o = join(dir, "emb8");
    const a = (extra: string[]) =>
      args(2)
        .map((x) => (x === out ? o : x))
        .concat(extra, ["--quiet"]);
    const r = await cli([...a(["--embedding-bits", "8"]), "--json"]);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.out);
    expect(s.embedding).toBe("int8-g64-asym-f16");
    expect(Number.isFinite(s.lastLoss)).toBe(true);
    expect(readFileSync(join(o, "README.md"), "utf8")).toMatch(/token embedding 8 bits/);
    // the same run with a float embedding is another run
    const f = await cli(a([]));
    expect(f.code).toBe(1);
    expect(f.err).toMatch(/embeddingBits/);
    const noBits = await cli(["finetune", MODEL, "--data", data, "--embedding-bits", "8", "-o", o]);
    expect(noBits.code).toBe(2);
    expect(noBits.err).toContain("--embedding-bits needs --bits");
    const six = await cli([...a(["--embedding-bits", "6"])]);
    expect(six.code).toBe(2);
    expect(six.err).toContain("--embedding-bits");
  }, 60_000);
});
