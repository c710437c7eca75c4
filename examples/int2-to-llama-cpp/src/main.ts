// The INT2.1 product for llama.cpp / Ollama: a model quantized to 2 bits (GPTQ), repaired by LREC, then
// exported as a GGUF base + the LREC adapter as a llama.cpp LoRA GGUF + an Ollama Modelfile. The files are read
// back with int21's own GGUF readers and must give the adapted student's logits; the command that runs them in
// llama.cpp is printed (this example needs no llama.cpp itself).
//  1. stories260K in int21's INT2 format (g64): its 64/172-wide rows fit no k-quant block, and int21's INT2 has
//     no ggml type, so the GGUF base is float (F32);
//  2. a real Q2_K GGUF: stories260K widened exactly to 256-wide rows (./widen.ts), GPTQ into Q2_K (what
//     `int21 quantize --format q2_k --method gptq` runs), LREC, then a Q2_K GGUF (ggml's blocks verbatim) + an
//     F16 LoRA GGUF + a Modelfile; and the one-file alternative (`--merge f16`) with its size.
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LoRAModel } from "@int21/lora";
import { runLrec, windowData } from "@int21/lrec";
import {
  calibrationWindows,
  createRunState,
  forward,
  generate,
  type LlamaWeights,
  llamaModules,
  quantizeModel,
  setLlamaModules,
  widenExactly,
} from "@int21/model-llama";
import {
  Llama2cTokenizer,
  type ExportModelReport,
  exportModel,
  loadGguf,
  loadGgufLora,
  loadLlama2c,
} from "@int21/loaders";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
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
  console.log(`1. stories260K, INT2 g64 (no ggml type: the GGUF base is F32)`);
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
  const readBack = async (report: ExportModelReport, want: Float32Array) => {
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
    return { diff, types: g.tensors };
  };
  const one = await readBack(report, logits(student));

  // 5. a real Q2_K GGUF: the same model widened to rows of whole 256-weight blocks
  const wide = widenExactly(teacher, { dim: 256, hiddenDim: 256, backend });
  const q2k = quantizeModel(wide, { format: "q2_k", method: "gptq", calib, backend }).weights;
  const lrec2 = await runLrec(wide, q2k, windowData(train, { batch: 4, seq: 64, seed: 1 }), {
    steps: quick ? 10 : 150,
    r: 8,
    alpha: 16,
    lr: 2e-3,
    lambda: 64,
  });
  console.log("2. stories260K widened to 256-wide rows, Q2_K (GPTQ)");
  console.log(`LREC: ${lrec2.steps} steps, r 8 on all 35 projections`);
  const out2 = join(out, "q2k");
  const report2 = await exportModel(q2k, {
    to: "gguf",
    out: join(out2, "stories260K-wide-q2k-lrec.gguf"),
    lora: lrec2.model,
    tokenizer: tok,
    // the embedding F32 like the student's (the tied classifier reads it); projections stay Q2_K blocks
    ggufEmbeddingType: "F32",
  });
  for (const f of report2.files) console.log(`wrote ${f.path.replace(out, "<out>")} (${f.what})`);
  console.log(
    `Q2_K GGUF: projections ${report2.gguf!.projectionBitsPerWeight.toFixed(3)} bits per weight; LoRA GGUF ${statSync(report2.files[1].path).size.toLocaleString("en-US")} bytes`,
  );
  console.log(`run it: ${report2.llamaCppCommand?.replaceAll(out, "<out>")}`);
  console.log("or with Ollama: ollama create stories-q2k -f <out>/q2k/Modelfile && ollama run stories-q2k");
  const two = await readBack(report2, logits(q2k));
  const q2kTensors = two.types.filter((t) => /^layers\.\d+\.w/.test(t.name));
  const allQ2K = q2kTensors.length === 35 && q2kTensors.every((t) => t.type === "Q2_K");
  console.log(`projections in the GGUF: ${allQ2K ? "35 of 35 Q2_K" : "NOT all Q2_K"}`);

  // 6. one file instead: merged in F16 (lossless, but 16-bit projections), or refused in Q2_K
  const merged = await exportModel(q2k, {
    to: "gguf",
    out: join(out, "merged", "stories260K-wide-merged-f16.gguf"),
    lora: lrec2.model,
    tokenizer: tok,
    ggufEmbeddingType: "F32",
    merge: "f16",
  });
  console.log(
    `one file, --merge f16: projections ${merged.gguf!.projectionBitsPerWeight.toFixed(3)} bits per weight (every projection carries the adapter)`,
  );
  try {
    await exportModel(q2k, {
      to: "gguf",
      out: join(out, "merged", "q2k.gguf"),
      lora: lrec2.model,
      merge: "q2_k",
    });
    console.log("--merge q2_k: written");
  } catch (e) {
    console.log(
      `--merge q2_k: refused (${/in \d+ of \d+ merged tensors/.exec((e as Error).message)?.[0]} the Q2_K rounding is at least the correction)`,
    );
  }

  const ok = one.diff < 1e-3 && two.diff < 1e-2 && allQ2K;
  console.log(
    ok
      ? "ok: the exported files reproduce the INT2 + LREC models"
      : "FAIL: the export does not reproduce them",
  );
  if (!ok) process.exitCode = 1;
} finally {
  backend.dispose();
}
