// Instruction data in the Alpaca format (JSON array or JSONL of {instruction, input, output}), the
// Alpaca prompt template, and tokenization with prompt tokens masked out unless `trainOnInputs`.
import { type Example, IGNORE_INDEX, type TextEncoder } from "./dataset";

/** One Alpaca record. `input` is optional (empty means "no input"). */
export interface AlpacaRecord {
  instruction: string;
  input?: string;
  output: string;
}

/** The Stanford Alpaca prompt with an input. */
export const ALPACA_PROMPT_WITH_INPUT =
  "Below is an instruction that describes a task, paired with an input that provides further context. " +
  "Write a response that appropriately completes the request.\n\n" +
  "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";

/** The Stanford Alpaca prompt without an input. */
export const ALPACA_PROMPT_NO_INPUT =
  "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
  "### Instruction:\n{instruction}\n\n### Response:\n";

/**
 * The Alpaca prompt templates as a user reads them: what an adapter fine-tuned on Alpaca records
 * expects before its response (`{instruction}` and `{input}` stand for the record's fields; the
 * model writes the response after `### Response:` and a newline, and ends it with EOS).
 */
export function alpacaTemplateText(indent = ""): string {
  const block = (t: string) =>
    t
      .trimEnd()
      .split("\n")
      .map((l) => (l.length > 0 ? `${indent}  ${l}` : ""))
      .join("\n");
  return (
    `${indent}With an input:\n${block(ALPACA_PROMPT_WITH_INPUT)}\n` +
    `${indent}Without one (empty or absent "input"):\n${block(ALPACA_PROMPT_NO_INPUT)}\n`
  );
}

/** The prompt of a record (everything before the response). */
export function alpacaPrompt(r: AlpacaRecord): string {
  const input = r.input ?? "";
  return input.length > 0
    ? ALPACA_PROMPT_WITH_INPUT.replace("{instruction}", () => r.instruction).replace("{input}", () => input)
    : ALPACA_PROMPT_NO_INPUT.replace("{instruction}", () => r.instruction);
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** Line numbers of ascending `offsets`, in one pass over `text` (linear in its length). */
function linesAt(text: string, offsets: readonly number[]): number[] {
  const out: number[] = [];
  let line = 1;
  let i = 0;
  for (const off of offsets) {
    for (; i < off && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
    out.push(line);
  }
  return out;
}

function checkRecord(v: unknown, where: string): AlpacaRecord {
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw new Error(`${where}: a record must be a JSON object`);
  const o = v as Record<string, unknown>;
  for (const k of ["instruction", "output"] as const) {
    if (typeof o[k] !== "string")
      throw new Error(
        `${where}: "${k}" must be a string, got ${o[k] === undefined ? "nothing" : JSON.stringify(o[k])}`,
      );
  }
  if (o.input !== undefined && o.input !== null && typeof o.input !== "string") {
    throw new Error(`${where}: "input" must be a string, got ${JSON.stringify(o.input)}`);
  }
  if ((o.instruction as string).trim().length === 0) throw new Error(`${where}: "instruction" is empty`);
  return {
    instruction: o.instruction as string,
    input: (o.input as string | null | undefined) ?? "",
    output: o.output as string,
  };
}

/** Start offsets of the top-level elements of a JSON array text (strings and nesting skipped). */
function elementOffsets(text: string): number[] {
  const out: number[] = [];
  let depth = 0;
  let inString = false;
  let expecting = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (depth === 1 && expecting && !/\s/.test(c) && c !== "]") {
      out.push(i);
      expecting = false;
    }
    if (c === '"') inString = true;
    else if (c === "[" || c === "{") {
      depth++;
      if (depth === 1) expecting = true;
    } else if (c === "]" || c === "}") depth--;
    else if (c === "," && depth === 1) expecting = true;
  }
  return out;
}

/**
 * Parses a JSON array of records, or JSONL (one record per line; blank lines skipped), checking each with
 * `check(value, where)`; `where` names `file` and the record's line. A malformed file, record or line throws
 * an Error naming `file` and its line number. (Alpaca and chat data share it.)
 */
export function parseJsonRecords<T>(
  text: string,
  file: string,
  check: (v: unknown, where: string) => T,
): T[] {
  const first = text.search(/\S/);
  if (first < 0) throw new Error(`${file}: no records (the file is empty)`);
  if (text[first] === "[") {
    let arr: unknown;
    try {
      arr = JSON.parse(text);
    } catch (e) {
      const m = /position (\d+)/.exec((e as Error).message);
      const line = m ? `:${lineAt(text, Number(m[1]))}` : "";
      throw new Error(`${file}${line}: invalid JSON (${(e as Error).message})`);
    }
    if (!Array.isArray(arr)) throw new Error(`${file}: expected a JSON array of records`);
    const offs = elementOffsets(text);
    const lines = linesAt(text, offs);
    const recs = arr.map((v, i) => check(v, `${file}:${lines[i] ?? lineAt(text, first)} (record ${i})`));
    if (recs.length === 0) throw new Error(`${file}: no records (empty array)`);
    return recs;
  }
  const out: T[] = [];
  const lines = text.split("\n");
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line.length === 0) return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new Error(`${file}:${i + 1}: invalid JSON line (${(e as Error).message})`);
    }
    out.push(check(v, `${file}:${i + 1}`));
  });
  return out;
}

