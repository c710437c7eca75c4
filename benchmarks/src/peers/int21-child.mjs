// The int21 side of `npm run bench:peers`, one task per fresh Node process (so RSS and CPU time are the
// task's own). Argument: a JSON task; prints `RESULT {json}`. Imports the built packages.
//   {task: "step", dir, fmt: "f32"|"int4"|"int2", seq, steps, threads}  LoRA r 8 on q,v, AdamW, checkpointing,
//                                                                        autograd's BufferPool (no forced GC)
//   {task: "decode", dir, fmt, tokens, threads}                          greedy decode, one token per forward
//   {task: "prefill", dir, fmt, tokens, threads}                         one prompt through the GEMM path
//   {task: "gemm", n, threads}                                           float32 [n×n]·[n×n]
// `dir` is a Hugging Face folder written by peers.ts (the same files PyTorch reads).
import { AdamW, BufferPool, backward, memory, setBackend, tidy } from "@int21/autograd";
import { loraParameters } from "@int21/lora";
import { addLlamaLoRA, createRunState, forward, llamaLoss } from "@int21/model-llama";
import { loadHf } from "@int21/loaders";
import { createWasmBackend, enableRelaxedSimd } from "@int21/quant-kernels/wasm";

const FORMATS = {
  f32: undefined,
  int4: "int4-g128-asym-f16",
  // INT4 decoded with int8 activations (llama.cpp's Q4_0 × Q8_0 precision; the backend's opt-in
  // `decodeActivations: "int8"`, relaxed SIMD only): decode rows only
  "int4-a8": "int4-g128-asym-f16",
  int2: "int2-g64-asym-f16",
};
// The token embedding (and so the tied classifier) of the decode/prefill tasks, packed as in the GGUF
// that llama.cpp reads for the same row: Q4_0 packs token_embd in Q4_0, llama-quantize's Q2_K keeps
// it in Q8_0.
const EMBEDDING = { int4: "int4-g128-asym-f16", "int4-a8": "int4-g128-asym-f16", int2: "int8-g64-asym-f16" };
// The EMEF steps (int4 / int2) pack the frozen token embedding and tied classifier in INT8 (g64), as
// the emef-memory benchmark does: EMEF trains LoRA adapters on a frozen, packed base, and the embedding
// is part of that base (a float one would be 98 MB of stories110M's ~600 MB peak, held twice: the JS
// table and the classifier's resident copy in wasm memory). INT8 keeps its error far below the
// projections' INT4 / INT2 one (llama.cpp's Q2_K keeps token_embd in Q8_0 too). The f32 step (the
// float LoRA row) keeps it float, as PyTorch + PEFT does.
const STEP_EMBEDDING = { int4: "int8-g64-asym-f16", int2: "int8-g64-asym-f16" };

const task = JSON.parse(process.argv[2]);
// As the CLI does: relaxed SIMD (the GEMM's fused multiply-adds) on where the engine has it, Node 20's
// behind a flag included, so these rows measure what `int21` runs.
enableRelaxedSimd();
const backend = await createWasmBackend({
  threads: task.threads ?? 1,
  ...(task.fmt === "int4-a8" ? { decodeActivations: "int8" } : {}),
});
setBackend(backend);

function cpuMs() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** The folder's model; packed formats are RTN-quantized while loading (speed does not depend on the method). */
async function model() {
  const format = FORMATS[task.fmt];
  if (task.fmt !== "f32" && format === undefined) throw new Error(`int21-child: unknown fmt ${task.fmt}`);
  const embedding =
    task.task === "decode" || task.task === "prefill" ? EMBEDDING[task.fmt] : STEP_EMBEDDING[task.fmt];
  return loadHf(task.dir, {
    backend,
    ...(format ? { quantize: { format, ...(embedding ? { embedding } : {}) } } : {}),
  });
}

/** Deterministic token ids in [1, vocab). */
function ids(n, vocab, salt = 0) {
  const out = new Int32Array(n);
  for (let t = 0; t < n; t++) out[t] = 1 + ((Math.imul(t + 1 + salt, 2654435761) >>> 0) % (vocab - 1));
  return out;
}

