import { describe, expect, it } from "vitest";
import {
  ALPACA_PROMPT_NO_INPUT,
  alpacaExamples,
  alpacaPrompt,
  alpacaTemplateText,
  parseAlpaca,
} from "./alpaca";
import { IGNORE_INDEX } from "./dataset";
import { charTokenizer } from "./testing/char-tokenizer";

describe("Alpaca data", () => {
  it("fills the Stanford Alpaca templates", () => {
    expect(alpacaPrompt({ instruction: "Add.", input: "2 and 3", output: "5" })).toBe(
      "Below is an instruction that describes a task, paired with an input that provides further context. " +
        "Write a response that appropriately completes the request.\n\n### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:\n",
    );
    expect(alpacaPrompt({ instruction: "Say $& hi.", output: "hi" })).toBe(
      ALPACA_PROMPT_NO_INPUT.replace("{instruction}", () => "Say $& hi."),
    );
  });

  it("parses JSON arrays and JSONL", () => {
    const arr = parseAlpaca(
      '[\n {"instruction": "a", "input": "", "output": "b"},\n {"instruction": "c", "output": "d", "input": null}\n]',
    );
    expect(arr).toEqual([
      { instruction: "a", input: "", output: "b" },
      { instruction: "c", input: "", output: "d" },
    ]);
    const jsonl = parseAlpaca(
      '{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "input": "x", "output": "d"}\n',
    );
    expect(jsonl[1]).toEqual({ instruction: "c", input: "x", output: "d" });
  });

  it("names the file and line of a malformed record", () => {
    expect(() =>
      parseAlpaca('{"instruction": "a", "output": "b"}\n{"instruction": "a" "output": 1}\n', "d.jsonl"),
    ).toThrow(/^d\.jsonl:2: invalid JSON line/);
    expect(() =>
      parseAlpaca('{"instruction": "a", "output": "b"}\n\n{"instruction": "a", "output": 1}', "d.jsonl"),
    ).toThrow(/^d\.jsonl:3: "output" must be a string, got 1/);
    expect(() => parseAlpaca('{"output": "b"}', "d.jsonl")).toThrow(
      /d\.jsonl:1: "instruction" must be a string, got nothing/,
    );
    expect(() => parseAlpaca('{"instruction": " ", "output": "b"}', "d.jsonl")).toThrow(
      /"instruction" is empty/,
    );
    expect(() => parseAlpaca("[1, 2]", "d.jsonl")).toThrow(
      /d\.jsonl:1 \(record 0\): a record must be a JSON object/,
    );
    const arr =
      '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "a,]", "output": "b"},\n  {"instruction": "x",\n   "output": ["no"]}\n]';
    expect(() => parseAlpaca(arr, "d.json")).toThrow(/^d\.json:4 \(record 2\): "output" must be a string/);
    expect(() => parseAlpaca('[\n{"instruction": 1,,}\n]', "d.json")).toThrow(/^d\.json(:2)?: invalid JSON/);
    expect(() => parseAlpaca("  \n", "e.json")).toThrow(/e\.json: no records/);
    expect(() => parseAlpaca('{"instruction": "a", "input": 3, "output": "b"}')).toThrow(
      /"input" must be a string/,
    );
  });

  it("masks the prompt unless trainOnInputs, appends EOS, truncates", () => {
    const tok = charTokenizer();
    const rec = { instruction: "Hi", output: "yo" };
    const promptLen = tok.encode(alpacaPrompt(rec), { bos: true }).length;
    const { examples } = alpacaExamples([rec], tok, { maxLen: 1000 });
    const e = examples[0];
    expect(e.input.length).toBe(promptLen + 2); // BOS prompt y o EOS, minus one
    const trained = Array.from(e.target).filter((t) => t !== IGNORE_INDEX);
    expect(trained).toEqual([...tok.encode("yo"), 2]);
    expect(e.target[promptLen - 2]).toBe(IGNORE_INDEX);
    expect(e.target[promptLen - 1]).toBe(tok.encode("y")[0]);
    const all = alpacaExamples([rec], tok, { maxLen: 1000, trainOnInputs: true }).examples[0];
    expect(all.target.every((t) => t !== IGNORE_INDEX)).toBe(true);
    const cut = alpacaExamples([rec, { instruction: "x".repeat(50), output: "z" }], tok, {
      maxLen: promptLen + 1,
    });
    // the first is cut and kept; the second is cut too, but nothing of its response survives: dropped
    // (counted once, as dropped, not also as truncated)
    expect(cut.records).toBe(2);
    expect(cut.truncated).toBe(1);
    expect(cut.dropped).toBe(1);
    expect(cut.droppedRecords).toEqual([1]);
    expect(cut.examples).toHaveLength(1);
    expect(cut.examples[0].input.length).toBe(promptLen + 1);
  });

  it("shows the prompt templates an adapter trained on Alpaca records expects", () => {
    const t = alpacaTemplateText("  ");
    expect(t).toContain("    ### Instruction:\n    {instruction}\n");
    expect(t).toContain("    ### Input:\n    {input}\n");
    expect(t.match(/### Response:/g)).toHaveLength(2);
    expect(t).toContain(ALPACA_PROMPT_NO_INPUT.split("\n")[0]);
  });
});
