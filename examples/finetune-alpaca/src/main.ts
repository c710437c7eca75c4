// EMEF through the int21 command line, run in-process: quantize → finetune (Alpaca file) → generate.
// The same three commands work in a shell as `npx int21 quantize …` etc.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bufferIo, runCli } from "@int21/cli";
import { SHARED, sharedPath } from "@int21/shared-data";

const quick = process.env.INT21_EXAMPLE_QUICK === "1";
const data = new URL("../data/stories-instructions.json", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "int21-finetune-alpaca-"));

/** Runs `int21 <args>`, echoes the command and its stdout, fails the example on a non-zero exit. */
async function int21(args: string[]): Promise<string> {
  const shown = args.map((a) =>
    a.includes("\n")
      ? JSON.stringify(a)
      : a
          .replace(dir, "<tmp>")
          .replace(/^.*\/shared\//, "../shared/")
          .replace(/^.*\/examples\/finetune-alpaca\//, ""),
  );
  console.log(`$ int21 ${shown.join(" ")}`);
  const io = bufferIo({ env: process.env });
  const code = await runCli(args, io);
  if (args[0] !== "generate") process.stdout.write(io.out().replaceAll(dir, "<tmp>"));
  if (code !== 0) {
    process.stderr.write(io.err());
    throw new Error(`int21 ${args[0]} exited with ${code}`);
  }
  return io.out();
}

try {
  const model = join(dir, "stories260K-int4.safetensors");
  const adapter = join(dir, "adapter");
  await int21([
    "quantize",
    sharedPath(SHARED.stories260K),
    "--bits",
    "4",
    "--method",
    "rtn",
    "-o",
    model,
    "--quiet",
    "--threads",
    "1",
  ]);
  await int21([
    "finetune",
    model,
    "--data",
    data,
    "-o",
    adapter,
    "--rank",
    "8",
    "--targets",
    "q_proj,v_proj,down_proj",
    "--steps",
    quick ? "12" : "120",
    "--lr",
    "5e-3",
    "--batch",
    "4",
    "--held-out",
    "4",
    "--quiet",
    "--threads",
    "1",
  ]);
  // the instruction template the adapter was trained on (Alpaca, no input)
  const prompt =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
    "### Instruction:\nWrite the first sentence of a story about a dog.\n\n### Response:\n";
  const gen = [
    "generate",
    model,
    "--prompt",
    prompt,
    "--temperature",
    "0",
    "--steps",
    "200",
    "--quiet",
    "--threads",
    "1",
  ];
  const base = (await int21(gen)).slice(prompt.length);
  const tuned = (await int21([...gen, "--adapter", adapter])).slice(prompt.length);
  console.log(`\nresponse without the adapter: ${JSON.stringify(base.trim().slice(0, 120))}`);
  console.log(`response with the adapter:    ${JSON.stringify(tuned.trim().slice(0, 120))}`);

  const history = JSON.parse(readFileSync(join(adapter, "history.json"), "utf8")) as {
    train: [number, number][];
  };
  const mean = (xs: [number, number][]) => xs.reduce((a, [, l]) => a + l, 0) / xs.length;
  const first = mean(history.train.slice(0, 3));
  const last = mean(history.train.slice(-3));
  const ok = last < first && tuned !== base;
  console.log(
    ok
      ? `ok: training loss ${first.toFixed(3)} → ${last.toFixed(3)}, and the adapter changes the answer`
      : "FAIL: the loss did not fall or the adapter changed nothing",
  );
  if (!ok) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
