// What `int21 finetune` and `int21 lrec` share about training runs: the run-identity and divergence
// options, content hashes of their inputs, and the messages for a different run, a diverged one and a
// finished one.
import {
  DEFAULT_DIVERGE_FACTOR,
  DEFAULT_DIVERGE_STEPS,
  type DivergenceOptions,
  formatRunDifferences,
  hashPathContents,
  type RunDifference,
  RunMismatchError,
  TrainingDivergedError,
} from "@int21/lora";
import { type Command, Option } from "commander";
import { CliError } from "./cli-io";
import { deviceOption, residentOption, threadsOption } from "./command";
import { intIn, numberIn } from "./options";

/** `--resume`, `--diverge-factor`, `--diverge-steps`. */
export function runOptions(): Option[] {
  return [
    new Option(
      "--resume",
      "continue from the checkpoint in the output even when its run differs from this one (the differences are listed)",
    ).default(false),
    new Option(
      "--diverge-factor <k>",
      `stop as diverged when the loss (or its 5-step mean) stays above k × its running minimum (the lowest 5-step mean) for --diverge-steps steps`,
    )
      .argParser(numberIn(1.000001))
      .default(DEFAULT_DIVERGE_FACTOR),
    new Option(
      "--diverge-steps <n>",
      "bad steps in a row (loss above the bar, or a non-finite loss or gradient) that stop the run as diverged",
    )
      .argParser(intIn(1))
      .default(DEFAULT_DIVERGE_STEPS),
  ];
}

/**
 * The options a training command (`finetune`, `lrec`) ends with, in this order: {@link runOptions},
 * `--tokenizer` (its help says where it is looked for), `--threads`, `--device`, `--max-resident-mb`,
 * `--json`, `--quiet`.
 */
export function addTrainingRunOptions(cmd: Command, tokenizerHelp: string): Command {
  for (const o of runOptions()) cmd.addOption(o);
  return cmd
    .option("--tokenizer <file>", tokenizerHelp)
    .addOption(threadsOption())
    .addOption(deviceOption())
    .addOption(residentOption())
    .option("--json", "print the result as JSON", false)
    .option("--quiet", "no progress bars", false);
}

/** The divergence options of `--diverge-factor` / `--diverge-steps`. */
export function divergenceOf(o: { divergeFactor: number; divergeSteps: number }): DivergenceOptions {
  return { factor: o.divergeFactor, steps: o.divergeSteps };
}

/** The help paragraph on resuming, run identities and divergence (shared by finetune and lrec). */
export function runsHelp(checkpoint: string): string {
  return `
Runs:
  Rerunning the same command continues an unfinished run; rerunning a finished one prints where its
  outputs are and changes nothing. A run is identified by content hashes (SHA-256) of the model(s) and
  the data and by every hyper-parameter, recorded in ${checkpoint}; a run that differs in anything
  stops with the list of differences (old → new): --fresh starts over, --resume continues from the
  checkpoint with the new settings.
  A step whose loss or gradient is not finite makes no update (counted and reported). The run stops as
  diverged, exit 1, keeping the last good checkpoint and writing no final output, when the loss or its
  5-step mean stays above --diverge-factor (default ${DEFAULT_DIVERGE_FACTOR}) × its running minimum (the lowest
  5-step mean so far), or is not finite, for --diverge-steps (default ${DEFAULT_DIVERGE_STEPS}) steps in a row.
`;
}

/** SHA-256 of a file or a model directory's files (`sha256:<hex>`), for a run's identity. */
export async function contentHash(path: string, what: string): Promise<string> {
  try {
    return await hashPathContents(path);
  } catch (e) {
    throw new CliError(`${what} ${path}: cannot read it to hash its contents (${(e as Error).message})`);
  }
}

/** The message for a checkpoint of a different run. */
export function mismatchMessage(where: string, step: number, diffs: readonly RunDifference[]): string {
  return (
    `${where} holds step ${step} of a different run; it differs in:\n${formatRunDifferences(diffs)}\n` +
    `Rerun with --fresh to start over (the checkpoint is deleted), or with --resume to continue from step ${step} with these settings.`
  );
}

/**
 * Turns a training error into the command's error: a different run (each difference, and --fresh /
 * --resume), divergence (what was kept, how to go on), parameters that cannot fit (--fresh).
 */
export function trainingFailure(e: unknown, where: string): CliError {
  if (e instanceof RunMismatchError) return new CliError(mismatchMessage(where, e.step, e.differences));
  if (e instanceof TrainingDivergedError) {
    const next =
      e.lastGoodStep > 0
        ? `rerun with a lower --lr and --resume to continue from step ${e.lastGoodStep}, or --fresh`
        : "rerun with a lower --lr (and --fresh)";
    return new CliError(
      `${e.message.replace(/ Lower the learning rate\.$/, "")} Nothing else was written; ${next}.`,
    );
  }
  const m = (e as Error)?.message ?? String(e);
  if (/holds \d+ parameters|param\.\d+ is \[/.test(m))
    return new CliError(
      `${m}: the checkpoint in ${where} cannot be continued with these settings; rerun with --fresh`,
    );
  return new CliError(m);
}

/** The stderr note when `--resume` continued a different run. */
export function resumedDespiteNote(where: string, step: number, diffs: readonly RunDifference[]): string {
  return `--resume: continuing ${where} from step ${step} although the run differs in:\n${formatRunDifferences(diffs)}\n`;
}
