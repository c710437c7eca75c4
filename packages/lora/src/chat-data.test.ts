import { describe, expect, it } from "vitest";
import { type ChatTurn, chatExamples, parseChatRecords } from "./chat-data";
import { IGNORE_INDEX } from "./dataset";

/** One token per character: ids are char codes. */
const chars = { encode: (text: string) => Array.from(text, (c) => c.charCodeAt(0)) };
/** A toy template: `<role>content</>` per message, `<assistant>` as the generation prompt. */
const render = (ms: readonly ChatTurn[], gen: boolean) =>
  ms.map((m) => `<${m.role}>${m.content}</>`).join("") + (gen ? "<assistant>" : "");
const text = (ids: Int32Array) => String.fromCharCode(...Array.from(ids).filter((t) => t !== IGNORE_INDEX));

describe("chat training records", () => {
  const recs = parseChatRecords(
    [
      '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}',
      "",
      '{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"a"},{"role":"assistant","content":"B"},{"role":"user","content":"c"},{"role":"assistant","content":"DD"}]}',
    ].join("\n"),
    "chat.jsonl",
  );

  it("trains on the assistant turns only (their text and closing tag), every turn of a conversation", () => {
    const r = chatExamples(recs, chars, render, { maxLen: 200, file: "chat.jsonl" });
    expect(r.records).toBe(2);
    expect(r.dropped).toBe(0);
    expect(r.examples.map((e) => text(e.target))).toEqual(["yo</>", "B</>DD</>"]);
    const e = r.examples[0];
    expect(String.fromCharCode(...e.input)).toBe("<user>hi</><assistant>yo</".slice(0, e.input.length));
    expect(e.input.length).toBe(render(recs[0].messages, false).length - 1);
  });

  it("cuts a long conversation to maxLen and drops one whose first answer starts past it", () => {
    const r = chatExamples(recs, chars, render, { maxLen: 45 });
    expect(r.examples[0].input.length).toBe(render(recs[0].messages, false).length - 1);
    expect(r.truncated).toBe(1);
    expect(text(r.examples[1].target)).toBe("B</>");
    const tight = chatExamples(recs, chars, render, { maxLen: 10 });
    expect(tight.droppedRecords).toEqual([0, 1]);
    expect(tight.truncated).toBe(0);
  });

  it("refuses a template whose shorter rendering is not a prefix of the whole conversation", () => {
    const odd = (ms: readonly ChatTurn[], gen: boolean) => `${ms.length}${render(ms, gen)}`;
    expect(() => chatExamples(recs, chars, odd, { maxLen: 100, file: "c.jsonl" })).toThrow(
      /c\.jsonl \(record 0\): the chat template renders assistant opening 1 differently/,
    );
  });

  it("names the file and line of a bad record", () => {
    expect(() => parseChatRecords('{"messages":[{"role":"user","content":"x"}]}', "d.jsonl")).toThrow(
      /d\.jsonl:1: no "assistant" message/,
    );
    expect(() => parseChatRecords('\n{"messages":[{"role":"user"}]}', "d.jsonl")).toThrow(
      /d\.jsonl:2: message 0 needs a string "role" and a string "content"/,
    );
    expect(() => parseChatRecords("[]", "e.json")).toThrow(/e\.json: no records \(empty array\)/);
  });
});
