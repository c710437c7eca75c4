// Published packages name their int21 siblings with caret ranges of the sibling's current version
// (`"@int21/io": "^0.1.0"`), never `"*"`: a consumer must not receive a future major, and changesets
// (`updateInternalDependencies: "patch"`) rewrites these ranges whenever it bumps a sibling.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** One sibling dependency whose range is not `^<sibling version>`. */
export interface RangeProblem {
  pkg: string;
  field: string;
  dep: string;
  range: string;
  want: string;
}

interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/** Checks every published package under `packagesDir` (runtime, peer and optional dependencies). */
export function checkSiblingRanges(packagesDir: string): RangeProblem[] {
  const manifests: Manifest[] = readdirSync(packagesDir).map(
    (n) => JSON.parse(readFileSync(join(packagesDir, n, "package.json"), "utf8")) as Manifest,
  );
  const version = new Map(manifests.map((m) => [m.name, m.version]));
  const out: RangeProblem[] = [];
  for (const m of manifests) {
    if (m.private) continue;
    for (const field of ["dependencies", "peerDependencies", "optionalDependencies"] as const) {
      for (const [dep, range] of Object.entries(m[field] ?? {})) {
        const v = version.get(dep);
        if (v === undefined) continue;
        const want = `^${v}`;
        if (range !== want) out.push({ pkg: m.name, field, dep, range, want });
      }
    }
  }
  return out;
}
