import { sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { renderChatTemplate } from "./chat-template";
import { HfTokenizer } from "./hf-tokenizer";

// The expected values below were produced by the real Hugging Face peers, not by int21: tokenizers 0.23.2
// and transformers 5.18.0, run once in a throwaway Python venv on the fixture folders of
// ../shared/fixtures/hf-families (never needed by CI).
// `chat` = `AutoTokenizer.from_pretrained(dir).apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)`,
// `chatNoGen` = the same on the first two messages with add_generation_prompt=False.
const MESSAGES = [
  { role: "system", content: "You are a helpful assistant." },
  { role: "user", content: "  Tell me a story about a cat.  " },
  { role: "assistant", content: "Once upon a time there was a cat." },
  { role: "user", content: "Another one, please!" },
];
const PEER_CHAT: Record<string, { chat: string; chatNoGen: string }> = {
  llama3: {
    chat: "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nTell me a story about a cat.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nOnce upon a time there was a cat.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother one, please!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    chatNoGen:
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nTell me a story about a cat.<|eot_id|>",
  },
  smollm2: {
    chat: "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n  Tell me a story about a cat.  <|im_end|>\n<|im_start|>assistant\nOnce upon a time there was a cat.<|im_end|>\n<|im_start|>user\nAnother one, please!<|im_end|>\n<|im_start|>assistant\n",
    chatNoGen:
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n  Tell me a story about a cat.  <|im_end|>\n",
  },
  qwen2: {
    chat: "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n  Tell me a story about a cat.  <|im_end|>\n<|im_start|>assistant\nOnce upon a time there was a cat.<|im_end|>\n<|im_start|>user\nAnother one, please!<|im_end|>\n<|im_start|>assistant\n",
    chatNoGen:
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n  Tell me a story about a cat.  <|im_end|>\n",
  },
  qwen3: {
    chat: "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n  Tell me a story about a cat.  <|im_end|>\n<|im_start|>assistant\nOnce upon a time there was a cat.<|im_end|>\n<|im_start|>user\nAnother one, please!<|im_end|>\n<|im_start|>assistant\n",
    chatNoGen:
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n  Tell me a story about a cat.  <|im_end|>\n",
  },
  gemma2: {
    chat: "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n  Tell me a story about a cat.  <|im_end|>\n<|im_start|>assistant\nOnce upon a time there was a cat.<|im_end|>\n<|im_start|>user\nAnother one, please!<|im_end|>\n<|im_start|>assistant\n",
    chatNoGen:
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n  Tell me a story about a cat.  <|im_end|>\n",
  },
};

describe("renderChatTemplate", () => {
  for (const [family, ref] of Object.entries(PEER_CHAT)) {
    it(`${family}: renders as transformers' apply_chat_template`, () => {
      const tok = HfTokenizer.fromFile(sharedPath(`fixtures/hf-families/${family}/tokenizer.json`));
      expect(tok.chatTemplate).toBeDefined();
      const opts = { tokens: tok.templateTokens };
      expect(renderChatTemplate(tok.chatTemplate as string, MESSAGES, opts)).toBe(ref.chat);
      expect(
        renderChatTemplate(tok.chatTemplate as string, MESSAGES.slice(0, 2), {
          ...opts,
          addGenerationPrompt: false,
        }),
      ).toBe(ref.chatNoGen);
    });
  }

  it("errors name the template: parse errors, raise_exception, bad messages", () => {
    expect(() => renderChatTemplate("{% for %}", [], { source: "x/chat_template.jinja" })).toThrow(
      /^x\/chat_template.jinja: the template does not parse/,
    );
    const strict = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}ok";
    expect(renderChatTemplate(strict, [{ role: "user", content: "hi" }])).toBe("ok");
    expect(() => renderChatTemplate(strict, [{ role: "system", content: "hi" }], { source: "t" })).toThrow(
      /^t: user first/,
    );
    expect(() => renderChatTemplate("x", [{ role: "user" } as never], { source: "t" })).toThrow(
      /t: message 0 must have a string role and content/,
    );
  });

  it("gives the special tokens and extra variables to the template", () => {
    const t = "{{ bos_token }}{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}{{ flag }}";
    expect(
      renderChatTemplate(t, [{ role: "user", content: "a" }], {
        tokens: { bos_token: "<s>" },
        variables: { flag: "!" },
      }),
    ).toBe("<s>[user:a]!");
    expect(renderChatTemplate("{{ strftime_now('%Y') }}", [])).toBe(String(new Date().getFullYear()));
  });
});
