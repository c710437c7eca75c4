// Installs the packed tarballs of the published packages into a scratch folder and imports each
// from both ESM and CJS, exactly as a user's project would (requires `npm run build` first).
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const repo = resolve(__dirname, "..", "..");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
// Packages whose public API is in place; each must import from a packed tarball in ESM and CJS.
const CHECKED = [
  "bitpack",
  "io",
  "quant-kernels",
  "autograd",
  "gpu",
  "lora",
  "model-llama",
  "loaders",
  "lrec",
  "cli",
];

describe("packed tarballs import from ESM and CJS", () => {
  const scratch = mkdtempSync(join(tmpdir(), "int21-packed-"));
  const names: string[] = [];
  it("packs and installs", () => {
    const tarballs: string[] = [];
    for (const dir of CHECKED) {
      const pkgDir = join(repo, "packages", dir);
      expect(existsSync(join(pkgDir, "dist", "index.js")), `${dir} is not built: run npm run build`).toBe(
        true,
      );
      const out = execFileSync(npm, ["pack", "--silent", "--pack-destination", scratch], {
        cwd: pkgDir,
        encoding: "utf8",
      });
      tarballs.push(join(scratch, out.trim().split("\n").pop()!));
      names.push(JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")).name);
    }
    writeFileSync(
      join(scratch, "package.json"),
      JSON.stringify({ name: "scratch", version: "1.0.0", private: true }),
    );
    execFileSync(
      npm,
      ["install", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts", ...tarballs],
      {
        cwd: scratch,
        stdio: "pipe",
      },
    );
    for (const n of names)
      expect(existsSync(join(scratch, "node_modules", ...n.split("/"), "package.json"))).toBe(true);
    expect(readdirSync(join(scratch, "node_modules", "@int21")).sort()).toEqual(CHECKED.slice().sort());
  }, 120_000);

  it("imports each package with import() and require(), getting the same export names", () => {
    for (const n of names) {
      const esm = execFileSync(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `const m = await import(${JSON.stringify(n)}); console.log(JSON.stringify(Object.keys(m).sort()))`,
        ],
        {
          cwd: scratch,
          encoding: "utf8",
        },
      );
      const cjs = execFileSync(
        process.execPath,
        ["-e", `console.log(JSON.stringify(Object.keys(require(${JSON.stringify(n)})).sort()))`],
        {
          cwd: scratch,
          encoding: "utf8",
        },
      );
      expect(JSON.parse(cjs), `${n}: CJS and ESM export different names`).toEqual(JSON.parse(esm));
      expect(JSON.parse(esm).length, `${n} exports nothing`).toBeGreaterThan(0);
    }
  }, 60_000);

  it("bitpack works from the CJS build", () => {
    const out = execFileSync(
      process.execPath,
      [
        "-e",
        `const b = require("@int21/bitpack"); const w = b.packStream([1,2,3,4,5,6,7], 3); const o = new Uint8Array(7); b.unpackStream(w, 3, 7, o); console.log(Array.from(o).join(","))`,
      ],
      { cwd: scratch, encoding: "utf8" },
    );
    expect(out.trim()).toBe("1,2,3,4,5,6,7");
  });
});
