// The README's Quick start is run as written and must print the README's Output block.
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const pkg = resolve(__dirname, "..");

/** The first fenced block of `lang` after `heading` in `md`. */
function block(md: string, heading: string, lang: string): string {
  const at = md.indexOf(heading);
  if (at < 0) throw new Error(`README.md: no "${heading}"`);
  const m = new RegExp("```" + lang + "\\n([\\s\\S]*?)```").exec(md.slice(at));
  if (!m) throw new Error(`README.md: no \`\`\`${lang} block after "${heading}"`);
  return m[1];
}

describe("README", () => {
  it("the Quick start prints the Output block", () => {
    const md = readFileSync(join(pkg, "README.md"), "utf8");
    const code = block(md, "## Quick start", "ts");
    const expected = block(md, "\nOutput", "");
    // inside the package, so that @int21/* resolve as they do for a user of the built packages
    const file = join(pkg, `.readme-example-${process.pid}.ts`);
    writeFileSync(file, code);
    try {
      const tsx = resolve(pkg, "..", "..", "node_modules", ".bin", "tsx");
      const r = spawnSync(tsx, [file], { cwd: pkg, encoding: "utf8", timeout: 120_000 });
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe(expected);
    } finally {
      rmSync(file, { force: true });
    }
  });
});
