// The pipeline on stories260K in Node (the worker runs the same class): load, quantize, LREC, fine-tune with
// a saved state, resume onto a fresh Studio, evaluate every configuration, generate, and the download bytes.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSafetensors } from "@int21/io";
import { evaluateNll } from "@int21/model-llama";
import {
  baseWeightsOf,
  bytesSource,
  loadGguf,
  loadInt21CheckpointBytes,
  loadLlamaAdapter,
  readGgufLora,
} from "@int21/loaders";
import { createWasmBackend, type WasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FinetuneSettings, type ModelInput, parseSavedRun, type StateStore, Studio } from "./studio";

const model = readFileSync(sharedPath(SHARED.stories260K));
const tok = readFileSync(sharedPath(SHARED.tok512));
const stories = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").split("<|endoftext|>");
const input = (): ModelInput => ({
  kind: "llama2c",
  model: bytesSource(new Uint8Array(model), "stories260K.bin"),
  tokenizer: new Uint8Array(tok),
  tokenizerName: "tok512.bin",
});
const quiet = () => {};

function memoryStore(): StateStore & { saves: number; bytes: Uint8Array | null } {
  return {
    saves: 0,
    bytes: null,
    async save(b) {
      this.saves++;
      this.bytes = b.slice();
    },
    async load() {
      return this.bytes;
    },
    async clear() {
      this.bytes = null;
    },
  };
}

const ftSettings = (steps: number): FinetuneSettings => ({
  data: stories.slice(20, 40).join("<|endoftext|>"),
  dataName: "train.txt",
  r: 4,
  alpha: 8,
  targets: ["q_proj", "v_proj", "down_proj"],
  steps,
  lr: 5e-3,
  batch: 2,
  seqLen: 64,
  saveEvery: 2,
});

const quant = {
  bits: 2 as const,
  groupSize: 32 as const,
  method: "gptq" as const,
  calibText: stories.slice(0, 20).join("\n"),
  calibWindows: 8,
  calibLen: 128,
};

let backend: WasmBackend;
beforeAll(async () => {
  backend = await createWasmBackend({ threads: 1 });
});
afterAll(() => backend.dispose());

