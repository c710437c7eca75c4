import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { openSafetensors } from "@int21/io";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, describe, expect, it } from "vitest";
import { cli, removeTempDirs, tempDir } from "../testing";

afterAll(removeTempDirs);

describe("int21 demo --quick (stories260K)", () => {
  it("writes the table, charts and checkpoints; every check passes; --json parses", async () => {
    const out = join(tempDir(), "demo-out");
    const r = await cli(["demo", "--quick", "-o", out, "--threads", "1", "--json", "--quiet"], {
      env: { INT21_SHARED: join(sharedPath(SHARED.stories260K), "..", "..", "..") },
    });
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const s = JSON.parse(r.out);
    expect(s.rows.map((x: { config: string }) => x.config.split(" (")[0])).toEqual([
      "float32",
      "INT2 RTN",
      "INT2 GPTQ",
      "INT2 GPTQ + LREC",
      "INT2 GPTQ + LREC + EMEF",
    ]);
    expect(s.checks.every((c: { passed: boolean }) => c.passed)).toBe(true);
    // the float model's greedy sample is llama2.c's
    expect(s.rows[0].sample.startsWith("Once upon a time, there was a little girl named Lily.")).toBe(true);
    for (const f of [
      "summary.md",
      "summary.json",
      "perplexity.svg",
      "loss.svg",
      "stories260K-int2-gptq.safetensors",
      "stories260K-int2-gptq-lrec.safetensors",
      "emef-adapter/adapter_config.json",
    ])
      expect(existsSync(join(out, f))).toBe(true);
    // bits/weight count the float32 adapter: 2.5 + 32 · adapter parameters / linear weights (226,560 here)
    const ck = await openSafetensors(join(out, "stories260K-int2-gptq-lrec.safetensors"));
    const adapterParams = ck.names
      .filter((n) => n.includes("lora_"))
      .reduce((a, n) => a + ck.tensors[n].shape.reduce((x, y) => x * y, 1), 0);
    await ck.close();
    expect(adapterParams).toBeGreaterThan(0);
    const lrecBits = 2.5 + (32 * adapterParams) / 226_560;
    expect(readFileSync(join(out, "summary.md"), "utf8")).toContain(
      `| INT2 GPTQ + LREC (r 8, 10 steps) | ${lrecBits.toFixed(2)} |`,
    );
    expect(s.rows[4].bitsPerWeight).toBeGreaterThan(s.rows[3].bitsPerWeight);
    expect(readFileSync(join(out, "perplexity.svg"), "utf8").match(/<rect x=/g)).toHaveLength(5);
    expect(readFileSync(join(out, "loss.svg"), "utf8")).toContain("<polyline");
  }, 120_000);

  it("names a missing model (exit 1)", async () => {
    const r = await cli(["demo", "--model", "/nonexistent/stories.bin", "--quick"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("--model /nonexistent/stories.bin: no such file");
  });

  it("takes --lrec-steps and --steps (checked as positive integers)", async () => {
    const bad = await cli(["demo", "--lrec-steps", "0"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("--lrec-steps <n>' argument '0' is invalid. expected an integer in [1, ∞]");
    // accepted: the run gets as far as the (missing) model
    const ok = await cli(["demo", "--lrec-steps", "5", "--steps", "4", "--model", "/nonexistent/m.bin"]);
    expect(ok.code).toBe(1);
    expect(ok.err).toContain("--model /nonexistent/m.bin: no such file");
  });
});
