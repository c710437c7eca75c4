import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import { cli, removeTempDirs, tempDir } from "../testing";

const MODEL = sharedPath(SHARED.stories260K);
afterAll(removeTempDirs);

/** A small Alpaca file: "Continue the story: <first sentence>" → the second sentence, from TinyStories. */
function alpacaFile(dir: string, n: number): string {
  const stories = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").split("<|endoftext|>");
  const recs: { instruction: string; input: string; output: string }[] = [];
  for (const s of stories) {
    const sentences = s.trim().split(/(?<=[.!?])\s+/);
    if (sentences.length >= 2)
      recs.push({ instruction: "Continue the story.", input: sentences[0], output: sentences[1] });
    if (recs.length === n) break;
  }
  const p = join(dir, "alpaca.json");
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

  it("rerunning with more steps resumes from the trainer checkpoint", async () => {
    const r = await cli([...args(15), "--json", "--quiet"]);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.out);
    expect(s.resumedFrom).toBe(10);
    expect(s.steps).toBe(15);
  }, 60_000);

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
});
