import { existsSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHARED, sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { exportModel } from "./export-model";
import { addLlamaLoRA, llamaModules, loadLlamaAdapter, setLlamaModules } from "./finetune";
import { forward } from "./forward";
import { loadGgufLora } from "./gguf-lora";
import { loadGguf } from "./gguf-model";
import { LoRAModel } from "@int21/lora";
import { loadHf } from "./load-hf";
import { loadLlama2c } from "./load-llama2c";
import { createRunState } from "./run-state";
import { Llama2cTokenizer } from "./tokenizer";
import type { LlamaWeights } from "./weights";

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
