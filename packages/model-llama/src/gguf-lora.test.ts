import { mkdtempSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseGguf, serializeGguf } from "@int21/io";
import { LoRAModel, mergeAndUnloadModel } from "@int21/lora";
import { SHARED, sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { addLlamaLoRA, llamaModules, setLlamaModules } from "./finetune";
import { forward } from "./forward";
import { ggufModuleTensor, loadGgufLora, readGgufLora, saveGgufLora, serializeGgufLora } from "./gguf-lora";
import { loadGguf, serializeGgufModel } from "./gguf-model";
import { loadLlama2c } from "./load-llama2c";
import { createRunState } from "./run-state";
import { Llama2cTokenizer } from "./tokenizer";
import type { LlamaWeights } from "./weights";

const tmp = mkdtempSync(join(tmpdir(), "int21-gguf-lora-"));
const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
const PROMPT = tok.encode("The little dog ran to the park and saw a bird.", { bos: true });
const INT4 = { quantize: { format: "int4-g32-asym-f16" } };
const load = () => loadLlama2c(sharedPath(SHARED.stories260K), INT4);

function logits(w: LlamaWeights): Float32Array {
  return forward(w, createRunState(w.config, { maxRows: PROMPT.length }), PROMPT, 0, "all").slice();
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** stories260K INT4 with a trained-looking adapter (non-zero B), v_proj with its own alpha. */
function adapted(): { w: LlamaWeights; model: LoRAModel } {
  const w = load();
  const model = addLlamaLoRA(w, {
    targetModules: ["q_proj", "v_proj", "down_proj"],
    r: 4,
    alpha: 8,
    alphaPattern: { v_proj: 16 },
    seed: 5,
  });
  for (const [, a] of model.adapters())
    for (let i = 0; i < a.loraB.length; i++) a.loraB[i] = 0.03 * Math.cos(i * 0.7 + a.outFeatures);
  return { w, model };
}

describe("llama.cpp LoRA adapter GGUF", () => {
  it("writes llama.cpp's keys and shapes against the base GGUF's tensors, and reloads to the same logits", async () => {
    const { w, model } = adapted();
    const want = logits(w);
    const path = join(tmp, "adapter.gguf");
    const report = await saveGgufLora(path, model, w.config);
    expect(report.alpha).toBe(8);
    expect(report.tensors.length).toBe(15);
    expect(report.rescaled).toEqual([0, 1, 2, 3, 4].map((i) => `model.layers.${i}.self_attn.v_proj`));

    const file = parseGguf(serializeGgufLora(model, w.config).bytes, "adapter");
    expect(file.get("general.type")).toBe("adapter");
    expect(file.get("adapter.type")).toBe("lora");
    expect(file.get("adapter.lora.alpha")).toBe(8);
    expect(file.get("general.architecture")).toBe("llama");
    // llama.cpp's checks (llama-adapter.cpp): model.ne[0] = a.ne[0], model.ne[1] = b.ne[1], a.ne[1] = b.ne[0]
    const base = parseGguf(serializeGgufModel(load(), { type: "Q8_0" }).bytes, "base");
    for (const t of report.tensors) {
      const m = base.tensors[t];
      const a = file.tensors[`${t}.lora_a`];
      const b = file.tensors[`${t}.lora_b`];
      expect(m).toBeDefined();
      expect(a.dims[0]).toBe(m.dims[0]);
      expect(b.dims[1]).toBe(m.dims[1]);
      expect(a.dims[1]).toBe(b.dims[0]);
      expect(a.dims[1]).toBe(4);
    }

    const fresh = load();
    const lm = new LoRAModel(llamaModules(fresh));
    const read = await loadGgufLora(path, lm);
    setLlamaModules(fresh, lm.modules);
    expect(read.config).toEqual({ ...w.config, sharedClassifier: false });
    const diff = maxAbsDiff(logits(fresh), want);
    console.log(`INT4 + LoRA → GGUF adapter → INT4 + LoRA: max |Δlogit| = ${diff.toExponential(3)}`);
    expect(diff).toBeLessThan(1e-4);
    expect(maxAbsDiff(logits(load()), want)).toBeGreaterThan(1e-3); // the adapter matters
  });

  it("merging into a re-quantized base instead (saveGguf mergeLoRA) reports the re-quantization", async () => {
    const { w } = adapted();
    const want = logits(w);
    expect(() => serializeGgufModel(w, { type: "Q8_0" })).toThrow(/layers\.0\.wq is LoRA-wrapped.*mergeLoRA/);
    const { bytes, report } = serializeGgufModel(w, { type: "Q8_0", mergeLoRA: true, embeddingType: "F32" });
    expect(report.merges.length).toBe(15);
    for (const m of report.merges)
      expect(m).toMatchObject({ requantized: true, format: "int4-g32-asym-f16" });
    const back = await loadGguf(bytes, { keepPacked: true });
    const diff = maxAbsDiff(logits(back.weights), want);
    const worst = Math.max(...report.merges.map((m) => m.maxAbsError));
    console.log(
      `INT4 + LoRA merged (re-quantized to int4) → GGUF Q8_0: worst weight error ${worst.toExponential(3)}, max |Δlogit| = ${diff.toExponential(3)}`,
    );
    // the file holds exactly lora's merge: the same model merged in memory gives the same logits
    const twin = adapted();
    mergeAndUnloadModel(twin.model);
    setLlamaModules(twin.w, twin.model.modules);
    expect(maxAbsDiff(logits(back.weights), logits(twin.w))).toBeLessThan(1e-4);
    expect(diff).toBeGreaterThan(0);
    expect(w.layers[0].wq).toBe(llamaModules(w).get("model.layers.0.self_attn.q_proj")); // input untouched
  });

  it("refuses what llama.cpp could not load, and corrupt files, naming them", async () => {
    const w = loadLlama2c(sharedPath(SHARED.stories260K));
    const model = addLlamaLoRA(w, { targetModules: ["lm_head"], r: 2 });
    expect(() => serializeGgufLora(model, w.config)).toThrow(/tied to the embedding/);
    expect(ggufModuleTensor("model.layers.2.mlp.up_proj")).toBe("blk.2.ffn_up.weight");
    expect(() => ggufModuleTensor("model.embed_tokens")).toThrow(/not a LLaMA projection/);

    const { model: m, w: w4 } = adapted();
    const bytes = serializeGgufLora(m, w4.config).bytes;
    const f = parseGguf(bytes);
    const notAdapter = serializeGguf({
      metadata: { ...f.metadata, "general.type": { type: "string", value: "model" } },
      tensors: [],
    });
    await expect(readGgufLora(notAdapter)).rejects.toThrow(/general\.type is "model", expected "adapter"/);
    const swapped = serializeGguf({
      metadata: f.metadata,
      tensors: [
        { name: "blk.0.attn_q.weight.lora_a", type: "F32", shape: [64, 4], data: new Float32Array(256) },
        { name: "blk.0.attn_q.weight.lora_b", type: "F32", shape: [64, 4], data: new Float32Array(256) },
      ],
    });
    await expect(readGgufLora(swapped)).rejects.toThrow(/blk\.0\.attn_q\.weight.*do not share a rank/);
    const path = join(tmp, "cut.gguf");
    writeFileSync(path, bytes);
    truncateSync(path, statSync(path).size - 10);
    await expect(readGgufLora(path)).rejects.toThrow(new RegExp(`${path}.*(truncated|past the end)`));
  });
});
