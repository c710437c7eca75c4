// Training examples from an Alpaca JSON file or a plain text file.
import { readFileSync } from "node:fs";
import { type Example, alpacaExamples, parseAlpaca, splitExamples, textDataset } from "@int21/lora";
import type { Tokenizer } from "@int21/model-llama";
import { CliError } from "./cli-io";

/** Examples split into training and held-out sets, and what they were made from. */
export interface TrainingData {
  train: Example[];
  heldOut: Example[];
  kind: "alpaca" | "text";
  /** Alpaca records cut to `seq` tokens. */
  truncated: number;
}

/**
 * Reads `file`: a `.json` / `.jsonl` file is Alpaca records (`instruction`, optional `input`, `output`;
 * only the response is trained on); anything else is text (documents split on `<|endoftext|>`, each with
 * BOS, cut into windows of `seq` tokens). `heldOut` examples (a count, or a fraction < 1) are set aside.
 */
export function readTrainingData(
  file: string,
  tok: Tokenizer,
  seq: number,
  heldOut: number,
  seed = 0,
): TrainingData {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new CliError(`--data ${file}: cannot read (${(e as Error).message})`);
  }
  let examples: Example[];
  let kind: TrainingData["kind"];
  let truncated = 0;
  let dropped = 0;
  try {
    if (/\.jsonl?$/i.test(file)) {
      const recs = parseAlpaca(text, file);
      const r = alpacaExamples(recs, tok, { maxLen: seq });
      examples = r.examples;
      truncated = r.truncated;
      dropped = r.dropped;
      kind = "alpaca";
    } else {
      examples = textDataset(text, tok, { seqLen: seq, separator: "<|endoftext|>" });
      kind = "text";
    }
  } catch (e) {
    throw new CliError(`--data ${file}: ${(e as Error).message}`);
  }
  if (examples.length === 0)
    throw new CliError(
      `--data ${file}: holds no training examples${dropped > 0 ? ` (${dropped} records dropped: their prompt alone is longer than --seq ${seq})` : ""}`,
    );
  if (heldOut === 0 || examples.length < 2) return { train: examples, heldOut: [], kind, truncated };
  const count =
    heldOut < 1 ? Math.max(1, Math.round(heldOut * examples.length)) : Math.min(heldOut, examples.length - 1);
  const s = splitExamples(examples, count, seed);
  return { train: [...s.train], heldOut: [...s.heldOut], kind, truncated };
}
