// The GPU route end to end: a LoRA step on a float base, EMEF steps on INT4 and INT2 bases (forward,
// backward, optimizer: the AdamW update runs on the device too) and greedy generation of stories260K run
// through @int21/gpu's synchronous WebGPU backend, and give what the CPU backends give. Lives here because
// @int21/gpu sits below lora and model-llama. Skips (and says why) where no WebGPU device can be made.
import { AdamW, backward, setBackend, tidy } from "@int21/autograd";
import { createWebGpuSyncBackend, type WebGpuSyncBackend } from "@int21/gpu";
import { collate, type Example, loraParameters } from "@int21/lora";
import { addLlamaLoRA, generate, llamaLoss } from "@int21/model-llama";
import { Llama2cTokenizer, loadLlama2c } from "@int21/loaders";
import { type Backend, decodeKernels, trainKernels } from "@int21/quant-kernels";
import { createWasmBackend, type WasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";
import { readFileSync } from "node:fs";
import { afterAll, describe, expect, it, vi } from "vitest";
import { cli } from "./testing";

const gpu: WebGpuSyncBackend = await createWebGpuSyncBackend({ warn: () => {} });
const missing = gpu.fallbackReason;
if (missing) console.warn(`[@int21/cli] skipping WebGPU route tests: ${missing}`);
else console.info(`[@int21/cli] WebGPU route tests on ${gpu.context?.source}: ${gpu.context?.adapter}`);

const TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/** Two windows of 48 tokens of TinyStories (next-token targets). */
function examples(): Example[] {
  const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512), 512);
  const text = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").slice(0, 4000);
  const ids = tok.encode(text, { bos: true });
  const T = 48;
  return [0, 1].map((i) => ({
    input: Int32Array.from(ids.slice(i * T, i * T + T)),
    target: Int32Array.from(ids.slice(i * T + 1, i * T + T + 1)),
  }));
}

interface StepResult {
  losses: number[];
  /** Gradients of every LoRA tensor at the last step (B is zero at the first, so A's gradient is too). */
  grads: Float32Array[];
  /** The adapter after the optimizer's last step. */
  params: Float32Array[];
}

/** Loads stories260K (quantized with `format`, or float), adds LoRA on every projection, takes 2 AdamW steps. */
function loraSteps(backend: Backend, format: string | null): StepResult {
  const previous = setBackend(backend);
  try {
    const w = loadLlama2c(sharedPath(SHARED.stories260K), {
      backend,
      ...(format ? { quantize: { format } } : {}),
    });
    const model = addLlamaLoRA(w, { targetModules: TARGETS, r: 4, alpha: 8, seed: 3 });
    const params = loraParameters(model);
    const opt = new AdamW(params, { lr: 1e-2 });
    const loss = llamaLoss(w);
    const batch = collate(examples());
    const losses: number[] = [];
    let grads: Float32Array[] = [];
    for (let s = 0; s < 2; s++) {
      tidy(() => {
        const l = loss(batch, { training: true });
        losses.push(l.item());
        backward(l);
      });
      grads = params.map((p) => (p.grad as { data: Float32Array }).data.slice());
      opt.step();
      opt.zeroGrad();
    }
    return { losses, grads, params: params.map((p) => p.data.slice()) };
  } finally {
    setBackend(previous);
  }
}

/** max |a − b| / max(max |b|, floor), over every tensor. */
function relErr(a: Float32Array[], b: Float32Array[]): number {
  let diff = 0;
  let mag = 0;
  a.forEach((t, i) => {
    for (let j = 0; j < t.length; j++) {
      diff = Math.max(diff, Math.abs(t[j] - b[i][j]));
      mag = Math.max(mag, Math.abs(b[i][j]));
    }
  });
  return diff / Math.max(mag, 1e-6);
}

