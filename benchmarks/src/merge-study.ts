// The merged single-file variant of the INT2.1 product in llama.cpp (interop issue): a Q2_K model with its LREC
// adapter, written (a) as two files — the Q2_K base + the adapter as an F16 LoRA GGUF (the reference) — or as
// one GGUF with the adapter folded in, the adapted projections stored (b) F16, (c) re-quantized to Q2_K,
// (d) in a higher k-quant (Q4_K, Q6_K) or Q8_0. Each file is read back with int21's GGUF readers and scored
// with `llama-perplexity`'s protocol on the same held-out text (int21's `evaluateLlamaCppChunks`, and
// llama.cpp's own `llama-perplexity` when /tmp/llama.cpp/build/bin has it, outside CI), with the max |Δlogit|
// against the adapted int21 model and each file's size in bits per weight.
//
// The model: stories260K (a real language model, so the perplexities mean something) widened exactly to
// k-quant shapes — dim 64 → 256, hidden 172 → 256, head 8 → 32, every added row and column zero, the norm
// weights halved and eps quartered (the RMS over 256 of a vector with 192 zeros is half its RMS over 64), wq
// doubled (1/√32 instead of 1/√8) and RoPE θ raised to 10000⁴ (so θ'^(-2i/32) = θ^(-2i/8)). The widened float
// model gives stories260K's logits; its rows are whole 256-weight blocks, so Q2_K holds every projection
// (the zero columns quantize to zero), which stories260K's own 64/172-wide rows cannot.
//
// Run: npm run bench:merge -w benchmarks          (80 LREC steps; ≈ 10 min on 2 idle cores)
//      INT21_BENCH_QUICK=1 npm run bench:merge -w benchmarks   (a smoke run: 5 steps, short text)
// Writes benchmarks/results/merge-study.json and merge-study.md.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setBackend } from "@int21/autograd";
import { resultsDir } from "@int21/bench-utils";
import { LoRAModel } from "@int21/lora";
import { runLrec, windowData } from "@int21/lrec";
import {
  type LlamaWeights,
  calibrationWindows,
  createRunState,
  evaluateLlamaCppChunks,
  forward,
  llamaModules,
  quantizeModel,
  setLlamaModules,
  widenExactly,
} from "@int21/model-llama";
import {
  Llama2cTokenizer,
  type MergeInto,
  exportModel,
  loadGguf,
  loadGgufLora,
  loadLlama2c,
} from "@int21/loaders";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";

const quick = process.env.INT21_BENCH_QUICK === "1";
const STEPS = Number(process.env.INT21_MERGE_STEPS ?? (quick ? 5 : 80));
const CTX = 128;
const LLAMA_BIN = "/tmp/llama.cpp/build/bin";

/** One variant of the study. */
interface Row {
  variant: string;
  files: number;
  /** What the adapted projections are stored as. */
  adapted: string;
  /** Bytes of the file(s) on disk. */
  bytes: number;
  /** Bits per weight of the layers' projections in the model file (+ the LoRA GGUF's tensors for (a)). */
  projectionBpw: number;
  /** int21's llama-perplexity-protocol perplexity of the files read back. */
  ppl: number;
  /** llama.cpp's llama-perplexity on the same files and text (absent without llama.cpp). */
  llamaCppPpl?: number;
  /** max |Δlogit| against the adapted int21 model on a held-out window. */
  maxAbsDlogit: number;
  /** Merged tensors whose rounding error is at least the correction folded in (exportModel's refusal). */
  lossyTensors?: number;
  /** exportModel refuses this merge without allowLossyMerge. */
  refused?: boolean;
}

