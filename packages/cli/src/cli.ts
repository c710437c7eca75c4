// The `int21` command dispatcher: `int21 <command> [options]`.
import { readFileSync } from "node:fs";
import { type CliIo, EXIT } from "./cli-io";
import { demo, demoProgram } from "./commands/demo";
import { evalCommand, evalProgram } from "./commands/eval";
import { exportCommand, exportProgram } from "./commands/export";
import { finetune, finetuneProgram } from "./commands/finetune";
import { generate, generateProgram } from "./commands/generate";
import { inspect, inspectProgram } from "./commands/inspect";
import { lrec, lrecProgram } from "./commands/lrec";
import { quantize, quantizeProgram } from "./commands/quantize";
import type { Command } from "commander";

/** A command of the `int21` CLI: its commander program (options, help) and its runner. */
export interface CliCommand {
  program: () => Command;
  run: (argv: readonly string[], io: CliIo) => Promise<number>;
}

/** Every command, by name. */
export const COMMANDS: Readonly<Record<string, CliCommand>> = {
  quantize: { program: quantizeProgram, run: quantize },
  lrec: { program: lrecProgram, run: lrec },
  finetune: { program: finetuneProgram, run: finetune },
  eval: { program: evalProgram, run: evalCommand },
  generate: { program: generateProgram, run: generate },
  inspect: { program: inspectProgram, run: inspect },
  export: { program: exportProgram, run: exportCommand },
  demo: { program: demoProgram, run: demo },
};

/** The package version. */
export function cliVersion(): string {
  return (
    JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
  ).version;
}

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  const lines = Object.entries(COMMANDS).map(
    ([n, c]) => `  ${n.padEnd(width)}  ${c.program().description()}`,
  );
  return [
    "usage: int21 <command> [options]      (int21 <command> --help for its options)",
    "",
    "commands:",
    ...lines,
    "",
    "<model> is a llama2.c .bin, a Hugging Face model directory or id, or an int21 checkpoint.",
    "exit codes: 0 success, 1 failure (bad or missing file, download, check), 2 bad command line.",
    "",
  ].join("\n");
}

/** Runs `int21 <argv…>` and returns its exit code; output goes to `io`. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    io.stdout.write(usage());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === "--version" || name === "-v") {
    io.stdout.write(`${cliVersion()}\n`);
    return EXIT.ok;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    io.stderr.write(`int21: unknown command "${name}" (commands: ${Object.keys(COMMANDS).join(", ")})\n`);
    return EXIT.usage;
  }
  return cmd.run(rest, io);
}
