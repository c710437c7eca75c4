// Child process of the packed-GGUF memory test and benchmark: loads a GGUF as the CLI does (`loadModel`: block
// types kept packed), runs a few greedy tokens, and prints JSON with the peak resident set size, measured in
// a fresh process so nothing else counts. Usage: node --import tsx gguf-rss-child.ts <file.gguf> <tokens>
import { statSync } from "node:fs";
import { loadModel } from "../model-files";
import { forward, createRunState } from "@int21/model-llama";

const [path, steps = "3"] = process.argv.slice(2);
const before = process.memoryUsage().rss;
const t0 = performance.now();
const { weights } = await loadModel(path);
const loadMs = performance.now() - t0;
const state = createRunState(weights.config, { maxRows: 1, ctx: 16 });
const ids = [1];
const t1 = performance.now();
for (let p = 0; p < Number(steps); p++) {
  const logits = forward(weights, state, [ids[p]], p, "last");
  let best = 0;
  for (let v = 1; v < weights.config.vocabSize; v++) if (logits[v] > logits[best]) best = v;
  if (!Number.isFinite(logits[best])) throw new Error(`non-finite logits at step ${p}`);
  ids.push(best);
}
const genMs = performance.now() - t1;
const maxRss = process.resourceUsage().maxRSS * 1024;
process.stdout.write(
  `${JSON.stringify({
    fileBytes: statSync(path).size,
    baselineRss: before,
    maxRss,
    ids,
    loadMs,
    genMs,
  })}\n`,
);
