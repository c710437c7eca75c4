// Package layering rules for int21 (see tools/layers.json):
// a package may import only packages of a strictly lower layer, and only by package name,
// never through a relative path into another package's folder.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve, sep } from "node:path";

export interface Violation {
  file: string;
  specifier: string;
  reason: string;
}

const IMPORT_RE =
  /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|require\s*\(\s*['"]([^'"]+)['"]\s*\)|import\s+['"]([^'"]+)['"]/g;

function* walk(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name === "dist") continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* walk(p);
    else if (/\.(ts|tsx|mts|cts|js|mjs|cjs)$/.test(name)) yield p;
  }
}

/** Every import specifier in a source text. */
export function importsOf(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(IMPORT_RE)) out.push(m[1] ?? m[2] ?? m[3] ?? m[4]);
  return out;
}

/** Checks one package folder against the layer table; returns every violation found. */
export function checkPackage(repoRoot: string, pkgDir: string, layers: Record<string, number>): Violation[] {
  const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as {
    name: string;
    dependencies?: Record<string, string>;
  };
  const own = layers[pkg.name];
  if (own === undefined)
    return [{ file: pkgDir, specifier: pkg.name, reason: "package missing from tools/layers.json" }];
  const out: Violation[] = [];
  for (const dep of Object.keys(pkg.dependencies ?? {})) {
    const l = layers[dep];
    if (l !== undefined && l >= own)
      out.push({
        file: join(pkgDir, "package.json"),
        specifier: dep,
        reason: `depends on layer ${l} from layer ${own}`,
      });
  }
  const packagesRoot = resolve(repoRoot, "packages");
  for (const file of walk(pkgDir)) {
    const text = readFileSync(file, "utf8");
    for (const spec of importsOf(text)) {
      if (spec.startsWith("@int21/")) {
        const name = spec.split("/").slice(0, 2).join("/");
        const l = layers[name];
        if (l === undefined) continue; // private tools (shared-data) are allowed in tests
        if (name !== pkg.name && l >= own)
          out.push({
            file,
            specifier: spec,
            reason: `imports layer ${l} (${name}) from layer ${own} (${pkg.name})`,
          });
        if (name === pkg.name && !/\.(test|bench)\.ts$/.test(file) && !file.includes(`${sep}bench${sep}`))
          out.push({ file, specifier: spec, reason: "a package's source imports itself by name" });
      } else if (spec.startsWith(".")) {
        const target = resolve(file, "..", spec);
        const rel = relative(packagesRoot, target);
        if (!rel.startsWith("..") && !target.startsWith(pkgDir + sep) && target !== pkgDir)
          out.push({
            file,
            specifier: spec,
            reason: "reaches into another package's files instead of importing its package name",
          });
      }
    }
  }
  return out;
}
