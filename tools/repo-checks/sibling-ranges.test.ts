import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { checkSiblingRanges } from "./sibling-ranges";

const repoRoot = resolve(__dirname, "..", "..");

describe("sibling dependency ranges", () => {
  it("every published package names its int21 siblings as ^<their version>", () => {
    expect(checkSiblingRanges(join(repoRoot, "packages"))).toEqual([]);
  });

  it("flags a star range and a stale caret (the rule can fail)", () => {
    const root = mkdtempSync(join(tmpdir(), "int21-ranges-"));
    const put = (n: string, j: object) => {
      mkdirSync(join(root, n));
      writeFileSync(join(root, n, "package.json"), JSON.stringify(j));
    };
    put("a", { name: "@int21/a", version: "0.2.0" });
    put("b", { name: "@int21/b", version: "0.1.0", dependencies: { "@int21/a": "*", other: "*" } });
    put("c", { name: "@int21/c", version: "0.1.0", peerDependencies: { "@int21/a": "^0.1.0" } });
    put("d", { name: "@int21/d", version: "0.0.0", private: true, dependencies: { "@int21/a": "*" } });
    expect(checkSiblingRanges(root)).toEqual([
      { pkg: "@int21/b", field: "dependencies", dep: "@int21/a", range: "*", want: "^0.2.0" },
      { pkg: "@int21/c", field: "peerDependencies", dep: "@int21/a", range: "^0.1.0", want: "^0.2.0" },
    ]);
  });
});
