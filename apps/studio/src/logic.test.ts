// The app's own small rules: picking files, slice reads, training data, progress/ETA, charts, prompt ids.
import { describe, expect, it } from "vitest";
import {
  accessBlobFile,
  blobFileStats,
  clearBlobFiles,
  joinPath,
  mkdirScratch,
  openBlobFile,
  openScratchFile,
  readBlobFile,
  registerBlobFile,
  renameScratch,
  rmScratch,
  statScratch,
} from "./blob-files";
import { barChart, lineChart, ticks } from "./charts";
import { batchAt, parseTrainingData, trainingExamples } from "./data";
import { etaMs, formatBytes, formatDuration, stageClock } from "./progress";
import { blobSource, classifyPick, type PickedFile } from "./sources";
import { parseDeviceChoice, parsePromptIds } from "./ui-logic";

const file = (path: string, bytes = 4): PickedFile => ({ path, blob: new Blob([new Uint8Array(bytes)]) });

describe("classifyPick", () => {
  it("tells a Hugging Face folder, a GGUF and a llama2.c model apart", () => {
    const hf = classifyPick([
      file("smollm2/config.json"),
      file("smollm2/model.safetensors"),
      file("smollm2/tokenizer.json"),
      file("smollm2/reference.json"),
    ]);
    expect(hf.kind).toBe("hf");
    if (hf.kind === "hf") {
      expect(hf.label).toBe("smollm2");
      expect(Object.keys(hf.files).sort()).toEqual(["config.json", "model.safetensors", "tokenizer.json"]);
    }
    expect(classifyPick([file("m.Q8_0.gguf")]).kind).toBe("gguf");
    const l = classifyPick([file("tok512.bin"), file("stories260K.bin")]);
    expect(
      l.kind === "llama2c" && l.model.path === "stories260K.bin" && l.tokenizer?.path === "tok512.bin",
    ).toBe(true);
  });

  it("names what is missing", () => {
    expect(() => classifyPick([])).toThrow("no files picked");
    expect(() => classifyPick([file("x/config.json"), file("x/tokenizer.json")])).toThrow(
      /needs model\.safetensors/,
    );
    expect(() => classifyPick([file("x/config.json"), file("x/model.safetensors")])).toThrow(
      /no tokenizer\.json/,
    );
    expect(() => classifyPick([file("notes.txt")])).toThrow(/notes\.txt: not a model/);
    expect(() => classifyPick([file("tokenizer.bin")])).toThrow(/only a tokenizer/);
  });
});

describe("blobSource", () => {
  // FileReaderSync exists only in workers: read the slice through a copy made beforehand
  const bytes = Uint8Array.from({ length: 100 }, (_, i) => i);
  const reader = (b: Blob) => {
    const { start, end } = b as unknown as { start: number; end: number };
    return bytes.slice(start, end).buffer;
  };
  const blob = {
    size: 100,
    slice: (start: number, end: number) => ({ start, end }) as unknown as Blob,
  } as unknown as Blob;

  it("reads only the slice asked for and counts the reads", () => {
    const s = blobSource(blob, "m.bin", reader);
    expect(Array.from(s.read(10, 3))).toEqual([10, 11, 12]);
    expect(Array.from(s.read(98, 2))).toEqual([98, 99]);
    expect(s.stats).toEqual({ reads: 2, bytes: 5, largestRead: 3 });
  });

  it("refuses a range past the end, a bad range, a short read and a read after close, naming the file", () => {
    const s = blobSource(blob, "m.bin", reader);
    expect(() => s.read(99, 2)).toThrow(
      "m.bin: byte range [99, 101) is past the end of the file (100 bytes)",
    );
    expect(() => s.read(-1, 2)).toThrow(/m\.bin: invalid byte range/);
    const short = blobSource(blob, "m.bin", () => new ArrayBuffer(1));
    expect(() => short.read(0, 2)).toThrow("m.bin: read 1 bytes at 0, expected 2");
    s.close();
    expect(() => s.read(0, 1)).toThrow("m.bin: read after close");
  });

  it("outside a worker, says FileReaderSync is missing", () => {
    expect(() => blobSource(blob, "m.bin")).toThrow(/FileReaderSync is only available in a dedicated worker/);
  });
});