/**
 * Parses Alpaca data: a JSON array of records, or JSONL (one record per line; blank lines skipped).
 * Each record needs string `instruction` (non-empty) and `output`, and an optional string `input`.
 * A malformed record or line throws an Error naming `file` and its line number.
 */
export function parseAlpaca(text: string, file = "<alpaca>"): AlpacaRecord[] {
  return parseJsonRecords(text, file, checkRecord);
}

/** Options of {@link alpacaExamples}. */
export interface AlpacaOptions {
  /** Longest example in tokens (inputs); longer ones are truncated from the end. */
  maxLen: number;
  /** Train on the prompt tokens too (default false: only the response and EOS are trained). */
  trainOnInputs?: boolean;
  /** Append EOS after the response. Default true. */
  eos?: boolean;
}

/** Examples plus what was dropped. */
export interface AlpacaExamples {
  /** One per record kept, in the records' order. */
  examples: Example[];
  /** Records read. */
  records: number;
  /** Records kept but cut to `maxLen` tokens (the end of their response is not trained on). */
  truncated: number;
  /** Records dropped because no response token survived truncation (the prompt alone fills `maxLen`). */
  dropped: number;
  /** Indices of the dropped records. */
  droppedRecords: number[];
}

/**
 * Tokenizes records as `BOS prompt response EOS`. The prompt's length is that of `encode(prompt)` alone
 * (as alpaca-lora does); with `trainOnInputs` false its targets are {@link IGNORE_INDEX}.
 */
export function alpacaExamples(
  records: readonly AlpacaRecord[],
  tokenizer: TextEncoder,
  opts: AlpacaOptions,
): AlpacaExamples {
  const { maxLen } = opts;
  if (!Number.isSafeInteger(maxLen) || maxLen < 1)
    throw new Error(`lora: alpacaExamples: maxLen must be a positive integer, got ${maxLen}`);
  const examples: Example[] = [];
  let truncated = 0;
  const droppedRecords: number[] = [];
  for (const [i, r] of records.entries()) {
    const prompt = alpacaPrompt(r);
    const promptLen = tokenizer.encode(prompt, { bos: true }).length;
    let ids = tokenizer.encode(prompt + r.output, { bos: true, eos: opts.eos ?? true });
    const cut = ids.length > maxLen + 1;
    if (cut) ids = ids.slice(0, maxLen + 1);
    const T = ids.length - 1;
    if (T < 1) {
      droppedRecords.push(i);
      continue;
    }
    const input = Int32Array.from(ids.slice(0, T));
    const target = Int32Array.from(ids.slice(1));
    let trained = 0;
    for (let t = 0; t < T; t++) {
      if (opts.trainOnInputs !== true && t + 1 < promptLen) target[t] = IGNORE_INDEX;
      else trained++;
    }
    if (trained === 0) {
      droppedRecords.push(i);
      continue;
    }
    if (cut) truncated++;
    examples.push({ input, target });
  }
  return { examples, records: records.length, truncated, dropped: droppedRecords.length, droppedRecords };
}
