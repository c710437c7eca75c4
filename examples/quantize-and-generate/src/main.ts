// Quantize stories260K to INT4 with GPTQ, save it as an int21 checkpoint, reload it, and compare its
// perplexity and greedy text with the float model's.
import { readFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { calibrationWindows, evaluateStories, generate, quantizeModel } from "@int21/model-llama";
import { Llama2cTokenizer, loadLlama2c, loadModel, saveInt21Checkpoint } from "@int21/loaders";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";

const quick = process.env.INT21_EXAMPLE_QUICK === "1";
const backend = await createWasmBackend({ threads: 1 });
const dir = mkdtempSync(join(tmpdir(), "int21-example-"));
try {
  const float = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
  const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512), float.config.vocabSize);
  const stories = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").split("<|endoftext|>");
  // calibrate on the first 200 stories, evaluate on the last ones
  const calib = calibrationWindows(
    tok.encode(stories.slice(0, 200).join("\n")),
    quick ? 8 : 32,
    256,
    tok.bosId,
  );
  const evalText = stories.slice(quick ? -20 : -100).join("<|endoftext|>");

  const t0 = performance.now();
  const { weights: int4, report } = quantizeModel(float, {
    format: "int4-g64-asym-f16",
    method: "gptq",
    calib,
    backend,
  });
  const secs = (performance.now() - t0) / 1000;
  const meanErr = report.reduce((a, r) => a + (r.relError ?? 0), 0) / report.length;
  const meanRtn = report.reduce((a, r) => a + (r.rtnRelError ?? 0), 0) / report.length;
  console.log(
    `GPTQ INT4 of ${report.length} projections in ${secs.toFixed(1)} s: mean relative output error ${meanErr.toFixed(4)} (RTN ${meanRtn.toFixed(4)})`,
  );

  const file = join(dir, "stories260K-int4.safetensors");
  await saveInt21Checkpoint(file, int4);
  const reloaded = await loadModel(file, { backend });
  console.log(
    `saved ${file.replace(dir, "<tmp>")}: ${statSync(file).size} bytes (float32 .bin: ${statSync(sharedPath(SHARED.stories260K)).size}); reloaded as "${reloaded.kind}"`,
  );

  const ppl = (w: typeof float) => evaluateStories(w, tok, evalText, { ctx: 256 }).perplexity;
  const pFloat = ppl(float);
  const pInt4 = ppl(reloaded.weights);
  console.log(`perplexity on held-out stories: float32 ${pFloat.toFixed(3)}, INT4 GPTQ ${pInt4.toFixed(3)}`);

  const steps = quick ? 40 : 100;
  const gFloat = generate(float, tok, { prompt: "Once upon a time", temperature: 0, steps }).text;
  const gInt4 = generate(reloaded.weights, tok, { prompt: "Once upon a time", temperature: 0, steps }).text;
  console.log(`\nfloat32 greedy:\n${gFloat}\n\nINT4 greedy:\n${gInt4}\n`);

  // checks: INT4 stays within 10% of the float perplexity (a 64-wide model is sensitive), and greedy text agrees on its first sentence
  const firstSentence = (s: string) => s.split(/(?<=[.!?])\s/)[0];
  const ok = pInt4 < pFloat * 1.1 && firstSentence(gInt4) === firstSentence(gFloat);
  console.log(
    ok ? "ok: INT4 GPTQ matches the float model closely" : "FAIL: INT4 drifted from the float model",
  );
  if (!ok) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
  backend.dispose();
}