describe("parseTrainingData", () => {
  it("plain text splits on <|endoftext|>", () => {
    expect(parseTrainingData("a b<|endoftext|> c <|endoftext|>\n")).toEqual({
      kind: "text",
      documents: ["a b", "c"],
    });
    expect(parseTrainingData("one story")).toEqual({ kind: "text", documents: ["one story"] });
  });

  it("JSONL of {text} records are documents; Alpaca records are records", () => {
    expect(parseTrainingData('{"text":"x"}\n\n{"text":"y"}\n')).toEqual({
      kind: "text",
      documents: ["x", "y"],
    });
    const a = parseTrainingData('[{"instruction":"Say hi","input":"","output":"hi"}]', "a.json");
    expect(a.kind).toBe("alpaca");
    if (a.kind === "alpaca") expect(a.records[0].output).toBe("hi");
  });

  it("chat records ({messages}) are chat data; they need the model's chat template", () => {
    const jsonl =
      '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}\n' +
      '{"messages":[{"role":"user","content":"bye"},{"role":"assistant","content":"see you"}]}\n';
    const c = parseTrainingData(jsonl, "chat.jsonl");
    expect(c.kind).toBe("chat");
    if (c.kind === "chat")
      expect(c.records[1].messages[1]).toEqual({ role: "assistant", content: "see you" });
    expect(() => parseTrainingData('{"messages":[{"role":"user","content":"hi"}]}', "c.jsonl")).toThrow(
      /c\.jsonl.*no "assistant" message/,
    );
    const tok = { encode: (t: string) => Array.from(t, (ch) => ch.charCodeAt(0) % 50) };
    expect(() => trainingExamples(c, tok, 16, "chat.jsonl")).toThrow(
      "chat.jsonl: holds chat records (messages), which are rendered with the model's chat template, and this model's tokenizer has none",
    );
    // a template that renders `<role>content` turns: only the assistant's tokens are targets
    const render = (m: readonly { role: string; content: string }[], open: boolean) =>
      m.map((t) => `<${t.role[0]}>${t.content}`).join("") + (open ? "<a>" : "");
    const ex = trainingExamples(c, tok, 32, "chat.jsonl", render);
    expect(ex).toHaveLength(2);
    const trained = Array.from(ex[0].target).filter((t) => t >= 0).length;
    expect(trained).toBe("hello".length);
  });

  it("names the file and line of bad JSON, and an empty file", () => {
    expect(() => parseTrainingData('{"text":"x"}\n{oops', "d.jsonl")).toThrow(
      /d\.jsonl: line 2: invalid JSON/,
    );
    expect(() => parseTrainingData('{"text":"x"}\n{"t":1}', "d.jsonl")).toThrow(
      /record 2 has no string "text" field/,
    );
    expect(() => parseTrainingData("  \n", "e.txt")).toThrow("e.txt: empty");
  });

  it("batchAt rotates through the examples by step (a resumed run sees the same batches)", () => {
    const ex = [0, 1, 2, 3, 4];
    expect(batchAt(ex, 0, 2)).toEqual([0, 1]);
    expect(batchAt(ex, 2, 2)).toEqual([4, 0]);
    expect(batchAt(ex, 7, 3)).toEqual([1, 2, 3]);
  });
});

describe("progress", () => {
  it("ETA extrapolates linearly; NaN before the first unit; 0 when done", () => {
    expect(etaMs(1, 4, 100)).toBe(300);
    expect(etaMs(0, 4, 100)).toBeNaN();
    expect(etaMs(4, 4, 100)).toBe(0);
    expect(etaMs(1, 0, 100)).toBeNaN();
  });

  it("formats durations and bytes", () => {
    expect(formatDuration(950)).toBe("950 ms");
    expect(formatDuration(12_340)).toBe("12.3 s");
    expect(formatDuration(245_000)).toBe("4 min 05 s");
    expect(formatDuration(3_720_000)).toBe("1 h 02 min");
    expect(formatDuration(Number.NaN)).toBe("—");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(3.5 * 1024)).toBe("3.5 KiB");
    expect(formatBytes(12.5 * 2 ** 20)).toBe("12.50 MiB");
    expect(formatBytes(1.25 * 2 ** 30)).toBe("1.25 GiB");
  });

  it("stageClock stamps elapsed time and ETA", () => {
    let t = 1000;
    const seen: { done: number; etaMs: number }[] = [];
    const tick = stageClock(
      "q",
      10,
      (p) => seen.push(p),
      () => t,
    );
    t = 1200;
    tick(2, "layer 0");
    expect(seen).toEqual([
      expect.objectContaining({
        stage: "q",
        done: 2,
        total: 10,
        elapsedMs: 200,
        etaMs: 800,
        detail: "layer 0",
      }),
    ]);
  });
});

