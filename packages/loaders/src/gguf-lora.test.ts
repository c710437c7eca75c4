import { mkdtempSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseGguf, serializeGguf } from "@int21/io";
import { LoRAModel, mergeAndUnloadModel } from "@int21/lora";
import { SHARED, sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { ggufModuleTensor, loadGgufLora, readGgufLora, saveGgufLora, serializeGgufLora } from "./gguf-lora";
import { loadGguf, serializeGgufModel } from "./gguf-model";
import { loadHf } from "./load-hf";
import { loadLlama2c } from "./load-llama2c";
import { Llama2cTokenizer } from "./tokenizer";
import {
  addLlamaLoRA,
  llamaModules,
  setLlamaModules,
  headSize,
  forward,
  createRunState,
  type LlamaWeights,
} from "@int21/model-llama";

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

describe("LoRA GGUFs of the NEOX and fused families (llama.cpp's tensor names and row order)", () => {
  const families = ["qwen2", "qwen3", "phi3", "gemma2", "llama3"] as const;
  const ids = Array.from({ length: 20 }, (_, i) => (i * 37 + 11) % 200);
  const famLogits = (w: LlamaWeights) =>
    forward(w, createRunState(w.config, { maxRows: ids.length }), ids, 0, "all").slice();
  /** The fixture; Gemma 2's query_pre_attn_scalar set to llama.cpp's implied head size (GGUF has no key). */
  async function base(family: string): Promise<LlamaWeights> {
    const w = await loadHf(sharedPath(`fixtures/hf-families/${family}`));
    if (family !== "gemma2") return w;
    return { ...w, config: { ...w.config, queryPreAttnScalar: headSize(w.config) } };
  }
  for (const family of families) {
    it(`${family}: base GGUF + LoRA GGUF read back give the adapted logits`, async () => {
      const w = await base(family);
      const model = addLlamaLoRA(w, {
        targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        r: 4,
        alpha: 8,
        rankPattern: { k_proj: 2, up_proj: 3 },
        alphaPattern: { v_proj: 16, gate_proj: 4 },
        seed: 3,
      });
      for (const [, a] of model.adapters())
        for (let i = 0; i < a.loraB.length; i++) a.loraB[i] = 0.05 * Math.sin(i * 0.37 + a.outFeatures);
      setLlamaModules(w, model.modules);
      const want = famLogits(w);
      const plain = await base(family);
      expect(maxAbsDiff(famLogits(plain), want)).toBeGreaterThan(1e-2); // the adapter matters

      const { bytes: baseBytes } = serializeGgufModel(plain, { type: "F32" });
      const { bytes, report } = serializeGgufLora(model, w.config);
      const file = parseGguf(bytes, "adapter");
      const arch = family === "llama3" ? "llama" : family;
      expect(file.get("general.architecture")).toBe(arch);
      // llama.cpp's loader rules against the base file: model.ne[0] = a.ne[0], model.ne[1] = b.ne[1], a.ne[1] = b.ne[0]
      const baseFile = parseGguf(baseBytes, "base");
      for (const t of report.tensors) {
        const m = baseFile.tensors[t];
        expect(m, t).toBeDefined();
        expect(file.tensors[`${t}.lora_a`].dims[0]).toBe(m.dims[0]);
        expect(file.tensors[`${t}.lora_b`].dims[1]).toBe(m.dims[1]);
        expect(file.tensors[`${t}.lora_a`].dims[1]).toBe(file.tensors[`${t}.lora_b`].dims[0]);
      }
      const L = w.config.nLayers;
      if (family === "phi3") {
        // one LoRA per fused tensor: rank 4 + 2 + 4 on attn_qkv, 4 + 3 on ffn_up
        expect(report.tensors.length).toBe(4 * L);
        expect(file.tensors["blk.0.attn_qkv.weight.lora_a"].dims[1]).toBe(10);
        expect(file.tensors["blk.0.ffn_up.weight.lora_a"].dims[1]).toBe(7);
      } else expect(report.tensors.length).toBe(7 * L);

      // what llama.cpp computes, W_file + alpha/R · B·A, is the merged model's tensor in the file's row order
      const merged = parseGguf(serializeGgufModel(w, { type: "F32", mergeLoRA: true }).bytes, "merged");
      const alpha = file.get("adapter.lora.alpha") as number;
      let worst = 0;
      for (const t of report.tensors) {
        const [R, K] = file.tensors[`${t}.lora_a`].shape;
        const N = file.tensors[`${t}.lora_b`].shape[0];
        const A = file.readTensorF32(`${t}.lora_a`);
        const B = file.readTensorF32(`${t}.lora_b`);
        const W0 = baseFile.readTensorF32(t);
        const W1 = merged.readTensorF32(t);
        for (let n = 0; n < N; n++)
          for (let k = 0; k < K; k++) {
            let d = 0;
            for (let j = 0; j < R; j++) d += B[n * R + j] * A[j * K + k];
            worst = Math.max(worst, Math.abs(W0[n * K + k] + (alpha / R) * d - W1[n * K + k]));
          }
      }
      expect(worst).toBeLessThan(1e-5);

      const back = await loadGguf(baseBytes);
      const lm = new LoRAModel(llamaModules(back.weights));
      const read = await loadGgufLora(bytes, lm);
      setLlamaModules(back.weights, lm.modules);
      expect(read.architecture).toBe(arch);
      // Phi-3's block-diagonal B splits back into the parts' own ranks
      const ranks = Object.fromEntries(read.modules.map((m) => [m.module, m.r]));
      expect(ranks["model.layers.0.self_attn.k_proj"]).toBe(2);
      expect(ranks["model.layers.0.mlp.up_proj"]).toBe(3);
      const diff = maxAbsDiff(famLogits(back.weights), want);
      console.log(`${family}: LoRA GGUF read back, max |Δlogit| = ${diff.toExponential(3)}`);
      expect(diff).toBeLessThan(1e-4);

      // a file without the base's <arch>.* keys (as convert_lora_to_gguf.py writes) needs the config
      const bare = serializeGguf({
        metadata: Object.fromEntries(
          Object.entries(file.metadata).filter(([k]) => !k.startsWith(`${arch}.`)),
        ),
        tensors: file.names.map((n) => ({
          name: n,
          type: "F32" as const,
          shape: file.tensors[n].shape,
          data: file.readTensorF32(n),
        })),
      });
      if (arch !== "llama")
        await expect(readGgufLora(bare)).rejects.toThrow(
          new RegExp(`a ${arch} adapter .*needs the base model's config`),
        );
      const again = await readGgufLora(bare, { config: back.weights.config });
      expect(again.modules.map((m) => [m.module, m.r, m.alpha])).toEqual(
        read.modules.map((m) => [m.module, m.r, m.alpha]),
      );
      for (let i = 0; i < read.modules.length; i++)
        expect(again.modules[i].loraB).toEqual(read.modules[i].loraB);
    }, 120_000);
  }

  it("a Phi-3 adapter on q alone comes back on q alone; a wrong-family config is refused", async () => {
    const w = await base("phi3");
    const model = addLlamaLoRA(w, { targetModules: ["q_proj"], r: 2, alpha: 4, seed: 1 });
    for (const [, a] of model.adapters()) a.loraB.fill(0.01);
    const read = await readGgufLora(serializeGgufLora(model, w.config).bytes);
    expect(read.modules.map((m) => m.module)).toEqual(
      Array.from({ length: w.config.nLayers }, (_, l) => `model.layers.${l}.self_attn.q_proj`),
    );
    expect(read.modules.every((m) => m.r === 2 && m.alpha === 4)).toBe(true);
    const qwen = await base("qwen2");
    const q = addLlamaLoRA(qwen, { targetModules: ["q_proj"], r: 2 });
    const f = parseGguf(serializeGgufLora(q, qwen.config).bytes);
    const bare = serializeGguf({
      metadata: Object.fromEntries(Object.entries(f.metadata).filter(([k]) => !k.startsWith("qwen2."))),
      tensors: f.names.map((n) => ({
        name: n,
        type: "F32" as const,
        shape: f.tensors[n].shape,
        data: f.readTensorF32(n),
      })),
    });
    await expect(readGgufLora(bare, { config: w.config })).rejects.toThrow(
      /adapter is for a qwen2 model, the config given is phi3/,
    );
  }, 60_000);
});
