// Training examples from an Alpaca JSON file or a plain text file, with what was kept, cut and dropped.
import { readFileSync } from "node:fs";
import {
  type ChatExamples,
  type Example,
  alpacaExamples,
  chatExamples,
  isChatRecord,
  parseAlpaca,
  parseChatRecords,
  splitExamples,
  textExamples,
} from "@int21/lora";
import type { Tokenizer } from "@int21/model-llama";
import { HfTokenizer, renderChatTemplate } from "@int21/loaders";
import { InvalidArgumentError } from "commander";
import { CliError } from "./cli-io";

/** Examples split into training and held-out sets, and what they were made from. */
export interface TrainingData {
  train: Example[];
  heldOut: Example[];
  kind: "alpaca" | "chat" | "text";
  /**
   * Alpaca: records in the file. Text: documents (split on `<|endoftext|>`). Every record / document
   * is one of `kept` or `dropped`.
   */
  records: number;
  /** Examples made (Alpaca: records kept; text: windows of `seq` tokens). */
  kept: number;
  /** Alpaca records dropped: their prompt alone is `seq` tokens or longer, nothing to train on is left. */
  dropped: number;
  /** Alpaca records kept but cut to `seq` tokens (the end of their response is not trained on). */
  truncated: number;
  /** Text: tokens in the file, and those at its end that no window reaches (0 for Alpaca). */
  tokens: number;
  unusedTokens: number;
  /** The `seq` the examples were made for. */
  seq: number;
}

/** Options of {@link readTrainingData}. */
export interface TrainingDataOptions {
  /**
   * Fail when more Alpaca records are dropped than this: a fraction of the records (< 1) or a count
   * (≥ 1; 0 allows none). Default: no limit (the counts are still reported by {@link describeTrainingData}).
   */
  maxDrop?: number;
}

/**
 * Reads `file`: a `.json` / `.jsonl` file of chat records (`{"messages": [{role, content}, …]}`) is rendered
 * with the tokenizer's chat template and trained on the assistant turns only; other `.json` / `.jsonl` files are
 * Alpaca records (`instruction`, optional `input`, `output`;
 * only the response is trained on; a record longer than `seq` tokens is cut, one whose prompt alone
 * fills `seq` is dropped); anything else is text (documents split on `<|endoftext|>`, each with BOS,
 * cut into windows of `seq` tokens). `heldOut` examples (a count, or a fraction < 1) are set aside.
 */
export function readTrainingData(
  file: string,
  tok: Tokenizer,
  seq: number,
  heldOut: number,
  seed = 0,
  opts: TrainingDataOptions = {},
): TrainingData {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new CliError(`--data ${file}: cannot read (${(e as Error).message})`);
  }
  let examples: Example[];
  let stats: Omit<TrainingData, "train" | "heldOut" | "kept">;
  try {
    if (/\.jsonl?$/i.test(file)) {
      const chat = isChatRecord(firstRecord(text));
      const r = chat
        ? chatData(text, file, tok, seq)
        : alpacaExamples(parseAlpaca(text, file), tok, { maxLen: seq });
      examples = r.examples;
      stats = {
        kind: chat ? "chat" : "alpaca",
        records: r.records,
        dropped: r.dropped,
        truncated: r.truncated,
        tokens: 0,
        unusedTokens: 0,
        seq,
      };
    } else {
      const r = textExamples(text, tok, { seqLen: seq, separator: "<|endoftext|>" });
      examples = r.examples;
      stats = {
        kind: "text",
        records: r.documents,
        dropped: 0,
        truncated: 0,
        tokens: r.tokens,
        unusedTokens: r.unusedTokens,
        seq,
      };
    }
  } catch (e) {
    throw new CliError(`--data ${file}: ${(e as Error).message}`);
  }
  if (examples.length === 0)
    throw new CliError(
      `--data ${file}: holds no training examples${stats.dropped > 0 ? ` (all ${stats.dropped} records dropped: their prompt alone is longer than --seq ${seq})` : ""}`,
    );
  const max = opts.maxDrop;
  if (max !== undefined) {
    const limit = max < 1 ? max * stats.records : max;
    if (stats.dropped > limit)
      throw new CliError(
        `--data ${file}: ${stats.dropped} of ${stats.records} records dropped (their prompt alone is longer than --seq ${seq}), ` +
          `more than --max-drop ${max}${max < 1 ? ` (${Math.floor(limit)} records)` : ""}; raise --seq or --max-drop`,
      );
  }
  const base = { ...stats, kept: examples.length };
  if (heldOut === 0 || examples.length < 2) return { train: examples, heldOut: [], ...base };
  const count =
    heldOut < 1 ? Math.max(1, Math.round(heldOut * examples.length)) : Math.min(heldOut, examples.length - 1);
  const s = splitExamples(examples, count, seed);
  return { train: [...s.train], heldOut: [...s.heldOut], ...base };
}