describe("charts", () => {
  it("a line chart has one polyline per series and counts its finite points", () => {
    const svg = lineChart(
      "loss",
      [
        {
          name: "a",
          points: [
            [1, 2],
            [2, 1.5],
            [3, Number.NaN],
          ],
        },
        { name: "b", points: [[1, 3]] },
      ],
      { x: "step", y: "nats" },
    );
    expect(svg).toContain('data-series="2"');
    expect(svg).toContain('data-points="3"');
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    expect(svg).toContain("<circle"); // a single point is drawn as a dot
  });

  it("escapes labels; a bar chart draws one bar per configuration, n/a for a non-finite value", () => {
    const svg = barChart(
      "ppl <x>",
      [
        { label: "float", value: 5 },
        { label: "int2 & LREC", value: Number.NaN },
      ],
      "",
    );
    expect(svg).toContain("ppl &lt;x&gt;");
    expect(svg).toContain("int2 &amp; LREC");
    expect(svg).toContain('data-bars="2"');
    expect(svg).toContain("n/a");
  });

  it("ticks are round numbers inside the range", () => {
    expect(ticks(0, 1)).toEqual([0, 0.5, 1]);
    const t = ticks(0.13, 2.9);
    for (const v of t) expect(v >= 0.13 && v <= 2.9).toBe(true);
    expect(t).toEqual([1, 2]);
    expect(ticks(3, 3)).toEqual([3]);
  });
});

describe("parsePromptIds", () => {
  it("reads ids separated by commas or spaces; empty is null", () => {
    expect(parsePromptIds(" 536, 1220 1046 ")).toEqual([536, 1220, 1046]);
    expect(parsePromptIds("  ")).toBeNull();
  });
  it("names a bad entry", () => {
    expect(() => parsePromptIds("1, x2")).toThrow(
      'prompt token ids: entry 2 ("x2") is not a non-negative integer',
    );
    expect(() => parsePromptIds("1 -3")).toThrow(/entry 2/);
  });
});

describe("parseDeviceChoice (?device=)", () => {
  it("defaults to auto, reads wasm / webgpu, and names a bad value", () => {
    expect(parseDeviceChoice("")).toBe("auto");
    expect(parseDeviceChoice("?device=")).toBe("auto");
    expect(parseDeviceChoice("?x=1&device=webgpu")).toBe("webgpu");
    expect(parseDeviceChoice("?device=WASM")).toBe("wasm");
    expect(parseDeviceChoice("?device=auto")).toBe("auto");
    expect(() => parseDeviceChoice("?device=cuda")).toThrow(
      "?device=cuda: not a device choice (one of auto, wasm, webgpu)",
    );
  });
});

