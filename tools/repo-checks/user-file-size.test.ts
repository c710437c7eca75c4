// The promise, kept: a user adds a format and a quantizer and fine-tunes with them in at most 40 lines of
// code (examples/custom-format-and-quantizer, which CI runs with the other examples).
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";

const file = resolve(__dirname, "..", "..", "examples", "custom-format-and-quantizer", "src", "main.ts");

describe("examples/custom-format-and-quantizer", () => {
  it("is a user file of at most 40 lines of code that registers a format and a quantizer and fine-tunes", () => {
    const src = readFileSync(file, "utf8");
    const code = src.split("\n").filter((l) => l.trim() !== "" && !l.trim().startsWith("//"));
    expect(code.length).toBeLessThanOrEqual(40);
    for (const call of ["registerFormat(", "registerQuantizer(", "quantizeModel(", "finetune("])
      expect(src).toContain(call);
    // a user file: only the packages' public entries, never their sources
    expect(src).not.toMatch(/from "(\.\.\/)+packages|@int21\/[a-z-]+\/src/);
  });
});
