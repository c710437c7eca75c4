import { mkdtempSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { checkPackage, importsOf } from "./layering";

const repoRoot = resolve(__dirname, "..", "..");
const layers = JSON.parse(readFileSync(join(repoRoot, "tools", "layers.json"), "utf8")) as Record<
  string,
  number
>;

describe("package layering", () => {
  const names = readdirSync(join(repoRoot, "packages"));
  it("every package folder is in the layer table", () => {
    for (const n of names) {
      const pkg = JSON.parse(readFileSync(join(repoRoot, "packages", n, "package.json"), "utf8"));
      expect(layers[pkg.name], `${pkg.name} missing from tools/layers.json`).toBeTypeOf("number");
    }
  });
  for (const n of names) {
    it(`${n} imports only packages below it, by name`, () => {
      expect(checkPackage(repoRoot, join(repoRoot, "packages", n), layers)).toEqual([]);
    });
  }

  it("finds import specifiers of every form", () => {
    const src = `import a from "x"; import { b } from 'y'; export * from "./z"; const c = await import("w"); require("v"); import "u";`;
    expect(importsOf(src).sort()).toEqual(["./z", "u", "v", "w", "x", "y"]);
  });

  it("flags an upward import and a sibling src/ import (the rule can fail)", () => {
    const root = mkdtempSync(join(tmpdir(), "int21-layer-"));
    const low = join(root, "packages", "low");
    const high = join(root, "packages", "high");
    for (const d of [low, high]) mkdirSync(join(d, "src"), { recursive: true });
    writeFileSync(
      join(low, "package.json"),
      JSON.stringify({ name: "@int21/low", dependencies: { "@int21/high": "*" } }),
    );
    writeFileSync(join(high, "package.json"), JSON.stringify({ name: "@int21/high" }));
    writeFileSync(
      join(low, "src", "a.ts"),
      `import { x } from "@int21/high";\nimport { y } from "../../high/src/y";\n`,
    );
    const v = checkPackage(root, low, { "@int21/low": 0, "@int21/high": 1 });
    expect(v.map((x) => x.reason)).toEqual([
      "depends on layer 1 from layer 0",
      "imports layer 1 (@int21/high) from layer 0 (@int21/low)",
      "reaches into another package's files instead of importing its package name",
    ]);
  });
});