describe("blob files (the browser build's fs/promises.open)", () => {
  const bytes = Uint8Array.from({ length: 50 }, (_, i) => 200 - i);
  const reader = (b: Blob) => {
    const { start, end } = b as unknown as { start: number; end: number };
    return bytes.slice(start, end).buffer;
  };
  const blob = { size: 50, slice: (start: number, end: number) => ({ start, end }) } as unknown as Blob;

  it("serves positioned reads of a registered Blob, short at the end, as io's FileSource expects", async () => {
    clearBlobFiles();
    registerBlobFile("/picked/m.gguf", blob);
    const h = await openBlobFile("/picked/m.gguf", "r", reader);
    expect((await h.stat()).size).toBe(50);
    const t = new Uint8Array(6);
    expect(await h.read(t, 2, 4, 10)).toEqual({ bytesRead: 4 });
    expect(Array.from(t)).toEqual([0, 0, 190, 189, 188, 187]);
    expect(await h.read(t, 0, 6, 48)).toEqual({ bytesRead: 2 });
    expect(await h.read(t, 0, 6, 50)).toEqual({ bytesRead: 0 });
    expect(blobFileStats).toEqual({ reads: 2, bytes: 6, largestRead: 4 });
    await h.close();
    await expect(h.read(t, 0, 1, 0)).rejects.toThrow("/picked/m.gguf: read after close");
  });

  it("names an unknown path and refuses writing", async () => {
    clearBlobFiles();
    await expect(openBlobFile("/picked/x.gguf", "r", reader)).rejects.toThrow(
      /\/picked\/x\.gguf: no such file/,
    );
    registerBlobFile("/picked/m.gguf", blob);
    await expect(openBlobFile("/picked/m.gguf", "w", reader)).rejects.toThrow(/read-only/);
  });

  it("access / readFile / join as model-llama's folder reader uses them; a missing file is ENOENT", async () => {
    clearBlobFiles();
    const text = new TextEncoder().encode('{"a":1}');
    const tblob = { size: text.length, slice: () => ({}) } as unknown as Blob;
    registerBlobFile(joinPath("/picked/m", "config.json"), tblob);
    await expect(accessBlobFile("/picked/m/config.json")).resolves.toBeUndefined();
    await expect(accessBlobFile("/picked/m/model.safetensors")).rejects.toMatchObject({ code: "ENOENT" });
    expect(await readBlobFile("/picked/m/config.json", "utf8", () => text.slice().buffer)).toBe('{"a":1}');
    expect(await readBlobFile("/picked/m/config.json", undefined, () => text.slice().buffer)).toEqual(text);
    await expect(readBlobFile("/picked/m/x.json", "utf8")).rejects.toMatchObject({ code: "ENOENT" });
    expect(joinPath("/picked/", "./m", "a.json")).toBe("/picked/m/a.json");
    expect(joinPath("m", "a.json")).toBe("m/a.json");
  });

  it("the scratch folder: io's atomic-write steps (stat ENOENT, open wx, positioned writes, rename), read back, rm", async () => {
    await expect(statScratch("/scratch/a/f.json")).rejects.toMatchObject({ code: "ENOENT" });
    await expect(openScratchFile("/scratch/a/f.json", "wx")).rejects.toMatchObject({ code: "ENOENT" });
    await mkdirScratch("/scratch/a");
    expect((await statScratch("/scratch/a")).isDirectory()).toBe(true);
    const h = await openScratchFile("/scratch/a/.f.json.tmp", "wx");
    await expect(openScratchFile("/scratch/a/.f.json.tmp", "wx")).rejects.toMatchObject({ code: "EEXIST" });
    const big = Uint8Array.from({ length: 3000 }, (_, i) => i % 251);
    expect(await h.write(big, 1000, 2000, 0)).toEqual({ bytesWritten: 2000 }); // grows past the first 1 KiB
    expect(await h.write(Uint8Array.of(7, 8, 9), 1, 2, 2500)).toEqual({ bytesWritten: 2 }); // a hole, zero-filled
    await h.sync();
    await h.close();
    await expect(h.write(big, 0, 1, 0)).rejects.toThrow(/write after close/);
    await renameScratch("/scratch/a/.f.json.tmp", "/scratch/a/f.json");
    await expect(statScratch("/scratch/a/.f.json.tmp")).rejects.toMatchObject({ code: "ENOENT" });
    expect((await statScratch("/scratch/a/f.json")).size).toBe(2502);
    const back = (await readBlobFile("/scratch/a/f.json")) as Uint8Array;
    expect(Array.from(back.subarray(0, 2000))).toEqual(Array.from(big.subarray(1000, 3000)));
    expect(Array.from(back.subarray(2000))).toEqual([...new Array(500).fill(0), 8, 9]);
    await accessBlobFile("/scratch/a/f.json");
    await rmScratch("/scratch/a/f.json");
    await expect(rmScratch("/scratch/a/f.json")).rejects.toMatchObject({ code: "ENOENT" });
    await rmScratch("/scratch/a/f.json", { force: true });
    await expect(readBlobFile("/scratch/a/f.json")).rejects.toMatchObject({ code: "ENOENT" });
  });
});