/** Chat records of `text` as examples, rendered with the tokenizer's chat template. */
function chatData(text: string, file: string, tok: Tokenizer, seq: number): ChatExamples {
  if (!(tok instanceof HfTokenizer) || tok.chatTemplate === undefined)
    throw new Error(
      "holds chat records (messages); they are rendered with the model's chat template, and this tokenizer has none (a tokenizer.json with tokenizer_config.json's chat_template or chat_template.jinja beside it)",
    );
  const template = tok.chatTemplate;
  return chatExamples(
    parseChatRecords(text, file),
    { encode: (t: string) => tok.encode(t) },
    (messages, addGenerationPrompt) =>
      renderChatTemplate(template, messages, {
        tokens: tok.templateTokens,
        addGenerationPrompt,
        source: `${file}: chat template`,
      }),
    { maxLen: seq, file },
  );
}

/** The first record of a JSON array or JSON Lines text, or undefined when it does not parse. */
function firstRecord(text: string): unknown {
  const t = text.trimStart();
  try {
    if (t.startsWith("[")) return (JSON.parse(t) as unknown[])[0];
    return JSON.parse(t.slice(0, t.indexOf("\n") < 0 ? undefined : t.indexOf("\n")));
  } catch {
    return undefined;
  }
}

/**
 * One line saying what was made of the data: `kept 19 of 60 records (41 dropped: their prompt alone is
 * longer than --seq 64; 7 cut to 64 tokens)`, or `12,345 tokens in 100 documents → 48 windows of 256
 * tokens (57 tokens at the end unused)`.
 */
export function describeTrainingData(d: TrainingData): string {
  if (d.kind === "alpaca" || d.kind === "chat") {
    const notes: string[] = [];
    if (d.dropped > 0)
      notes.push(
        `${d.dropped} dropped: ${d.kind === "chat" ? "their first assistant turn starts past" : "their prompt alone is longer than"} --seq ${d.seq}`,
      );
    if (d.truncated > 0) notes.push(`${d.truncated} cut to --seq ${d.seq} tokens`);
    return `kept ${d.kept} of ${d.records} ${d.kind === "chat" ? "chat" : "Alpaca"} records${notes.length > 0 ? ` (${notes.join("; ")})` : ""}`;
  }
  return (
    `${d.tokens} tokens in ${d.records} documents → ${d.kept} windows of --seq ${d.seq} tokens` +
    `${d.unusedTokens > 0 ? ` (${d.unusedTokens} tokens at the end unused)` : ""}`
  );
}

/** Parses `--max-drop` (commander's InvalidArgumentError names the option): a fraction in [0, 1) or a whole count. */
export function parseMaxDrop(v: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < 0 || (n >= 1 && !Number.isInteger(n)))
    throw new InvalidArgumentError(`expected a fraction in [0, 1) or a whole count of records, got "${v}"`);
  return n;
}
