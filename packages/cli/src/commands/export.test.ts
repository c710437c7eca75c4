import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { addLlamaLoRA, forward, createRunState } from "@int21/model-llama";
import {
  HfTokenizer,
  Llama2cTokenizer,
  loadGguf,
  loadHf,
  loadModel,
  loadLlama2c,
  readGgufLora,
  readSentencePieceTokenizer,
  saveLlamaAdapter,
} from "@int21/loaders";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli, removeTempDirs, tempDir } from "../testing";

const MODEL = sharedPath(SHARED.stories260K);
afterAll(removeTempDirs);

let adapter = "";
beforeAll(async () => {
  const w = loadLlama2c(MODEL);
  const lora = addLlamaLoRA(w, { targetModules: ["q_proj", "v_proj"], r: 2, seed: 5 });
  for (const [, a] of lora.adapters()) a.loraB.fill(0.01);
  adapter = join(tempDir(), "adapter");
  await saveLlamaAdapter(adapter, lora, w);
});

describe("int21 export", () => {
  it("gguf: base + LoRA GGUF + Modelfile, and the llama.cpp command to run them", async () => {
    const out = join(tempDir(), "m", "story.gguf");
    const r = await cli(["export", "gguf", MODEL, "-o", out, "--adapter", adapter, "--quiet"]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const lora = out.replace(/story\.gguf$/, "story.adapter.lora.gguf");
    expect(r.out).toContain(`wrote ${out} (llama.cpp GGUF)`);
    expect(r.out).toContain(`wrote ${lora} (llama.cpp LoRA GGUF "adapter")`);
    expect(r.out).toContain(`run it: llama-cli -m ${out} --lora ${lora}`);
    const g = await readGgufLora(lora);
    expect(g.modules.map((m) => m.module).sort()).toContain("model.layers.0.self_attn.q_proj");
    expect(readFileSync(out.replace(/story\.gguf$/, "Modelfile"), "utf8")).toContain(
      "ADAPTER ./story.adapter.lora.gguf",
    );
  }, 60_000);

  it("gguf --merge f16: one file with the adapted projections F16 and its bits per weight; a merge that erases the correction is refused naming the lossless alternatives", async () => {
    const out = join(tempDir(), "m", "merged.gguf");
    const args = ["export", "gguf", MODEL, "-o", out, "--adapter", adapter, "--type", "F32", "--quiet"];
    const r = await cli([...args, "--merge", "f16"]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("merged adapters: adapter");
    expect(r.out).toMatch(/GGUF tensors: \d+\.\d{3} bits per weight \(projections \d+\.\d{3}\)/);
    expect(existsSync(out.replace(/merged\.gguf$/, "merged.adapter.lora.gguf"))).toBe(false);
    const g = await loadGguf(out);
    const types = Object.fromEntries(g.tensors.map((t) => [t.name, t.type]));
    expect(types).toMatchObject({ "layers.0.wq": "F16", "layers.0.wv": "F16", "layers.0.wk": "F32" });
    const lossy = await cli([...args, "--merge", "q2_k"]);
    expect(lossy.code).toBe(1);
    expect(lossy.err).toMatch(
      /merging into q2_k would throw the adapters away.*two files: no merge\), or merge: "f16" \(--merge f16: one file/,
    );
    const hf = await cli(["export", "hf", MODEL, "-o", tempDir(), "--adapter", adapter, "--merge", "f16"]);
    expect(hf.code).toBe(2);
    expect(hf.err).toMatch(/--merge f16: the storage of merged projections applies to export gguf/);
  }, 60_000);

  it("hf --json: folder with config and weights, the adapter under adapters/, the llama2.c tokenizer converted", async () => {
    const out = tempDir();
    const r = await cli(["export", "hf", MODEL, "-o", out, "--adapter", adapter, "--json", "--quiet"]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.to).toBe("hf");
    expect(j.adapters).toEqual(["adapter"]);
    // the llama2.c tokenizer beside the model (tok512.bin) is converted into the folder's tokenizer files
    expect(j.notes).toEqual([]);
    expect(j.files.filter((f: { what: string }) => /converted from llama2\.c/.test(f.what))).toHaveLength(4);
    const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
    const hf = HfTokenizer.fromFile(join(out, "tokenizer.json"));
    const text = "Once upon a time, Lily saw a big dog.";
    expect(hf.encode(text, { special: true })).toEqual(tok.encode(text, { bos: true }));
    const sp = readSentencePieceTokenizer(join(out, "tokenizer.model"));
    expect(sp.encode(text, { bos: true })).toEqual(tok.encode(text, { bos: true }));
    expect(existsSync(join(out, "config.json"))).toBe(true);
    const cfg = JSON.parse(readFileSync(join(out, "adapters", "adapter", "adapter_config.json"), "utf8"));
    expect(cfg.base_model_name_or_path).toBe(out);
  }, 60_000);

  it("hf --gptq: an INT8 checkpoint as a GPTQ folder (+ converted tokenizer, PEFT adapter) that loads back to the same logits", async () => {
    const dir = tempDir();
    const ckpt = join(dir, "int8.safetensors");
    const q = await cli([
      "quantize",
      MODEL,
      "--format",
      "int8-g64-asym-f16",
      "--method",
      "rtn",
      "-o",
      ckpt,
      "--quiet",
    ]);
    expect(q.err).toBe("");
    const out = join(dir, "gptq");
    const r = await cli([
      "export",
      "hf",
      ckpt,
      "-o",
      out,
      "--gptq",
      "--adapter",
      adapter,
      "--tokenizer",
      sharedPath(SHARED.tok512),
      "--json",
      "--quiet",
    ]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.adapters).toEqual(["adapter"]);
    const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    expect(cfg.quantization_config).toMatchObject({
      quant_method: "gptq",
      bits: 8,
      group_size: 64,
      sym: false,
    });
    expect(existsSync(join(out, "tokenizer.json"))).toBe(true);
    expect(existsSync(join(out, "adapters", "adapter", "adapter_config.json"))).toBe(true);
    const a = (await loadModel(ckpt)).weights;
    const b = await loadHf(out);
    const ids = [1, 403, 407, 261, 378];
    const run = (w: typeof a) => forward(w, createRunState(w.config, { maxRows: 5 }), ids, 0, "all").slice();
    expect(run(b)).toEqual(run(a));
    const bad = await cli(["export", "hf", MODEL, "-o", join(dir, "f"), "--gptq", "--quiet"]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/layers\.0\.wq is a float projection/);
    const merge = await cli([
      "export",
      "hf",
      ckpt,
      "-o",
      join(dir, "m"),
      "--gptq",
      "--merge",
      "--adapter",
      adapter,
    ]);
    expect(merge.code).toBe(2);
    expect(merge.err).toMatch(/--merge with --gptq/);
  }, 120_000);

  it("peft without an adapter fails naming the problem; --merge with peft is a usage error; bad target is 2", async () => {
    const none = await cli(["export", "peft", MODEL, "-o", tempDir(), "--quiet"]);
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/no LoRA adapter/);
    const merge = await cli(["export", "peft", MODEL, "-o", tempDir(), "--merge", "--adapter", adapter]);
    expect(merge.code).toBe(2);
    expect(merge.err).toMatch(/--merge does not apply/);
    const bad = await cli(["export", "onnx", MODEL, "-o", tempDir()]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/gguf, hf, peft|Allowed choices/);
  }, 60_000);
});