const backend = await createWasmBackend({ threads: 1 });
setBackend(backend);
const tmp = mkdtempSync(join(tmpdir(), "int21-merge-study-"));
try {
  const small = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
  const teacher = widenExactly(small, { dim: 256, hiddenDim: 256, backend });
  const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512), small.config.vocabSize);
  const stories = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").split("<|endoftext|>");
  const probe = tok.encode(stories[960], { bos: true }).slice(0, 48);
  const logits = (m: LlamaWeights) =>
    forward(m, createRunState(m.config, { maxRows: probe.length }), probe, 0, "all").slice();
  const maxAbs = (a: Float32Array, b: Float32Array) => {
    let d = 0;
    for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
    return d;
  };
  const widened = maxAbs(logits(teacher), logits(small));
  if (widened > 1e-3) throw new Error(`the widened model is not stories260K: max |Δlogit| ${widened}`);

  // the INT2.1 product: Q2_K GPTQ, then LREC against the float teacher
  const calib = calibrationWindows(tok.encode(stories.slice(0, 200).join("\n")), 16, 256, tok.bosId);
  const student = quantizeModel(teacher, { format: "q2_k", method: "gptq", calib, backend }).weights;
  const train = tok.encode(stories.slice(0, 800).join("\n"), { bos: true });
  const lrec = await runLrec(teacher, student, windowData(train, { batch: 4, seq: 64, seed: 1 }), {
    steps: STEPS,
    r: 8,
    alpha: 16,
    lr: 2e-3,
    lambda: 64,
  });
  console.error(`LREC: ${lrec.steps} steps`);
  // held-out text (stories the run never saw), as `int21 eval --llama-cpp` reads it
  const text = stories.slice(quick ? 990 : 970, 1000).join("\n");
  const textFile = join(tmp, "eval.txt");
  writeFileSync(textFile, text);
  const tokens = tok.encode(text, { bos: true });
  const ppl = (m: LlamaWeights) =>
    evaluateLlamaCppChunks(m, tokens, { ctx: CTX, bosId: tok.bosId }).perplexity;
  const want = logits(student);
  const llamaCpp = !quick && existsSync(join(LLAMA_BIN, "llama-perplexity"));
  const llamaPpl = (model: string, lora?: string) => {
    if (!llamaCpp) return undefined;
    // llama-perplexity prints its estimate on stderr
    const run = spawnSync(
      join(LLAMA_BIN, "llama-perplexity"),
      ["-m", model, ...(lora ? ["--lora", lora] : []), "-f", textFile, "-c", String(CTX), "-t", "2"],
      { encoding: "utf8", env: { ...process.env, LD_LIBRARY_PATH: LLAMA_BIN } },
    );
    const out = `${run.stdout}${run.stderr}`;
    const m = /Final estimate: PPL = ([\d.]+)/.exec(out);
    return m ? Number(m[1]) : undefined;
  };
  const rows: Row[] = [];
  const common = { tokenizer: tok, ggufEmbeddingType: "F32" as const, ggufLoraType: "F16" as const };

  // (a) two files: the Q2_K base + the F16 LoRA GGUF
  const a = await exportModel(student, {
    to: "gguf",
    out: join(tmp, "a", "q2k.gguf"),
    lora: lrec.model,
    ...common,
  });
  const aBase = await loadGguf(a.files[0].path, { backend });
  const baseOnly = { ppl: ppl(aBase.weights), llama: llamaPpl(a.files[0].path) };
  const lm = new LoRAModel(llamaModules(aBase.weights));
  await loadGgufLora(a.files[1].path, lm, { name: "lrec" });
  setLlamaModules(aBase.weights, lm.modules);
  const loraBytes = statSync(a.files[1].path).size;
  const loraParams = [...lrec.model.adapters("lrec")].reduce(
    (n, [, ad]) => n + ad.loraA.length + ad.loraB.length,
    0,
  );
  const projParams = [...llamaModules(teacher)].reduce((n, [, l]) => n + l.outFeatures * l.inFeatures, 0);
  rows.push({
    variant: "(a) Q2_K base + F16 LoRA GGUF",
    files: 2,
    adapted: "Q2_K + LoRA (F16)",
    bytes: statSync(a.files[0].path).size + loraBytes,
    projectionBpw: a.gguf!.projectionBitsPerWeight + (16 * loraParams) / projParams,
    ppl: ppl(aBase.weights),
    ...(llamaCpp ? { llamaCppPpl: llamaPpl(a.files[0].path, a.files[1].path) } : {}),
    maxAbsDlogit: maxAbs(logits(aBase.weights), want),
  });

  // (b)–(d) one file, merged
  const merges: [string, MergeInto][] = [
    ["(b) merged, adapted projections F16", "f16"],
    ["(c) merged, re-quantized to Q2_K", "q2_k"],
    ["(d) merged into Q4_K", "q4_k"],
    ["(d) merged into Q6_K", "q6_k"],
    ["(d) merged into Q8_0", "q8_0"],
  ];
  for (const [variant, into] of merges) {
    const out = join(tmp, into, "merged.gguf");
    let refused = false;
    try {
      await exportModel(student, { to: "gguf", out, lora: lrec.model, merge: into, ...common });
    } catch (e) {
      if (!/would throw the adapters away/.test((e as Error).message)) throw e;
      refused = true;
    }
    const r = await exportModel(student, {
      to: "gguf",
      out,
      lora: lrec.model,
      merge: into,
      allowLossyMerge: true,
      ...common,
    });
    console.error(`${variant}: ${refused ? "refused, forced" : "written"}`);
    const g = await loadGguf(out, { backend });
    rows.push({
      variant,
      files: 1,
      adapted: into.toUpperCase(),
      bytes: statSync(out).size,
      projectionBpw: r.gguf!.projectionBitsPerWeight,
      ppl: ppl(g.weights),
      ...(llamaCpp ? { llamaCppPpl: llamaPpl(out) } : {}),
      maxAbsDlogit: maxAbs(logits(g.weights), want),
      lossyTensors: r.lossyMerges?.length ?? 0,
      refused,
    });
  }

  const result = {
    date: new Date().toISOString().slice(0, 10),
    model:
      "stories260K widened exactly to dim 256 / hidden 256 (rows of whole Q2_K blocks; see merge-study.ts), Q2_K GPTQ (16 × 256 calibration tokens), LREC r 8 on all 35 projections",
    lrecSteps: lrec.steps,
    evalTokens: tokens.length,
    ctx: CTX,
    widenedMaxAbsDlogit: widened,
    floatPpl: ppl(teacher),
    adaptedPpl: ppl(student),
    q2kBasePpl: baseOnly.ppl,
    ...(baseOnly.llama !== undefined ? { q2kBaseLlamaCppPpl: baseOnly.llama } : {}),
    llamaCpp: llamaCpp ? "llama.cpp February 2025 build, CPU" : "not run",
    rows,
  };
  const f = (x: number | undefined, d = 3) => (x === undefined ? "–" : x.toFixed(d));
  const md = [
    `# The merged single-file variant (${result.date}${quick ? ", quick run" : ""})`,
    "",
    `${result.model}; ${result.lrecSteps} LREC steps. Perplexity in llama-perplexity's protocol (\`-c ${CTX}\`, ${result.evalTokens} tokens of held-out TinyStories validation text): float ${f(result.floatPpl)}, Q2_K without the adapter ${f(result.q2kBasePpl)}, Q2_K + LREC in int21 ${f(result.adaptedPpl)}. Δlogit: max |Δ| against the adapted int21 model on a held-out 48-token window. bpw: bits per weight of the layers' projections (the widened model's zero rows included; (a) counts the LoRA GGUF's tensors over the same weights). llama.cpp: ${result.llamaCpp}.`,
    "",
    "| variant | files | bytes | projection bpw | PPL (int21) | PPL (llama.cpp) | max \\|Δlogit\\| | merged tensors blurred | exportModel |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows.map(
      (r) =>
        `| ${r.variant} | ${r.files} | ${r.bytes.toLocaleString("en-US")} | ${f(r.projectionBpw, 2)} | ${f(r.ppl)} | ${f(r.llamaCppPpl)} | ${r.maxAbsDlogit.toExponential(1)} | ${r.lossyTensors === undefined ? "–" : `${r.lossyTensors} of 35`} | ${r.lossyTensors === undefined ? "default" : r.refused ? "refused (`allowLossyMerge` forces)" : "written"} |`,
    ),
    "",
  ];
  console.log(md.join("\n"));
  mkdirSync(resultsDir(), { recursive: true });
  writeFileSync(join(resultsDir(), "merge-study.json"), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(resultsDir(), "merge-study.md"), `${md.join("\n")}\n`);
} finally {
  backend.dispose();
  rmSync(tmp, { recursive: true, force: true });
}
