// The model core (@int21/model-llama: config, weights, forward, train-forward, sampler, generate, eval,
// finetune, quantize) reads and writes no files itself: every file format lives in @int21/loaders, so the
// core bundles for a browser without stubbing node builtins. This check fails when a model-llama source
// (tests, test helpers under src/testing and benches excepted) imports node:fs, node:path or node:os.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { importsOf } from "./layering";

const repoRoot = resolve(__dirname, "..", "..");
const CORE = join(repoRoot, "packages", "model-llama", "src");
const FORBIDDEN = /^(node:)?(fs|fs\/promises|path|os)$/;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== "testing") out.push(...sources(p));
    } else if (/\.(ts|mts|cts|js|mjs)$/.test(name) && !/\.test\.|\.bench\./.test(name)) out.push(p);
  }
  return out;
}

/** `file: specifier` for every node:fs / node:path / node:os import (static, dynamic or require) in `src`. */
export function builtinImports(file: string, src: string): string[] {
  return importsOf(src)
    .filter((s) => FORBIDDEN.test(s))
    .map((s) => `${file}: ${s}`);
}

describe("the model core has no file system", () => {
  it("no non-test model-llama source imports node:fs, node:path or node:os (use @int21/loaders)", () => {
    const files = sources(CORE);
    expect(files.length).toBeGreaterThan(10);
    const found = files.flatMap((f) => builtinImports(relative(repoRoot, f), readFileSync(f, "utf8")));
    expect(found).toEqual([]);
  });

  it("the check sees static, dynamic and bare imports", () => {
    expect(builtinImports("a.ts", 'import { readFileSync } from "node:fs";')).toEqual(["a.ts: node:fs"]);
    expect(builtinImports("b.ts", 'const { mkdir } = await import("node:fs/promises");')).toEqual([
      "b.ts: node:fs/promises",
    ]);
    expect(builtinImports("c.ts", 'import { join } from "path";\nimport os from "os";')).toEqual([
      "c.ts: path",
      "c.ts: os",
    ]);
    expect(builtinImports("d.ts", 'import { x } from "./fs";\nimport { y } from "node:url";')).toEqual([]);
  });
});
