// The INT2.1 product for llama.cpp / Ollama: stories260K quantized to 2 bits (GPTQ), repaired by LREC, then
// exported as a GGUF base + the LREC adapter as a llama.cpp LoRA GGUF + an Ollama Modelfile. The files are read
// back with int21's own GGUF readers and must give the adapted student's logits; the command that runs them in
// llama.cpp is printed (this example needs no llama.cpp itself).
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LoRAModel } from "@int21/lora";
import { runLrec, windowData } from "@int21/lrec";
import {
  Llama2cTokenizer,
  calibrationWindows,
  createRunState,
  exportModel,
  forward,
  generate,
  type LlamaWeights,
  llamaModules,
  loadGguf,
  loadGgufLora,
  loadLlama2c,
  quantizeModel,
  setLlamaModules,
} from "@int21/model-llama";
import { createWasmBackend } from "@int21/quant-kernels";
import { SHARED, sharedPath } from "@int21/shared-data";

const quick = process.env.INT21_EXAMPLE_QUICK === "1";
const out = process.env.OUT ?? mkdtempSync(join(tmpdir(), "int21-int2-gguf-"));
const backend = await createWasmBackend({ threads: 1 });
try {
  const teacher = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
  const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512), teacher.config.vocabSize);
  const stories = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").split("<|endoftext|>");

  // 1. INT2 GPTQ (group 64, 2.5 bits per weight), 2. LREC adapters trained against the float teacher
  const calib = calibrationWindows(tok.encode(stories.slice(0, 200).join("\n")), 16, 256, tok.bosId);
  const student = quantizeModel(teacher, {
    format: "int2-g64-asym-f16",
    method: "gptq",
    calib,
    backend,
  }).weights;
  const train = tok.encode(stories.slice(0, 800).join("\n"), { bos: true });
  const lrec = await runLrec(teacher, student, windowData(train, { batch: 4, seq: 64, seed: 1 }), {
    steps: quick ? 10 : 150,
    r: 8,
    alpha: 16,
    lr: 2e-3,
    lambda: 64,
  });
  console.log(`LREC: ${lrec.steps} steps, r 8 on all 35 projections`);

  // 3. the artifacts llama.cpp and Ollama run
  const report = await exportModel(student, {
    to: "gguf",
    out: join(out, "stories260K-int2-lrec.gguf"),
    lora: lrec.model,
    tokenizer: tok,
    // F32: the model is 1 MB, and the llama.cpp build these files were checked with mis-runs this model in F16
    // (its own llama-quantize F16 output too); for a real model keep the F16 default
    ggufType: "F32",
    ggufEmbeddingType: "F32",
    ggufLoraType: "F32",
  });
  for (const f of report.files) console.log(`wrote ${f.path.replace(out, "<out>")} (${f.what})`);
  console.log(`run it: ${report.llamaCppCommand?.replaceAll(out, "<out>")}`);
  console.log("or with Ollama: ollama create stories-int2 -f <out>/Modelfile && ollama run stories-int2");

  // 4. read back as llama.cpp would: the base, then the LoRA GGUF on top
  const prompt = tok.encode("Once upon a time", { bos: true });
  const logits = (w: LlamaWeights) =>
    forward(w, createRunState(w.config, { maxRows: prompt.length }), prompt, 0, "all").slice();
  const want = logits(student);
  const g = await loadGguf(report.files[0].path, { backend });
  const model = new LoRAModel(llamaModules(g.weights));
  await loadGgufLora(report.files[1].path, model, { name: "lrec" });
  setLlamaModules(g.weights, model.modules);
  const got = logits(g.weights);
  let diff = 0;
  for (let i = 0; i < want.length; i++) diff = Math.max(diff, Math.abs(got[i] - want[i]));
  console.log(`GGUF base + LoRA GGUF vs the int21 student: max |Δlogit| ${diff.toExponential(2)}`);
  console.log(
    `greedy: ${generate(g.weights, tok, { prompt: "Once upon a time", temperature: 0, steps: 40 }).text}`,
  );
  const ok = diff < 1e-3;
  console.log(
    ok ? "ok: the exported files reproduce the INT2 + LREC model" : "FAIL: the export does not reproduce it",
  );
  if (!ok) process.exitCode = 1;
} finally {
  backend.dispose();
}
