// One LoRA (EMEF) training step and one decoded token on the stories15M shape (synthetic INT4 weights),
// through the WebGPU synchronous backend and through the wasm backend, in the same run: wall time and
// process CPU time (every thread: the kernel workers, Dawn and Mesa's llvmpipe included). WebGPU runs twice:
// as it is (optimizer on the device, attention / norms / cross-entropy in the fallback's wasm kernels) and
// with only the matrix products on the device (everything else in plain JavaScript).
//   npx tsx packages/cli/bench/webgpu-route.bench.ts        (from the repo root; needs built packages)
import { AdamW, backward, setBackend, tidy } from "@int21/autograd";
import { createWebGpuSyncBackend } from "@int21/gpu";
import { collate, loraParameters } from "@int21/lora";
import {
  addLlamaLoRA,
  createRunState,
  forward,
  llamaLoss,
  syntheticConfig,
  syntheticWeights,
} from "@int21/model-llama";
import type { Backend } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";

const FORMAT = "int4-g64-asym-f16";
const SEQ = 64;
const STEPS = 3;
const TOKENS = 8;

interface Timing {
  wallMs: number;
  cpuMs: number;
}

function timed(fn: () => void): Timing {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  fn();
  const wallMs = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { wallMs, cpuMs: (c.user + c.system) / 1000 };
}

const median = (xs: Timing[]): Timing => {
  const m = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  return { wallMs: m(xs.map((x) => x.wallMs)), cpuMs: m(xs.map((x) => x.cpuMs)) };
};

function measure(backend: Backend): { step: Timing; token: Timing } {
  const previous = setBackend(backend);
  try {
    const config = syntheticConfig("stories15M");
    // LoRA step: every projection, rank 8, one sequence of SEQ tokens, AdamW.
    const w = syntheticWeights(config, { seed: 1, format: FORMAT, backend });
    const model = addLlamaLoRA(w, {
      targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
      r: 8,
      alpha: 16,
      seed: 2,
    });
    const params = loraParameters(model);
    const opt = new AdamW(params, { lr: 1e-3 });
    const loss = llamaLoss(w);
    const ids = Int32Array.from({ length: SEQ + 1 }, (_, i) => (i * 7919 + 13) % config.vocabSize);
    const batch = collate([{ input: ids.subarray(0, SEQ), target: ids.subarray(1) }]);
    const step = () => {
      tidy(() => backward(loss(batch, { training: true })));
      opt.step();
      opt.zeroGrad();
    };
    step(); // warm-up: pipelines, resident layers
    const steps: Timing[] = [];
    for (let s = 0; s < STEPS; s++) steps.push(timed(step));
    // Decode: the base model alone, one token at a time after an 8-token prefill.
    const d = syntheticWeights(config, { seed: 1, format: FORMAT, backend });
    const state = createRunState(config, { ctx: 64 });
    let logits = forward(d, state, Array.from(ids.subarray(0, 8)), 0, "last");
    const tokens: Timing[] = [];
    for (let i = 0; i < TOKENS + 1; i++) {
      const next = logits.indexOf(Math.max(...logits));
      const t = timed(() => {
        logits = forward(d, state, [next], 8 + i, "last");
      });
      if (i > 0) tokens.push(t); // the first decode call compiles the matvec pipelines
    }
    return { step: median(steps), token: median(tokens) };
  } finally {
    setBackend(previous);
  }
}

const fmt = (t: Timing) =>
  `${t.wallMs.toFixed(0).padStart(7)} ms wall ${t.cpuMs.toFixed(0).padStart(7)} ms CPU`;
const wasm = await createWasmBackend();
const gpu = await createWebGpuSyncBackend({ fallback: wasm });
console.log(
  `stories15M shape (synthetic ${FORMAT}), LoRA r8 on every projection, ${SEQ} tokens; decode after 8 tokens`,
);
console.log(`device: ${gpu.context ? `${gpu.context.source}: ${gpu.context.adapter}` : gpu.fallbackReason}`);
// The same device without the optimizer kernel and without the fallback's wasm training / attention kernels
// (a copy of the backend object: those kernels are registered per object), as the route ran before them.
const gpuPlain: Backend = { ...gpu, name: "webgpu-plain", adamw: undefined };
for (const [name, b] of [
  ["wasm", wasm],
  ["webgpu", gpu],
  ["webgpu (matmuls only)", gpuPlain],
  ["wasm", wasm],
] as const) {
  const r = measure(b);
  console.log(`${name.padEnd(22)} LoRA step ${fmt(r.step)} | one decoded token ${fmt(r.token)}`);
}
console.log("webgpu calls", JSON.stringify(gpu.stats()));
gpu.dispose();
wasm.dispose();
