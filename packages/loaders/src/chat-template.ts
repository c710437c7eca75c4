// Chat templates: the Jinja template a Hugging Face tokenizer (or a GGUF's `tokenizer.chat_template`)
// carries, rendered with @huggingface/jinja the way transformers' `apply_chat_template` renders it.
import { Template } from "@huggingface/jinja";

/** One message of a chat. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** Options of {@link renderChatTemplate}. */
export interface ChatTemplateOptions {
  /** Append the start of the assistant's turn (transformers' `add_generation_prompt`). Default true. */
  addGenerationPrompt?: boolean;
  /**
   * Special tokens as text, given to the template as variables (`bos_token`, `eos_token`, …):
   * `HfTokenizer.templateTokens`.
   */
  tokens?: Readonly<Record<string, string>>;
  /** More template variables (e.g. `tools`, `enable_thinking`). */
  variables?: Record<string, unknown>;
  /** Name used in errors (default `chat template`). */
  source?: string;
}

/**
 * Renders `messages` through a chat template as transformers' `apply_chat_template(messages,
 * tokenize=False)` does: the variables are `messages`, `add_generation_prompt` and the special tokens;
 * `raise_exception(msg)` and `strftime_now(fmt)` are the library's built-ins (an exception names `source`).
 * The text already holds the template's special tokens (often BOS): encode it without adding more.
 * @throws Error naming `source` when the template does not parse or raises
 */
export function renderChatTemplate(
  template: string,
  messages: readonly ChatMessage[],
  opts: ChatTemplateOptions = {},
): string {
  const source = opts.source ?? "chat template";
  for (const [i, m] of messages.entries())
    if (!m || typeof m.role !== "string" || typeof m.content !== "string")
      throw new Error(`${source}: message ${i} must have a string role and content`);
  let parsed: Template;
  try {
    parsed = new Template(template);
  } catch (e) {
    throw new Error(`${source}: the template does not parse: ${(e as Error).message}`);
  }
  try {
    return parsed.render({
      ...(opts.tokens ?? {}),
      ...(opts.variables ?? {}),
      messages: messages.map((m) => ({ ...m })),
      add_generation_prompt: opts.addGenerationPrompt ?? true,
    });
  } catch (e) {
    throw new Error(`${source}: ${(e as Error).message}`);
  }
}
