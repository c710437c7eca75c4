// Chat-formatted training records ({"messages": [{role, content}, …]}, the format of TRL's SFT data and of
// OpenAI's fine-tuning files) as training examples: the conversation rendered with the model's chat
// template, trained on the assistant turns only.
import { parseJsonRecords } from "./alpaca";
import { type Example, IGNORE_INDEX, type TextEncoder } from "./dataset";

/** One message of a conversation. */
export interface ChatTurn {
  role: string;
  content: string;
}

/** One chat record: a conversation with at least one assistant turn. */
export interface ChatRecord {
  messages: ChatTurn[];
}

/**
 * Renders `messages` with the model's chat template; `addGenerationPrompt` appends the text that opens an
 * assistant turn. (model-llama's `renderChatTemplate` bound to a tokenizer's template.)
 */
export type ChatRenderer = (messages: readonly ChatTurn[], addGenerationPrompt: boolean) => string;

/** Whether a parsed JSON value looks like a chat record (has a `messages` array). */
export function isChatRecord(v: unknown): boolean {
  return typeof v === "object" && v !== null && Array.isArray((v as { messages?: unknown }).messages);
}

function checkChat(v: unknown, where: string): ChatRecord {
  if (!isChatRecord(v)) throw new Error(`${where}: a chat record needs a "messages" array`);
  const messages = (v as { messages: unknown[] }).messages;
  if (messages.length === 0) throw new Error(`${where}: "messages" is empty`);
  const out: ChatTurn[] = messages.map((m, i) => {
    const t = m as Partial<ChatTurn>;
    if (typeof m !== "object" || m === null || typeof t.role !== "string" || typeof t.content !== "string")
      throw new Error(`${where}: message ${i} needs a string "role" and a string "content"`);
    return { role: t.role, content: t.content };
  });
  if (!out.some((m) => m.role === "assistant"))
    throw new Error(`${where}: no "assistant" message (nothing to train on)`);
  return { messages: out };
}

/**
 * Parses chat records: a JSON array or JSON Lines of `{"messages": [{"role", "content"}, …]}`, each with at
 * least one `assistant` message. Errors name `file` and the line (JSONL) or record index.
 */
export function parseChatRecords(text: string, file = "<chat>"): ChatRecord[] {
  return parseJsonRecords(text, file, checkChat);
}

/** What {@link chatExamples} made. */
export interface ChatExamples {
  examples: Example[];
  /** Records read. */
  records: number;
  /** Records dropped (indices): their first assistant turn starts at or past `maxLen` tokens. */
  droppedRecords: number[];
  dropped: number;
  /** Records kept but cut to `maxLen` tokens. */
  truncated: number;
}

/**
 * Training examples from chat records: each conversation rendered once with `render` (no generation prompt)
 * and encoded without extra BOS/EOS (the template writes its own special tokens); only the tokens of the
 * assistant turns are trained on. The span of the k-th assistant turn runs from the end of
 * `render(messages[..k], true)` to the end of `render(messages[..k+1], false)`, so the template's own
 * assistant header is context, not target. A template whose rendering of a shorter conversation is not a
 * prefix of the longer one (in tokens) is refused, naming the record. Longer than `maxLen` + 1 tokens: cut.
 */
export function chatExamples(
  records: readonly ChatRecord[],
  tokenizer: TextEncoder,
  render: ChatRenderer,
  opts: { maxLen: number; file?: string },
): ChatExamples {
  const { maxLen } = opts;
  if (!Number.isSafeInteger(maxLen) || maxLen < 1)
    throw new Error(`lora: chatExamples: maxLen must be a positive integer, got ${maxLen}`);
  const file = opts.file ?? "<chat>";
  const examples: Example[] = [];
  const droppedRecords: number[] = [];
  let truncated = 0;
  for (const [i, r] of records.entries()) {
    const ids = tokenizer.encode(render(r.messages, false));
    const trained = new Uint8Array(ids.length);
    for (const [k, m] of r.messages.entries()) {
      if (m.role !== "assistant") continue;
      const start = tokenizer.encode(render(r.messages.slice(0, k), true));
      const end = tokenizer.encode(render(r.messages.slice(0, k + 1), false));
      for (const [what, part] of [
        ["opening", start],
        ["turn", end],
      ] as const) {
        if (part.length > ids.length || part.some((t, j) => t !== ids[j]))
          throw new Error(
            `${file} (record ${i}): the chat template renders assistant ${what} ${k} differently inside the whole conversation; int21 cannot tell which tokens are the assistant's`,
          );
      }
      for (let t = start.length; t < end.length; t++) trained[t] = 1;
    }
    let n = ids.length;
    if (n > maxLen + 1) {
      n = maxLen + 1;
      truncated++;
    }
    const T = n - 1;
    const input = Int32Array.from(ids.slice(0, T));
    const target = new Int32Array(T);
    let count = 0;
    for (let t = 0; t < T; t++) {
      if (trained[t + 1]) {
        target[t] = ids[t + 1];
        count++;
      } else target[t] = IGNORE_INDEX;
    }
    if (T < 1 || count === 0) {
      droppedRecords.push(i);
      if (n < ids.length) truncated--;
      continue;
    }
    examples.push({ input, target });
  }
  return { examples, records: records.length, droppedRecords, dropped: droppedRecords.length, truncated };
}