describe("Studio on stories260K", () => {
  it("loads through a ByteSource, generates the llama2.c story greedily, and quantizes 8x smaller at INT4", async () => {
    const s = new Studio(backend);
    const sum = await s.load(input(), quiet);
    expect(sum.config).toMatchObject({ dim: 64, layers: 5, vocab: 512 });
    const g = s.generate({ prompt: "", steps: 40, temperature: 0, seed: 1 });
    expect(g.text.startsWith("Once upon a time, there was a little girl named Lily.")).toBe(true);
    const progress: number[] = [];
    const q = s.quantize({ ...quant, bits: 4, method: "rtn", calibText: "" }, (p) => progress.push(p.done));
    expect(q.summary.student).toBe("int4-g32-asym-f16 RTN");
    expect(q.summary.teacherBytes / q.summary.studentBytes).toBeGreaterThan(5);
    expect(progress.at(-1)).toBe(1);
    expect(
      s.generate({ prompt: "", steps: 20, temperature: 0, seed: 1 }).text.startsWith("Once upon a time"),
    ).toBe(true);
  }, 240_000);

  it("INT2 GPTQ beats RTN's output error; LREC lowers KL; a resumed fine-tune ends where a straight one does", async () => {
    const a = new Studio(backend, memoryStore());
    await a.load(input(), quiet);
    const q = a.quantize(quant, quiet);
    expect(q.meanRelError).toBeLessThan(q.meanRtnRelError);
    const kl: number[] = [];
    await a.lrec(
      { steps: 8, r: 4, lr: 2e-3, lambda: 0, batch: 2, seq: 64, text: stories.slice(40, 80).join("\n") },
      quiet,
      (st) => kl.push(st.klPerToken),
    );
    expect(kl).toHaveLength(8);
    expect(Math.min(...kl.slice(-3))).toBeLessThan(kl[0]);

    // straight: 6 steps
    a.startFinetune(ftSettings(6));
    const straight: number[] = [];
    await a.finetune(quiet, (st) => straight.push(st.loss));
    expect(straight).toHaveLength(6);

    // interrupted after 4 (state saved at 2 and 4), resumed on a fresh Studio for the last 2
    const store = memoryStore();
    const b = new Studio(backend, store);
    await b.load(input(), quiet);
    b.quantize(quant, quiet);
    await b.lrec(
      { steps: 8, r: 4, lr: 2e-3, lambda: 0, batch: 2, seq: 64, text: stories.slice(40, 80).join("\n") },
      quiet,
      quiet,
    );
    b.startFinetune(ftSettings(6));
    const first: number[] = [];
    await b.finetune(quiet, (st) => first.push(st.loss), { until: 4 });
    expect(store.saves).toBe(2);
    const saved = parseSavedRun(store.bytes!);
    expect(saved.meta.step).toBe(4);
    expect(saved.meta.model).toBe("stories260K.bin");

    const c = new Studio(backend, memoryStore(), { scratchDir: mkdtempSync(join(tmpdir(), "studio-")) });
    await c.load(input(), quiet);
    const r = await c.resumeRun(store.bytes!, quiet);
    expect(r.summary.ftSteps).toBe(4);
    expect(r.summary.studentBytes).toBe(q.summary.studentBytes); // the packed base, adapters not counted
    expect(r.summary.adapters).toEqual(["lrec", "default"]);
    expect(c.ftHistory.map((h) => h.loss)).toEqual(first); // the curves continue where they were
    expect(c.lrecHistory).toHaveLength(8);
    const rest: number[] = [];
    await c.finetune(quiet, (st) => rest.push(st.loss));
    expect([...first, ...rest].map((l) => l.toFixed(5))).toEqual(straight.map((l) => l.toFixed(5)));

    // perplexity of every configuration
    const evals = c.evaluate(stories.slice(900, 910).join("\n"), 128, quiet);
    expect(evals.map((e) => e.label)).toEqual([
      "float32 teacher",
      "int2-g32-asym-f16 GPTQ",
      "int2-g32-asym-f16 GPTQ + LREC",
      "int2-g32-asym-f16 GPTQ + LREC + LoRA",
    ]);
    for (const e of evals) expect(Number.isFinite(e.perplexity)).toBe(true);
    expect(evals[0].perplexity).toBeLessThan(evals[1].perplexity);

    // downloads: the GGUF reads back as the packed base; LoRA GGUF, PEFT and the int21 checkpoint parse
    const gg = c.exportFile("gguf");
    expect(gg.name).toBe("stories260K-int2-g32-asym-f16.gguf");
    const back = await loadGguf(gg.bytes, { backend });
    expect(back.weights.config.dim).toBe(64);
    expect(back.tokenizer?.vocabSize).toBe(512);
    // …and opens in the studio as a GGUF: its greedy text is the packed student's without adapters
    const d = new Studio(backend);
    const dSum = await d.load({ kind: "gguf", src: gg.bytes, name: gg.name }, quiet);
    expect(dSum.kind).toBe("gguf");
    const fromGguf = d.generate({ prompt: "Once upon a time", steps: 30, temperature: 0, seed: 1 }).text;
    const e = new Studio(backend);
    await e.load(input(), quiet);
    e.quantize(quant, quiet);
    expect(fromGguf).toBe(
      e.generate({ prompt: "Once upon a time", steps: 30, temperature: 0, seed: 1 }).text,
    );
    const lg = c.exportFile("lora-gguf");
    const lora = await readGgufLora(lg.bytes);
    expect(lora.modules.length).toBe(15); // 5 layers × q, v, down
    expect(lg.name).toBe("stories260K-int2-g32-asym-f16-default-lora.gguf");
    const cfg = JSON.parse(new TextDecoder().decode((await c.exportPeftFile("peft-config")).bytes));
    expect(cfg.r).toBe(4);
    expect(cfg.peft_type).toBe("LORA");
    expect((await c.exportPeftFile("peft-weights")).bytes.byteLength).toBeGreaterThan(1000);
    const ckFile = c.exportFile("checkpoint");
    const ck = await loadInt21CheckpointBytes(ckFile.bytes);
    expect(ck.weights.config.nLayers).toBe(5);
    expect(Object.keys(ck.adapters?.tensors ?? {}).some((k) => k.startsWith("default/"))).toBe(true);

    // the checkpoint opens as the student of the float model: same adapters, same greedy text
    const f = new Studio(backend);
    await f.load(input(), quiet);
    const fs = await f.loadStudent(ckFile.bytes, ckFile.name);
    expect(fs.student).toBe("stories260K-int2-g32-asym-f16.int21.safetensors (int21 checkpoint)");
    expect(fs.adapters).toEqual(["lrec", "default"]);
    const g = { prompt: "Once upon a time", steps: 40, temperature: 0, seed: 1 };
    expect(f.generate(g).text).toBe(c.generate(g).text);
    expect(f.evaluate(stories.slice(900, 902).join("\n"), 64, quiet).map((e) => e.label)).toEqual([
      "float32 teacher",
      "stories260K-int2-g32-asym-f16.int21.safetensors (int21 checkpoint)",
      "stories260K-int2-g32-asym-f16.int21.safetensors (int21 checkpoint) + LREC",
      "stories260K-int2-g32-asym-f16.int21.safetensors (int21 checkpoint) + LREC + LoRA",
    ]);
  }, 240_000);

  it("refuses a saved run of another model, and LREC before quantizing, naming why", async () => {
    const s = new Studio(backend);
    await s.load(input(), quiet);
    expect(() => s.generate({ prompt: "hi", chat: true, steps: 10, temperature: 0, seed: 1 })).toThrow(
      "stories260K.bin: the tokenizer has no chat template",
    );
    await expect(
      s.lrec({ steps: 1, r: 2, lr: 1e-3, lambda: 0, batch: 1, seq: 16, text: "x" }, quiet, quiet),
    ).rejects.toThrow(/quantize the model first/);
    expect(() => s.startFinetune(ftSettings(2))).toThrow(/quantize the model first/);
  }, 240_000);

  it("chats with a Hugging Face folder's template (smollm2): the rendered turn, then greedy tokens", async () => {
    const dir = join(sharedPath("fixtures/hf-families"), "smollm2");
    const files: Record<string, ReturnType<typeof bytesSource>> = {};
    for (const f of readdirSync(dir))
      if (/\.(json|safetensors|jinja)$/.test(f))
        files[f] = bytesSource(new Uint8Array(readFileSync(join(dir, f))), f);
    const s = new Studio(backend);
    await s.load({ kind: "hf", files, label: "smollm2" }, quiet);
    const g = s.generate({ prompt: "Tell me a story", chat: true, steps: 60, temperature: 0, seed: 1 });
    expect(g.rendered).toContain("Tell me a story");
    expect(g.rendered).not.toBe("Tell me a story");
    expect(g.tokens.slice(0, g.promptTokens)).toEqual(s.tokenizer!.encode(g.rendered!));
    expect(g.generatedTokens).toBeGreaterThan(0);
    // fine-tuning on chat records: rendered with the folder's template, trained on the assistant turns
    s.quantize({ ...quant, bits: 4, method: "rtn", calibText: "" }, quiet);
    const chat = stories
      .slice(0, 6)
      .map((t) =>
        JSON.stringify({
          messages: [
            { role: "user", content: "Tell me a story" },
            { role: "assistant", content: t.trim().slice(0, 200) },
          ],
        }),
      )
      .join("\n");
    s.startFinetune({ ...ftSettings(2), data: chat, dataName: "chat.jsonl", seqLen: 48, saveEvery: 0 });
    const losses: number[] = [];
    await s.finetune(quiet, (st) => losses.push(st.loss));
    expect(losses).toHaveLength(2);
    for (const l of losses) expect(Number.isFinite(l) && l > 0).toBe(true);
  }, 240_000);

  it("Phi-3 (fused qkv_proj / gate_up_proj): the PEFT download is model-llama's fused layout, and reads back to the same model", async () => {
    const dir = join(sharedPath("fixtures/hf-families"), "phi3");
    const files: Record<string, ReturnType<typeof bytesSource>> = {};
    for (const f of readdirSync(dir))
      if (/\.(json|safetensors|jinja)$/.test(f))
        files[f] = bytesSource(new Uint8Array(readFileSync(join(dir, f))), f);
    const scratch = mkdtempSync(join(tmpdir(), "studio-phi3-"));
    const s = new Studio(backend, null, { scratchDir: scratch });
    await s.load({ kind: "hf", files, label: "phi3", dir }, quiet);
    s.quantize({ ...quant, bits: 4, method: "rtn", calibText: "" }, quiet);
    s.startFinetune({
      ...ftSettings(2),
      targets: ["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "down_proj"],
      seqLen: 32,
      saveEvery: 0,
    });
    await s.finetune(quiet, quiet);
    const cfgFile = await s.exportPeftFile("peft-config");
    expect(cfgFile.name).toBe("adapter_config.json");
    const cfg = JSON.parse(new TextDecoder().decode(cfgFile.bytes));
    expect([...cfg.target_modules].sort()).toEqual(["down_proj", "gate_up_proj", "qkv_proj"]);
    // one LoRA per fused module of rank 3·4 (q, k, v) / 2·4 (gate, up), scaling 1
    expect(cfg.rank_pattern["model.layers.0.self_attn.qkv_proj"]).toBe(12);
    expect(cfg.alpha_pattern["model.layers.1.mlp.gate_up_proj"]).toBe(8);
    const wFile = await s.exportPeftFile("peft-weights");
    const header = parseSafetensors(wFile.bytes, wFile.name);
    const shape = (k: string) => header.tensors[`base_model.model.model.layers.0.${k}.weight`]?.shape;
    expect(shape("self_attn.qkv_proj.lora_A")).toEqual([12, 128]);
    expect(shape("self_attn.qkv_proj.lora_B")).toEqual([3 * 128, 12]);
    expect(shape("mlp.gate_up_proj.lora_B")).toEqual([2 * 320, 8]);
    expect(shape("mlp.down_proj.lora_A")).toEqual([4, 320]);
    expect(shape("self_attn.q_proj.lora_A")).toBeUndefined();
    expect(readdirSync(scratch).flatMap((d) => readdirSync(join(scratch, d)))).toEqual([]); // read back and removed
    // the downloaded folder, loaded onto the same packed base by model-llama's reader, is the studio's model
    const out = mkdtempSync(join(tmpdir(), "studio-phi3-peft-"));
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, cfgFile.name), cfgFile.bytes);
    writeFileSync(join(out, wFile.name), wFile.bytes);
    const base = baseWeightsOf(s.student!);
    const ids = s.tokenizer!.encode(stories[900].slice(0, 300), { bos: true }).slice(0, 48);
    const ref = evaluateNll(s.student!, ids, { ctx: 48 }).meanNll;
    const plain = evaluateNll(base, ids, { ctx: 48 }).meanNll;
    await loadLlamaAdapter(out, base);
    const back = evaluateNll(base, ids, { ctx: 48 }).meanNll;
    expect(Math.abs(back - ref)).toBeLessThan(1e-4);
    expect(Math.abs(plain - ref)).toBeGreaterThan(10 * Math.abs(back - ref)); // the adapter changes the model
  }, 240_000);
});
