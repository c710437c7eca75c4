import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { COMMANDS } from "./cli";
import {
  commandDoc,
  compareOptionDocs,
  DOCS_END,
  DOCS_START,
  generatedBlock,
  parseCliReference,
  parseHelpOptions,
  renderCliReference,
  replaceGenerated,
  splitDefault,
} from "./cli-docs";
import { cli } from "./testing";

const README = readFileSync(new URL("../README.md", import.meta.url), "utf8");

describe("splitDefault", () => {
  it("reads commander's and hand-written defaults from the trailing group", () => {
    expect(splitDefault("bits per weight code (default: 2)")).toEqual({
      description: "bits per weight code",
      default: "2",
    });
    expect(splitDefault('rtn or gptq (choices: "rtn", "gptq", default: "gptq")')).toEqual({
      description: 'rtn or gptq (choices: "rtn", "gptq")',
      default: '"gptq"',
    });
    expect(splitDefault("tokens per window (default: min(256, seqLen))")).toEqual({
      description: "tokens per window",
      default: "min(256, seqLen)",
    });
    expect(splitDefault("LoRA alpha (scaling = alpha / rank; default 2 × rank)")).toEqual({
      description: "LoRA alpha (scaling = alpha / rank)",
      default: "2 × rank",
    });
    expect(splitDefault("LoRA alpha (default 2 × rank)").default).toBe("2 × rank");
    expect(splitDefault("threads (0 = plain JavaScript)")).toEqual({
      description: "threads (0 = plain JavaScript)",
      default: "",
    });
    expect(splitDefault("no group at all")).toEqual({ description: "no group at all", default: "" });
  });
});

describe("parseHelpOptions", () => {
  it("unwraps continuation lines and leaves out --help", () => {
    const help = [
      "Usage: x [options]",
      "",
      "Options:",
      "  --group <n>          input columns per scale group (-1 = one group per row)",
      "                       (default: 64)",
      "  -o, --output <file>  the file",
      "  --json               print JSON (default:",
      "                       false)",
      "  -h, --help           display help for command",
      "",
    ].join("\n");
    expect(parseHelpOptions(help)).toEqual([
      {
        term: "--group <n>",
        description: "input columns per scale group (-1 = one group per row)",
        default: "64",
      },
      { term: "-o, --output <file>", description: "the file", default: "" },
      { term: "--json", description: "print JSON", default: "false" },
    ]);
  });
});

describe("the README's CLI reference", () => {
  const block = generatedBlock(README);

  it("is what the generator writes from the commander definitions (run `npm run docs -w @int21/cli`)", () => {
    expect(block, `README.md lacks the markers ${DOCS_START} … ${DOCS_END}`).toBeDefined();
    const docs = Object.entries(COMMANDS).map(([n, c]) => commandDoc(n, c.program()));
    expect(replaceGenerated(README, renderCliReference(docs))).toBe(README);
  });

  it("agrees with every command's --help: the same options, defaults and descriptions, both ways", async () => {
    const documented = parseCliReference(block ?? "");
    expect([...documented.keys()].sort()).toEqual(Object.keys(COMMANDS).sort());
    const problems: string[] = [];
    for (const name of Object.keys(COMMANDS)) {
      const r = await cli([name, "--help"]);
      expect(r.code).toBe(0);
      const help = parseHelpOptions(r.out);
      expect(help.length).toBeGreaterThan(0);
      problems.push(...compareOptionDocs(name, documented.get(name) ?? [], help));
    }
    expect(problems).toEqual([]);
  }, 60_000);

  it("the comparison catches a changed default, a missing option and an extra one", async () => {
    const r = await cli(["demo", "--help"]);
    const help = parseHelpOptions(r.out);
    const readme = parseCliReference(block ?? "").get("demo") ?? [];
    const steps = readme.find((o) => o.term === "--steps <n>");
    expect(steps?.default).toBe("150; 10 with --quick");
    const tampered = readme
      .filter((o) => o.term !== "--lrec-steps <n>")
      .map((o) => (o.term === "--steps <n>" ? { ...o, default: "300; 12 with --quick" } : o))
      .concat([{ term: "--turbo", default: "", description: "made up" }]);
    expect(compareOptionDocs("demo", tampered, help).sort()).toEqual(
      [
        'demo: --steps <n> defaults to "150; 10 with --quick" in --help, "300; 12 with --quick" in the README',
        "demo: --lrec-steps <n> is in --help but not in the README",
        "demo: --turbo is in the README but not in --help",
      ].sort(),
    );
  });

  it("replaceGenerated refuses a README without the markers", () => {
    expect(() => replaceGenerated("# x\n", "y")).toThrow(/markers .* are missing/);
  });
});