const result = { ...task, relaxedSimd: backend.relaxedSimd };
if (task.task === "gemm") {
  const n = task.n;
  const a = new Float32Array(n * n).map((_, i) => Math.sin(i));
  const b = new Float32Array(n * n).map((_, i) => Math.cos(i));
  const c = new Float32Array(n * n);
  const run = () => backend.sgemm({ M: n, N: n, K: n, A: a, B: b, C: c });
  run();
  const times = [];
  for (let i = 0; i < (task.reps ?? 5); i++) {
    const t0 = performance.now();
    run();
    times.push(performance.now() - t0);
  }
  times.sort((x, y) => x - y);
  result.ms = times[Math.floor(times.length / 2)];
  result.gflops = (2 * n ** 3) / (result.ms * 1e6);
} else {
  const w = await model();
  const V = w.config.vocabSize;
  if (task.task === "step") {
    const lora = addLlamaLoRA(w, { targetModules: ["q_proj", "v_proj"], r: 8, alpha: 16, seed: 1 });
    const opt = new AdamW(loraParameters(lora), { lr: 1e-4 });
    const T = task.seq;
    const seqIds = ids(T + 1, V);
    const input = seqIds.subarray(0, T);
    const target = seqIds.subarray(1);
    const loss = llamaLoss(w, { checkpoint: true });
    // activations, gradients and op scratch reuse the previous step's buffers (sized by the first step)
    // instead of waiting for the collector; nothing here forces a GC
    const pool = new BufferPool();
    const wall = [];
    const cpu = [];
    let value = Number.NaN;
    for (let s = 0; s < task.steps + 1; s++) {
      const t0 = performance.now();
      const c0 = cpuMs();
      value = pool.run(() => {
        opt.zeroGrad();
        const v = tidy(() => {
          const l = loss(
            { batch: 1, seqLen: T, input, target, tokens: T, inputTokens: T },
            { training: true },
          );
          backward(l);
          return l.item();
        });
        opt.step();
        return v;
      });
      if (s > 0) {
        // the first step warms up (JIT, resident copies); torch's side skips its first step too
        wall.push(performance.now() - t0);
        cpu.push(cpuMs() - c0);
      }
    }
    wall.sort((x, y) => x - y);
    cpu.sort((x, y) => x - y);
    result.stepMs = wall[Math.floor(wall.length / 2)];
    result.stepCpuMs = cpu[Math.floor(cpu.length / 2)];
    result.loss = value;
    // the ledger: peak tensor bytes (activations, gradients, optimizer state, the float parameters) and
    // the bytes the pool keeps for the next step
    result.ledgerPeakBytes = memory().peakBytes;
    result.pooledBytes = memory().pooledBytes;
  } else if (task.task === "decode" || task.task === "prefill") {
    const n = task.tokens;
    // prefill: the whole prompt in one chunk (llama.cpp's batch is 512)
    const maxRows = task.task === "prefill" ? Math.min(n, 512) : 1;
    const state = createRunState(w.config, { maxRows, ctx: Math.min(n + 1, w.config.seqLen) });
    const prompt = ids(n, V, 7);
    // warm-up (llama-bench runs one too): resident weights, JIT
    forward(w, state, Array.from(prompt.subarray(0, Math.min(n, 8))), 0, "last");
    const t0 = performance.now();
    const c0 = cpuMs();
    if (task.task === "prefill") {
      forward(w, state, Array.from(prompt), 0, "last");
    } else {
      let tok = 1;
      for (let p = 0; p < n; p++) {
        const logits = forward(w, state, [tok], p, "last");
        let best = 0;
        for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
        tok = best;
      }
    }
    const ms = performance.now() - t0;
    result.ms = ms;
    result.cpuMs = cpuMs() - c0;
    result.tokensPerSec = (n * 1000) / ms;
  } else throw new Error(`int21-child: unknown task ${task.task}`);
}
result.peakRssBytes = process.resourceUsage().maxRSS * 1024;
backend.dispose();
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
