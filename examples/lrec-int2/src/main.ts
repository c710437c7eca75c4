// INT2.1's second half: quantize stories260K to 2 bits (GPTQ), then train LREC adapters so the packed
// student matches the float teacher again. Prints held-out KL and perplexity before and after.
import { readFileSync } from "node:fs";
import { formatLrecProgress, runLrec, storyTokens, windowData } from "@int21/lrec";
import { calibrationWindows, evaluateNll, generate, quantizeModel } from "@int21/model-llama";
import { Llama2cTokenizer, loadLlama2c } from "@int21/loaders";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";

const quick = process.env.INT21_EXAMPLE_QUICK === "1";
const steps = quick ? 10 : 200;
const backend = await createWasmBackend({ threads: 1 });
try {
  const teacher = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
  const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512), teacher.config.vocabSize);
  const text = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8");
  const stories = text.split("<|endoftext|>");
  const nStories = stories.length;

  // student: INT2 GPTQ (group 64, f16 scales and zeros: 2.5 bits per weight)
  const calib = calibrationWindows(tok.encode(stories.slice(0, 200).join("\n")), 16, 256, tok.bosId);
  const student = quantizeModel(teacher, {
    format: "int2-g64-asym-f16",
    method: "gptq",
    calib,
    backend,
  }).weights;

  // held-out stories for evaluation: the last ones; LREC trains on windows of the others
  const held = storyTokens(text, tok, { from: nStories - (quick ? 10 : 60), to: nStories, ctx: 256 });
  const ref = evaluateNll(teacher, held);
  const before = evaluateNll(student, held, { teacher });
  const train = tok.encode(stories.slice(0, nStories - 100).join("\n"), { bos: true });

  const t0 = performance.now();
  const res = await runLrec(teacher, student, windowData(train, { batch: 4, seq: 64, seed: 1 }), {
    steps,
    r: 8,
    alpha: 16,
    lr: 2e-3,
    lambda: 64,
    onProgress: (p) => {
      if (p.step % Math.max(1, Math.floor(steps / 5)) === 0) console.log(formatLrecProgress(p));
    },
  });
  const after = evaluateNll(student, held, { teacher });
  console.log(
    `\nLREC: ${res.steps} steps, r 8 on all 35 projections (${res.model.parameterCount("lrec")} parameters), ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  console.log(`held-out (${ref.tokens} tokens)   KL to teacher   perplexity`);
  console.log(`float32 teacher                 0.0000   ${Math.exp(ref.meanNll).toFixed(3)}`);
  console.log(
    `INT2 GPTQ                       ${before.meanKl.toFixed(4)}   ${before.perplexity.toFixed(3)}`,
  );
  console.log(`INT2 GPTQ + LREC                ${after.meanKl.toFixed(4)}   ${after.perplexity.toFixed(3)}`);
  console.log(
    `\nINT2 + LREC greedy: ${generate(student, tok, { prompt: "Once upon a time", temperature: 0, steps: 60 }).text}`,
  );

  const ok = after.meanKl < before.meanKl * 0.8 && after.perplexity < before.perplexity;
  console.log(
    ok ? "ok: LREC recovered part of the INT2 damage" : "FAIL: LREC did not lower the KL to the teacher",
  );
  if (!ok) process.exitCode = 1;
} finally {
  backend.dispose();
}
