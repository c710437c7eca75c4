// The README's runnable example: npx tsx packages/lrec/bench/readme-example.ts
import { readFileSync } from "node:fs";
import { setBackend } from "@int21/autograd";
import { formatLrecProgress, runLrec, storyTokens, windowData } from "@int21/lrec";
import { evaluateNll, generate, quantizeModel } from "@int21/model-llama";
import { Llama2cTokenizer, loadLlama2c } from "@int21/loaders";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";

const backend = await createWasmBackend({ threads: 2 });
setBackend(backend); // autograd's matmuls (the adapter) on the fast backend too
const teacher = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
const text = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8");

// held-out: stories 0–19; LREC trains on random windows of stories 100–999
const held = storyTokens(text, tok, { from: 0, to: 20, ctx: 512 });
const train = storyTokens(text, tok, { from: 100, ctx: 1 << 30 }).flat();

const student = quantizeModel(teacher, { format: "int2-g32-asym-f16", method: "rtn", backend }).weights;
// NLL, perplexity and KL to the teacher per token, every token after each story's BOS
const before = evaluateNll(student, held, { teacher });
const res = await runLrec(teacher, student, windowData(train, { batch: 4, seq: 128, seed: 1 }), {
  steps: 100,
  r: 4,
  alpha: 16,
  init: "svd", // start from the truncated SVD of W − Ŵ
  lr: 1.5e-3,
  lambda: 120, // KL summed over positions + 120 · mean CE (the reference's INT2 setting)
  onProgress: (p) => {
    if (p.step % 25 === 0) console.log(formatLrecProgress(p));
  },
});
const after = evaluateNll(student, held, { teacher });
console.log(
  `float NLL ${before.teacherMeanNll.toFixed(3)} | INT2 ${before.meanNll.toFixed(3)} → INT2 + LREC ${after.meanNll.toFixed(3)}`,
);
console.log(
  `KL to float ${before.meanKl.toFixed(3)} → ${after.meanKl.toFixed(3)} nats/token, ${res.seconds.toFixed(0)} s`,
);
console.log(generate(student, tok, { temperature: 0, steps: 40 }).text);
backend.dispose();
