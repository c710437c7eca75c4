// Every file a package writes goes through @int21/io's writeFileAtomic / writeFileAtomicStream (temp file, fsync,
// rename; errors name the file). This check fails when package source calls a node:fs write function directly.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const repoRoot = resolve(__dirname, "..", "..");
/** The one module allowed to call node:fs writes. */
const ALLOWED = new Set(["packages/io/src/atomic-write.ts"]);
const WRITES =
  /\b(writeFile|writeFileSync|createWriteStream|appendFile|appendFileSync|copyFile|copyFileSync|cp|cpSync|rename|renameSync|truncate|truncateSync)\s*[,(})]/g;
const FS_IMPORT = /["'](node:)?fs(\/promises)?["']/;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (/\.(ts|mts|js|mjs)$/.test(name) && !/\.test\.|\.bench\./.test(name) && name !== "testing.ts")
      out.push(p);
  }
  return out;
}

/** `file:line: text` for every direct node:fs write in `src` (empty when the file does not import node:fs). */
function directWrites(file: string, src: string): string[] {
  if (!FS_IMPORT.test(src)) return [];
  const out: string[] = [];
  src.split("\n").forEach((line, i) => {
    if (/^\s*(\/\/|\*)/.test(line)) return;
    for (const m of line.matchAll(WRITES)) out.push(`${file}:${i + 1}: ${m[1]}`);
  });
  return out;
}

describe("atomic writes", () => {
  it("no package source writes files with node:fs directly (use @int21/io's writeFileAtomic)", () => {
    const found: string[] = [];
    for (const pkg of readdirSync(join(repoRoot, "packages"))) {
      const src = join(repoRoot, "packages", pkg, "src");
      for (const f of sources(src)) {
        const rel = relative(repoRoot, f);
        if (!ALLOWED.has(rel)) found.push(...directWrites(rel, readFileSync(f, "utf8")));
      }
    }
    expect(found).toEqual([]);
  });

  it("the check sees static and dynamic imports of node:fs and ignores comments", () => {
    expect(
      directWrites("a.ts", 'import { writeFile } from "node:fs/promises";\nawait writeFile(p, d);'),
    ).toEqual(["a.ts:1: writeFile", "a.ts:2: writeFile"]);
    expect(directWrites("b.ts", 'const { rename } = await import("node:fs/promises");')).toEqual([
      "b.ts:1: rename",
    ]);
    expect(
      directWrites("c.ts", 'import { readFileSync } from "fs";\n// writeFileSync(p) in a comment'),
    ).toEqual([]);
    expect(directWrites("d.ts", "writeFile(p, d); // no fs import: someone else's writeFile")).toEqual([]);
  });
});
