// The user's training data: plain text (documents split on `<|endoftext|>` or blank-line runs), JSONL / JSON
// of `{"text": …}` records, chat records (`{"messages": [{role, content}, …]}`: rendered with the model's chat
// template, trained on the assistant turns) or Alpaca records (`instruction` / `input` / `output`), turned into
// examples.
import {
  type AlpacaRecord,
  alpacaExamples,
  type ChatRecord,
  type ChatRenderer,
  chatExamples,
  type Example,
  isChatRecord,
  parseAlpaca,
  parseChatRecords,
  type TextEncoder,
  textDataset,
} from "@int21/lora";

/** What {@link parseTrainingData} found. */
export type TrainingData =
  | { kind: "text"; documents: string[] }
  | { kind: "chat"; records: ChatRecord[] }
  | { kind: "alpaca"; records: AlpacaRecord[] };

const SEP = "<|endoftext|>";

function looksJson(text: string): boolean {
  const t = text.trimStart();
  return t.startsWith("{") || t.startsWith("[");
}

/**
 * Reads training data. JSON / JSONL whose first record has a string `text` field is a list of documents;
 * other JSON / JSONL must be Alpaca records (checked by `@int21/lora`'s parser, errors name `file` and the
 * line). Anything else is plain text: split on `<|endoftext|>` when present, else kept as one document.
 */
export function parseTrainingData(text: string, file = "training data"): TrainingData {
  if (text.trim() === "") throw new Error(`${file}: empty`);
  if (looksJson(text)) {
    const t = text.trim();
    let records: unknown[];
    if (t.startsWith("[")) {
      try {
        records = JSON.parse(t) as unknown[];
      } catch (e) {
        throw new Error(`${file}: invalid JSON (${(e as Error).message})`);
      }
    } else {
      records = t.split(/\r?\n/).flatMap((line, i) => {
        if (line.trim() === "") return [];
        try {
          return [JSON.parse(line) as unknown];
        } catch (e) {
          throw new Error(`${file}: line ${i + 1}: invalid JSON (${(e as Error).message})`);
        }
      });
    }
    const first = records[0] as Record<string, unknown> | undefined;
    if (first && typeof first === "object" && typeof first.text === "string") {
      const documents = records.map((r, i) => {
        const v = (r as Record<string, unknown> | null)?.text;
        if (typeof v !== "string") throw new Error(`${file}: record ${i + 1} has no string "text" field`);
        return v;
      });
      return { kind: "text", documents: documents.filter((d) => d.trim() !== "") };
    }
    if (isChatRecord(first)) return { kind: "chat", records: parseChatRecords(text, file) };
    return { kind: "alpaca", records: parseAlpaca(text, file) };
  }
  const documents = text.includes(SEP) ? text.split(SEP) : [text];
  return { kind: "text", documents: documents.map((d) => d.trim()).filter((d) => d !== "") };
}

/**
 * Training examples of at most `seqLen` tokens: text windows (BOS per document), chat conversations rendered by
 * `render` (the model's chat template; required for chat records), or Alpaca prompts + responses.
 */
export function trainingExamples(
  data: TrainingData,
  tokenizer: TextEncoder,
  seqLen: number,
  file = "training data",
  render?: ChatRenderer,
): Example[] {
  let examples: Example[];
  if (data.kind === "text")
    examples = textDataset(data.documents.join(SEP), tokenizer, { seqLen, separator: SEP });
  else if (data.kind === "alpaca")
    examples = alpacaExamples(data.records, tokenizer, { maxLen: seqLen }).examples;
  else {
    if (!render)
      throw new Error(
        `${file}: holds chat records (messages), which are rendered with the model's chat template, and this model's tokenizer has none`,
      );
    examples = chatExamples(data.records, { encode: (t: string) => tokenizer.encode(t) }, render, {
      maxLen: seqLen,
      file,
    }).examples;
  }
  if (examples.length === 0)
    throw new Error(
      `${file}: no training example of ${seqLen + 1} tokens (the text is too short; give more text or a smaller sequence length)`,
    );
  return examples;
}

/** The examples of step `step` (0-based): a fixed rotation through the data, so a resumed run sees the same batches. */
export function batchAt<T>(examples: readonly T[], step: number, batch: number): T[] {
  if (examples.length === 0) throw new Error("batchAt: no examples");
  const out: T[] = [];
  for (let b = 0; b < batch; b++) out.push(examples[(step * batch + b) % examples.length]);
  return out;
}
