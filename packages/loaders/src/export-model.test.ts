import { existsSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHARED, sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { exportModel } from "./export-model";
import { loadGgufLora } from "./gguf-lora";
import { loadGguf } from "./gguf-model";
import { LoRAModel } from "@int21/lora";
import { loadHf } from "./load-hf";
import { loadLlama2c } from "./load-llama2c";
import { Llama2cTokenizer } from "./tokenizer";
import {
  addLlamaLoRA,
  llamaModules,
  setLlamaModules,
  forward,
  quantizeModel,
  syntheticWeights,
  createRunState,
  type LlamaWeights,
} from "@int21/model-llama";
import { loadLlamaAdapter } from "./peft-adapter";

const tmp = mkdtempSync(join(tmpdir(), "int21-export-model-"));
const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
const PROMPT = tok.encode("One day, Tim found a big red ball in the park.", { bos: true });

function logits(w: LlamaWeights): Float32Array {
  return forward(w, createRunState(w.config, { maxRows: PROMPT.length }), PROMPT, 0, "all").slice();
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** stories260K with a non-zero adapter "lrec" on q/v/down (B filled so the adapter changes the logits). */
function adapted() {
  const w = loadLlama2c(sharedPath(SHARED.stories260K));
  const base = logits(w);
  const lora = addLlamaLoRA(w, {
    name: "lrec",
    targetModules: ["q_proj", "v_proj", "down_proj"],
    r: 4,
    seed: 3,
  });
  for (const [, a] of lora.adapters("lrec"))
    for (let i = 0; i < a.loraB.length; i++) a.loraB[i] = 0.05 * Math.sin(i + a.outFeatures);
  const want = logits(w);
  expect(maxAbsDiff(want, base)).toBeGreaterThan(1e-2); // the adapter matters
  return { w, lora, base, want };
}

describe("exportModel", () => {
  it("gguf: an F16 base, an F16 LoRA GGUF beside it and a Modelfile; read back they give the adapted logits", async () => {
    const { w, lora, base, want } = adapted();
    const out = join(tmp, "g", "story.gguf");
    const r = await exportModel(w, { to: "gguf", out, lora, tokenizer: tok });
    const loraPath = join(tmp, "g", "story.lrec.lora.gguf");
    expect(r.files.map((f) => f.path)).toEqual([out, loraPath, join(tmp, "g", "Modelfile")]);
    expect(r.adapters).toEqual(["lrec"]);
    expect(readFileSync(join(tmp, "g", "Modelfile"), "utf8")).toMatch(
      /^# Ollama.*\nFROM \.\/story\.gguf\nADAPTER \.\/story\.lrec\.lora\.gguf\n$/,
    );
    expect(r.llamaCppCommand).toBe(`llama-cli -m ${out} --lora ${loraPath} -p "Once upon a time"`);
    const g = await loadGguf(out);
    expect(g.tokenizer?.vocabSize).toBe(tok.vocabSize);
    // F16 weights: the base's logits to f16 rounding, not bit for bit
    const gotBase = logits(g.weights);
    expect(maxAbsDiff(gotBase, base)).toBeLessThan(5e-2);
    const model = new LoRAModel(llamaModules(g.weights));
    await loadGgufLora(loraPath, model);
    setLlamaModules(g.weights, model.modules);
    const got = logits(g.weights);
    expect(maxAbsDiff(got, want)).toBeLessThan(5e-2);
    expect(maxAbsDiff(got, want)).toBeLessThan(maxAbsDiff(want, base) / 10);
  });

  it("gguf --merge: one file holding the adapted model, no LoRA file, a Modelfile without ADAPTER", async () => {
    const { w, lora, want } = adapted();
    const out = join(tmp, "gm", "merged.gguf");
    const r = await exportModel(w, {
      to: "gguf",
      out,
      lora,
      merge: true,
      ggufType: "F32",
      ggufEmbeddingType: "F32",
    });
    expect(r.merged).toEqual(["lrec"]);
    expect(r.adapters).toEqual([]);
    expect(existsSync(join(tmp, "gm", "merged.lrec.lora.gguf"))).toBe(false);
    expect(readFileSync(join(tmp, "gm", "Modelfile"), "utf8")).not.toMatch(/ADAPTER/);
    expect(maxAbsDiff(logits((await loadGguf(out)).weights), want)).toBeLessThan(1e-4);
  });

  it("gguf --merge of a packed INT2 model merges in float (F16 file = adapted logits); a Q4_0 merge that blurs the correction is refused", async () => {
    const w = loadLlama2c(sharedPath(SHARED.stories260K), { quantize: { format: "int2-g64-asym-f16" } });
    const base = logits(w);
    const lora = addLlamaLoRA(w, { name: "lrec", targetModules: ["q_proj", "v_proj"], r: 4, seed: 3 });
    for (const [, a] of lora.adapters("lrec"))
      for (let i = 0; i < a.loraB.length; i++) a.loraB[i] = 0.05 * Math.sin(i + a.outFeatures);
    const want = logits(w);
    expect(maxAbsDiff(want, base)).toBeGreaterThan(1e-2);
    const f16 = join(tmp, "m2", "f16.gguf");
    const r = await exportModel(w, { to: "gguf", out: f16, lora, merge: true, ggufType: "F16" });
    expect(r.lossyMerges).toEqual([]);
    const got = logits((await loadGguf(f16)).weights);
    expect(maxAbsDiff(got, want)).toBeLessThan(maxAbsDiff(want, base) / 10);
    // a correction far below Q4_0's rounding: merging it into Q4_0 would lose it
    for (const [, a] of lora.adapters("lrec")) for (let i = 0; i < a.loraB.length; i++) a.loraB[i] *= 1e-3;
    const q4 = join(tmp, "m2", "q4.gguf");
    await expect(
      exportModel(w, { to: "gguf", out: q4, lora, merge: true, ggufType: "Q4_0" }),
    ).rejects.toThrow(
      /merging into Q4_0 would throw the adapters away: in 10 of 10 merged tensors .*model\.layers\.\d\.self_attn\.[qv]_proj: error rms .* ≥ correction rms .*keep the adapters as LoRA GGUFs/,
    );
    expect(existsSync(q4)).toBe(false);
    const forced = await exportModel(w, {
      to: "gguf",
      out: q4,
      lora,
      merge: true,
      ggufType: "Q4_0",
      allowLossyMerge: true,
    });
    expect(forced.lossyMerges).toHaveLength(10);
    expect(existsSync(q4)).toBe(true);
  });

  it('gguf merge "f16" of a Q2_K model: one file, adapted projections F16 and the rest Q2_K blocks verbatim, read back = the adapted model; a Q2_K re-quantizing merge is refused naming the lossless alternatives', async () => {
    // k-quant-friendly shapes (rows of whole 256-weight blocks), as a real model's
    const config = {
      dim: 256,
      hiddenDim: 512,
      nLayers: 1,
      nHeads: 4,
      nKvHeads: 4,
      vocabSize: 512,
      seqLen: 64,
      ropeTheta: 10000,
      normEps: 1e-5,
      sharedClassifier: true,
    };
    const float = syntheticWeights(config, { seed: 5 });
    const w = quantizeModel(float, { format: "q2_k", quantizer: "rtn" }).weights;
    const ids = [1, 403, 407, 261, 378, 5, 77];
    const run = (m: LlamaWeights) =>
      forward(m, createRunState(m.config, { maxRows: ids.length }), ids, 0, "all").slice();
    const base = run(w);
    // a correction on q/v/down the size of an LREC one: comparable to Q2_K's own rounding error
    const lora = addLlamaLoRA(w, {
      name: "lrec",
      targetModules: ["q_proj", "v_proj", "down_proj"],
      r: 4,
      seed: 3,
    });
    for (const [, a] of lora.adapters("lrec"))
      for (let i = 0; i < a.loraB.length; i++) a.loraB[i] = 0.02 * Math.sin(i + a.outFeatures);
    const want = run(w);
    expect(maxAbsDiff(want, base)).toBeGreaterThan(1e-2);

    // two files: the Q2_K base + the LoRA GGUF (the reference)
    const two = await exportModel(w, { to: "gguf", out: join(tmp, "q2m", "two.gguf"), lora });
    // one file, merged in F16
    const out = join(tmp, "q2m", "merged.gguf");
    const r = await exportModel(w, { to: "gguf", out, lora, merge: "f16", ggufEmbeddingType: "F32" });
    expect(r.merged).toEqual(["lrec"]);
    expect(r.lossyMerges).toEqual([]);
    expect(r.files.map((f) => f.path)).toEqual([out, join(tmp, "q2m", "Modelfile")]);
    const file = await loadGguf(out, { keepPacked: true });
    const types = Object.fromEntries(file.tensors.map((t) => [t.name, t.type]));
    expect(types).toMatchObject({
      "layers.0.wq": "F16",
      "layers.0.wv": "F16",
      "layers.0.w2": "F16",
      "layers.0.wk": "Q2_K",
      "layers.0.wo": "Q2_K",
      "layers.0.w1": "Q2_K",
      "layers.0.w3": "Q2_K",
    });
    // F16 rounds the merged weights (Q2_K values are no f16 numbers): far below what the adapter changes
    const d16 = maxAbsDiff(run(file.weights), want);
    expect(d16).toBeLessThan(maxAbsDiff(want, base) / 100);
    // merge "f32": the adapted model itself
    const r32 = await exportModel(w, {
      to: "gguf",
      out: join(tmp, "q2m", "merged32.gguf"),
      lora,
      merge: "f32",
      ggufEmbeddingType: "F32",
    });
    expect(r32.gguf?.projectionBitsPerWeight).toBeGreaterThan(r.gguf!.projectionBitsPerWeight);
    expect(maxAbsDiff(run((await loadGguf(join(tmp, "q2m", "merged32.gguf"))).weights), want)).toBeLessThan(
      1e-4,
    );
    // its size: the three adapted projections at 16 bits, the other four at Q2_K's 2.625
    const projections = 256 * 256 * 4 + 3 * 256 * 512;
    const bits = (256 * 256 * 2 + 256 * 512) * 16 + (256 * 256 * 2 + 2 * 256 * 512) * 2.625;
    expect(r.gguf?.projectionBitsPerWeight).toBeCloseTo(bits / projections, 6);
    expect(two.gguf?.projectionBitsPerWeight).toBeCloseTo(2.625, 6);

    // re-quantized into Q2_K the correction drowns in the rounding: refused, naming the alternatives
    const q2 = join(tmp, "q2m", "q2.gguf");
    const refusal = exportModel(w, { to: "gguf", out: q2, lora, merge: "q2_k" });
    await expect(refusal).rejects.toThrow(
      /merging into q2_k would throw the adapters away: in 3 of 3 merged tensors .*error rms .* ≥ correction rms .*keep the adapters as LoRA GGUFs beside the base \(two files: no merge\), or merge: "f16" \(--merge f16: one file, the 3 adapted projections F16, the rest as it is: \d+\.\d\d bits per weight\)/,
    );
    expect(existsSync(q2)).toBe(false);
    const forced = await exportModel(w, { to: "gguf", out: q2, lora, merge: "q2_k", allowLossyMerge: true });
    expect(forced.lossyMerges).toHaveLength(3);
    const lossy = run((await loadGguf(q2)).weights);
    // the forced file is further from the adapted model than the F16 merge by orders of magnitude
    expect(maxAbsDiff(lossy, want)).toBeGreaterThan(100 * d16);
    // a merge into something that is no block format is refused naming the option's values
    await expect(exportModel(w, { to: "gguf", out: q2, lora, merge: "int2-g64-asym-f16" })).rejects.toThrow(
      /merge "int2-g64-asym-f16" is neither f16, f32 nor a ggml block format/,
    );
  }, 60_000);

  it("hf: the float base (bit for bit) and the adapter as PEFT whose base_model_name_or_path is the folder", async () => {
    const { w, lora, base, want } = adapted();
    const out = join(tmp, "hf");
    const r = await exportModel(w, { to: "hf", out, lora });
    const adir = join(out, "adapters", "lrec");
    expect(r.files.map((f) => f.path)).toContain(adir);
    const back = await loadHf(out);
    expect(maxAbsDiff(logits(back), base)).toBe(0);
    const cfg = JSON.parse(readFileSync(join(adir, "adapter_config.json"), "utf8"));
    expect(cfg.base_model_name_or_path).toBe(out);
    expect(existsSync(cfg.base_model_name_or_path)).toBe(true);
    await loadLlamaAdapter(adir, back);
    expect(maxAbsDiff(logits(back), want)).toBeLessThan(1e-5);
  });

  it("hf --merge: the adapted model in float; peft: the adapter alone with the given base id", async () => {
    const { w, lora, want } = adapted();
    const out = join(tmp, "hfm");
    const r = await exportModel(w, { to: "hf", out, lora, merge: true });
    expect(r.merged).toEqual(["lrec"]);
    expect(existsSync(join(out, "adapters"))).toBe(false);
    expect(maxAbsDiff(logits(await loadHf(out)), want)).toBeLessThan(1e-5);
    const pdir = join(tmp, "peft");
    await exportModel(w, { to: "peft", out: pdir, lora, baseModel: "me/stories260K-hf" });
    const cfg = JSON.parse(readFileSync(join(pdir, "adapter_config.json"), "utf8"));
    expect(cfg).toMatchObject({ base_model_name_or_path: "me/stories260K-hf", r: 4, peft_type: "LORA" });
  });

  it("peft with adapterDtype F16/BF16: half the file, read back within the dtype's rounding", async () => {
    const { w, lora, base, want } = adapted();
    const sizes: Record<string, number> = {};
    for (const dtype of ["F32", "F16", "BF16"] as const) {
      const dir = join(tmp, `peft-${dtype}`);
      await exportModel(w, { to: "peft", out: dir, lora, adapterDtype: dtype });
      const file = join(dir, "adapter_model.safetensors");
      sizes[dtype] = statSync(file).size;
      const header = readFileSync(file)
        .subarray(8, 8 + 200)
        .toString("utf8");
      expect(header).toContain(`"dtype":"${dtype}"`);
      const back = loadLlama2c(sharedPath(SHARED.stories260K));
      await loadLlamaAdapter(dir, back);
      const d = maxAbsDiff(logits(back), want);
      if (dtype === "F32") expect(d).toBeLessThan(1e-5);
      else expect(d).toBeLessThan(maxAbsDiff(want, base) / 20);
    }
    expect(sizes.F16 / sizes.F32).toBeLessThan(0.56);
    expect(Math.abs(sizes.BF16 - sizes.F16)).toBeLessThan(256); // the same data; only the header differs
  });

  it("refuses a PEFT export without adapters, and merge with peft, naming the problem", async () => {
    const w = loadLlama2c(sharedPath(SHARED.stories260K));
    await expect(exportModel(w, { to: "peft", out: join(tmp, "none") })).rejects.toThrow(/no LoRA adapter/);
    const { w: w2, lora } = adapted();
    await expect(exportModel(w2, { to: "peft", out: join(tmp, "x"), lora, merge: true })).rejects.toThrow(
      /merge does not apply/,
    );
  });
});
