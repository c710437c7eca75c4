import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  DivergenceGuard,
  diffRunIdentity,
  formatRunDifferences,
  hashPathContents,
  RunMismatchError,
} from "./run-identity";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("run identities", () => {
  it("lists each differing field, old → new, including fields only one side has", () => {
    const d = diffRunIdentity(
      { lr: 0.002, targets: ["q_proj", "v_proj"], data: "sha256:aaaa", gone: 1 },
      { lr: 10, targets: ["q_proj", "v_proj"], data: "sha256:bbbb", added: true },
    );
    expect(d.map((x) => x.field)).toEqual(["lr", "data", "added", "gone"]);
    expect(formatRunDifferences(d).split("\n")).toEqual([
      "  lr: 0.002 → 10",
      "  data: sha256:aaaa… → sha256:bbbb…",
      "  added: (none) → true",
      "  gone: 1 → (none)",
    ]);
    expect(diffRunIdentity({ t: ["a", "b"] }, { t: ["a", "b"] })).toEqual([]);
    expect(diffRunIdentity({ t: ["a", "b"] }, { t: ["b", "a"] })).toHaveLength(1);
    expect(new RunMismatchError("x.safetensors", 7, d).message).toMatch(
      /^x\.safetensors \(step 7\) belongs to a different run/,
    );
  });

  it("hashes file and directory contents, not names of paths or times", async () => {
    const root = mkdtempSync(join(tmpdir(), "int21-hash-"));
    dirs.push(root);
    const a = join(root, "a.txt");
    const b = join(root, "b.txt");
    writeFileSync(a, "hello");
    writeFileSync(b, "hello");
    expect(await hashPathContents(a)).toBe(await hashPathContents(b));
    // sha256("hello")
    expect(await hashPathContents(a)).toBe(
      "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    );
    writeFileSync(b, "hellO");
    expect(await hashPathContents(b)).not.toBe(await hashPathContents(a));
    const d1 = join(root, "m1");
    const d2 = join(root, "m2");
    for (const d of [d1, d2]) {
      mkdirSync(d);
      writeFileSync(join(d, "config.json"), "{}");
      writeFileSync(join(d, "model.safetensors"), "weights");
    }
    writeFileSync(join(d2, ".lock"), "ignored");
    expect(await hashPathContents(d1)).toBe(await hashPathContents(d2));
    writeFileSync(join(d2, "model.safetensors"), "weightz");
    expect(await hashPathContents(d1)).not.toBe(await hashPathContents(d2));
  });
});

describe("DivergenceGuard", () => {
  it("counts steps above factor × the running minimum of 5-step means, and non-finite steps", () => {
    const g = new DivergenceGuard({ factor: 2, steps: 3 });
    for (const l of [6, 5, 4, 3, 2]) expect(g.observe(l)).toBe(false);
    expect(g.best).toBe(4); // mean of the five
    expect(g.observe(8.5)).toBe(false);
    expect(g.streak).toBe(1);
    expect(g.observe(3)).toBe(false); // a good step ends the streak
    expect(g.streak).toBe(0);
    expect(g.observe(9)).toBe(false);
    expect(g.observe(Number.NaN)).toBe(false);
    expect(g.observe(100)).toBe(true);
    expect(g.describe()).toMatch(/above 2 × its running minimum \(4\.000\)/);
  });

  it("a lucky batch inside a diverged stretch does not end the streak: the 5-step mean stays high", () => {
    const g = new DivergenceGuard({ steps: 6 }); // default factor 1.5
    expect(g.factor).toBe(1.5);
    for (const l of [2, 2, 2, 2, 2, 4, 4, 4, 4]) expect(g.observe(l)).toBe(false);
    expect(g.streak).toBe(4);
    expect(g.observe(2.9)).toBe(false); // below 1.5 × 2 itself, but the mean (3.78) is not
    expect(g.streak).toBe(5);
    expect(g.observe(4)).toBe(true);
    // the first loss alone is a bar: an absurd step right after it is bad at once
    const h = new DivergenceGuard();
    h.observe(3.2);
    h.observe(12);
    expect(h.streak).toBe(1);
  });

  it("one easy batch does not set the bar: a single low loss barely moves the minimum", () => {
    const g = new DivergenceGuard({ factor: 2, steps: 2 });
    for (const l of [2, 2, 2, 2, 0.01, 2, 2, 2, 2, 2, 2]) expect(g.observe(l)).toBe(false);
    expect(g.best).toBeCloseTo(1.602, 3);
  });

  it("rejects bad options", () => {
    expect(() => new DivergenceGuard({ factor: 0.5 })).toThrow(/factor must be a number > 1, got 0.5/);
    expect(() => new DivergenceGuard({ steps: 1.5 })).toThrow(/steps must be a positive integer, got 1.5/);
  });
});