describe.skipIf(missing !== null)("the WebGPU route (stories260K)", () => {
  let wasm: WasmBackend | null = null;
  const cpu = async () => {
    wasm ??= await createWasmBackend({ threads: 1 });
    return wasm;
  };
  afterAll(() => {
    gpu.dispose();
    wasm?.dispose();
  });

  for (const format of [null, "int4-g32-asym-f16", "int2-g64-asym-f16"]) {
    const what = format ? `an EMEF step on ${format}` : "a LoRA step on the float model";
    it(`${what}: the same loss, gradients and update as the wasm backend`, async () => {
      const want = loraSteps(await cpu(), format);
      // the fallback's wasm training kernels serve the device backend: attention, cross-entropy,
      // RMSNorm, RoPE and SwiGLU run in wasm, the matrix products on the device
      const kernels = trainKernels(gpu);
      expect(kernels).toBeDefined();
      expect(kernels).toBe(trainKernels(gpu.fallback));
      const names = [
        "attentionForward",
        "attentionBackward",
        "crossEntropyRows",
        "rmsNorm",
        "rope",
        "swiglu",
      ] as const;
      const spies = names.map((k) => vi.spyOn(kernels as NonNullable<typeof kernels>, k));
      const before = gpu.stats();
      let got: StepResult;
      try {
        got = loraSteps(gpu, format);
        for (const [i, spy] of spies.entries()) expect(spy, names[i]).toHaveBeenCalled();
      } finally {
        for (const spy of spies) spy.mockRestore();
      }
      const after = gpu.stats();
      // the forward and backward matrix products ran on the device
      expect(after.gpu.sgemm).toBeGreaterThan(before.gpu.sgemm);
      // and so did the optimizer: one AdamW update per LoRA tensor and step, none on the CPU
      expect(after.gpu.adamw - before.gpu.adamw).toBe(2 * got.grads.length);
      expect(after.cpu.adamw).toBe(before.cpu.adamw);
      if (format) {
        expect(after.gpu.qmatmul).toBeGreaterThan(before.gpu.qmatmul);
        expect(after.gpu.qmatmulT).toBeGreaterThan(before.gpu.qmatmulT);
        expect(after.cpu.qmatmul).toBe(before.cpu.qmatmul);
      }
      for (let s = 0; s < 2; s++) expect(Math.abs(got.losses[s] - want.losses[s])).toBeLessThan(1e-4);
      expect(got.losses[1]).not.toBe(got.losses[0]);
      expect(got.grads.some((g) => g.some((v) => v !== 0))).toBe(true);
      expect(relErr(got.grads, want.grads)).toBeLessThan(2e-3);
      expect(relErr(got.params, want.params)).toBeLessThan(2e-3);
    }, 300_000);
  }

  it("greedy generation gives the same ids as the CPU backend", async () => {
    // wasm without shared memory: its decode path is the float qmatvec, like the device's (the
    // shared-memory wasm decode rounds activations to int16, a different computation).
    const plain = await createWasmBackend({ threads: 1, sharedMemory: false });
    try {
      const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512), 512);
      const run = (backend: Backend) => {
        const previous = setBackend(backend);
        try {
          const w = loadLlama2c(sharedPath(SHARED.stories260K), {
            backend,
            quantize: { format: "int4-g32-asym-f16" },
          });
          return generate(w, tok, { prompt: "Once upon a time", steps: 40, temperature: 0 }).tokens;
        } finally {
          setBackend(previous);
        }
      };
      const want = run(plain);
      // the wasm attention kernels serve the device backend; its one-row products stay on the device
      const dk = decodeKernels(gpu);
      expect(dk).toBeDefined();
      const attention = vi.spyOn(dk as NonNullable<typeof dk>, "attention");
      const before = gpu.stats().gpu.qmatmul;
      const got = run(gpu);
      expect(gpu.stats().gpu.qmatmul).toBeGreaterThan(before + 30);
      expect(attention).toHaveBeenCalled();
      attention.mockRestore();
      expect(want.length).toBeGreaterThan(20);
      expect(got).toEqual(want);
    } finally {
      plain.dispose();
    }
  }, 300_000);
});

describe("int21 --device", () => {
  it("refuses a device it does not know, naming the choices", async () => {
    const r = await cli(["generate", sharedPath(SHARED.stories260K), "--device", "cuda"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--device <name>.*expected one of wasm, webgpu, reference, got "cuda"/);
  });

  it("reference and wasm generate the same greedy text", async () => {
    const args = [
      "generate",
      sharedPath(SHARED.stories260K),
      "--temperature",
      "0",
      "--steps",
      "40",
      "--quiet",
    ];
    const wasm = await cli([...args, "--device", "wasm", "--threads", "1"]);
    const ref = await cli([...args, "--device", "reference"]);
    expect(wasm.code).toBe(0);
    expect(ref.out).toBe(wasm.out);
    expect(wasm.out.length).toBeGreaterThan(60);
  }, 60_000);

  it.skipIf(missing !== null)(
    "webgpu generates the same greedy text as wasm (float stories260K)",
    async () => {
      const args = [
        "generate",
        sharedPath(SHARED.stories260K),
        "--temperature",
        "0",
        "--steps",
        "40",
        "--quiet",
      ];
      const wasm = await cli([...args, "--threads", "1"]);
      const gpuRun = await cli([...args, "--device", "webgpu", "--threads", "1"]);
      expect(gpuRun.code).toBe(0);
      expect(gpuRun.err).toBe("");
      expect(gpuRun.out).toBe(wasm.out);
    },
    120_000,
  );
});
