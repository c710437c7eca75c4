// The page: wires the buttons to the Engine and keeps the readouts current.
import { lineChartSvg } from "@int21/lora";
import { createWasmBackend, type WasmBackend } from "@int21/quant-kernels";
import { Engine, FORMAT_CHOICES, type FormatChoice, LORA_SETUP } from "./engine";
import { webGpuCheck } from "./webgpu-check";

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`index.html has no #${id}`);
  return el as T;
};

const ui = {
  modelFile: $<HTMLInputElement>("model-file"),
  tokenizerFile: $<HTMLInputElement>("tokenizer-file"),
  format: $<HTMLSelectElement>("format"),
  load: $<HTMLButtonElement>("load"),
  prompt: $<HTMLInputElement>("prompt"),
  steps: $<HTMLInputElement>("steps"),
  temperature: $<HTMLInputElement>("temperature"),
  generate: $<HTMLButtonElement>("generate"),
  train: $<HTMLButtonElement>("train"),
  backend: $("backend"),
  webgpu: $("webgpu"),
  modelInfo: $("model-info"),
  tps: $("tps"),
  trainTps: $("train-tps"),
  lossChart: $("loss-chart"),
  memory: $("memory"),
  status: $("status"),
  output: $("output"),
  losses: $<HTMLOListElement>("losses"),
  loraSetup: $("lora-setup"),
};

const TRAIN_STEPS = 20;
const kb = (b: number) => (b < 2 ** 20 ? `${(b / 1024).toFixed(1)} KiB` : `${(b / 2 ** 20).toFixed(2)} MiB`);

let engine: Engine;
let wasm: WasmBackend;
let trainText: string | null = null;
let lastPeak = 0;
/** Every training step's loss since the model was loaded. */
let lossPoints: [number, number][] = [];

function setState(state: "ready" | "busy" | "error", message: string): void {
  document.body.dataset.state = state;
  ui.status.textContent = message;
  const loaded = engine?.weights != null;
  ui.load.disabled = state === "busy";
  ui.generate.disabled = state === "busy" || !loaded;
  ui.train.disabled = state === "busy" || !loaded;
}

function showMemory(): void {
  const heap = (performance as { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize;
  const parts = [
    `JS heap ${heap === undefined ? "n/a (not Chromium)" : kb(heap)}`,
    `wasm ${kb(wasm.memoryBytes())}`,
  ];
  if (lastPeak > 0) parts.push(`training peak ${kb(lastPeak)}`);
  ui.memory.textContent = parts.join(" · ");
}

/** Lets the browser paint "busy" before a long synchronous call. */
const paint = () => new Promise<void>((r) => requestAnimationFrame(() => setTimeout(r, 0)));

async function fileBytes(input: HTMLInputElement, fallbackUrl: string): Promise<[Uint8Array, string]> {
  const f = input.files?.[0];
  if (f) return [new Uint8Array(await f.arrayBuffer()), f.name];
  const res = await fetch(fallbackUrl);
  if (!res.ok) throw new Error(`${fallbackUrl}: HTTP ${res.status}`);
  return [new Uint8Array(await res.arrayBuffer()), fallbackUrl.split("/").pop()!];
}

async function run(label: string, fn: () => Promise<string>): Promise<void> {
  setState("busy", `${label}…`);
  await paint();
  try {
    const done = await fn();
    setState("ready", done);
  } catch (e) {
    console.error(e);
    setState("error", `${label} failed: ${e instanceof Error ? e.message : String(e)}`);
  }
  showMemory();
}

ui.load.addEventListener("click", () =>
  run("Loading", async () => {
    const [model, modelName] = await fileBytes(ui.modelFile, "models/stories260K.bin");
    const [tok, tokName] = await fileBytes(ui.tokenizerFile, "models/tok512.bin");
    const format = ui.format.value as FormatChoice;
    const r = engine.load(model, tok, format, [modelName, tokName]);
    const c = r.config;
    lastPeak = 0;
    lossPoints = [];
    ui.losses.replaceChildren();
    ui.lossChart.replaceChildren();
    ui.tps.textContent = "—";
    ui.trainTps.textContent = "—";
    ui.output.textContent = "";
    ui.modelInfo.textContent =
      `${modelName}: dim ${c.dim}, ${c.nLayers} layers, ${c.nHeads} heads (${c.nKvHeads} kv), vocab ${c.vocabSize}, ` +
      `${(r.params / 1e3).toFixed(0)}K params · ${r.format}: projections ${kb(r.projectionBytes)} ` +
      `(float32 ${kb(r.projectionFloatBytes)}, ${(r.projectionFloatBytes / r.projectionBytes).toFixed(1)}× smaller), ` +
      `whole model ${kb(r.modelBytes)} · loaded in ${r.loadMs.toFixed(0)} ms`;
    ui.modelInfo.dataset.format = r.format;
    const linears = engine.weights!.layers.flatMap((L) => [L.wq, L.wk, L.wv, L.wo, L.w1, L.w2, L.w3]);
    const g = await webGpuCheck(wasm, linears);
    ui.webgpu.dataset.available = String(g.available);
    const on = g.adapter ? ` [adapter: ${g.adapter}]` : "";
    ui.webgpu.textContent = !g.available
      ? `not available (${g.reason}): everything runs on wasm`
      : g.reason
        ? `device found${on}; ${g.reason}`
        : `qmatvec on ${g.layers} packed projections checked against wasm: max rel. error ${g.maxRelError.toExponential(1)}, ` +
          `${g.gpuUsPerCall.toFixed(0)} µs/call incl. readback (wasm ${g.wasmUsPerCall.toFixed(0)} µs). ` +
          `Generation and training stay on wasm (synchronous Linear interface).${on}`;
    return `loaded ${modelName} as ${r.format}`;
  }),
);

ui.generate.addEventListener("click", () =>
  run("Generating", async () => {
    const steps = Number(ui.steps.value);
    const temperature = Number(ui.temperature.value);
    const r = engine.generate(ui.prompt.value, steps, temperature);
    ui.output.textContent = r.text;
    ui.tps.dataset.decode = String(r.decodeTokensPerSec);
    const prefill =
      r.promptTokens > 1
        ? `, prefill ${r.prefillTokensPerSec.toFixed(0)} tokens/s over ${r.promptTokens} prompt tokens`
        : "";
    ui.tps.textContent =
      `${r.decodeTokensPerSec.toFixed(0)} tokens/s decode${prefill} ` +
      `(${r.tokens} tokens in ${r.ms.toFixed(0)} ms, ${engine.format}${r.withAdapter ? " + LoRA" : ""})`;
    return `generated ${r.tokens} tokens (stop: ${r.stop})`;
  }),
);

ui.train.addEventListener("click", () =>
  run("Training", async () => {
    if (trainText === null) {
      const res = await fetch("models/train.txt");
      if (!res.ok) throw new Error(`models/train.txt: HTTP ${res.status}`);
      trainText = await res.text();
    }
    let tps = 0;
    await engine.train(trainText, {
      steps: TRAIN_STEPS,
      onStep: async (s) => {
        const li = document.createElement("li");
        li.value = s.step;
        li.dataset.loss = String(s.loss);
        li.textContent = `${s.loss.toFixed(4)} (${s.ms.toFixed(0)} ms)`;
        ui.losses.append(li);
        lastPeak = Math.max(lastPeak, s.peakBytes);
        tps = s.tokensPerSec;
        ui.trainTps.textContent =
          `${s.tokensPerSec.toFixed(0)} tokens/s, ${s.ms.toFixed(0)} ms/step (step ${s.step}: forward + backward + AdamW, ` +
          `${engine.format})`;
        lossPoints.push([s.step, s.loss]);
        ui.lossChart.innerHTML = lineChartSvg(
          `LoRA training loss (${engine.format} base)`,
          [{ name: "train loss", points: lossPoints }],
          { x: "step", y: "cross-entropy (nats)" },
        );
        showMemory();
        await paint();
      },
    });
    ui.trainTps.dataset.train = String(tps);
    return `trained ${engine.trainedSteps} LoRA steps; Generate now uses the adapter`;
  }),
);

async function start(): Promise<void> {
  ui.loraSetup.textContent =
    `r ${LORA_SETUP.r}, alpha ${LORA_SETUP.alpha} on all 7 projections of every layer, AdamW lr ${LORA_SETUP.lr}, ` +
    `one fixed batch of ${LORA_SETUP.windows} × ${LORA_SETUP.seqLen} tokens from TinyStories validation stories ` +
    `(the adapter memorises it: loss falls fast).`;
  for (const [k, v] of Object.entries(FORMAT_CHOICES)) {
    const opt = ui.format.querySelector<HTMLOptionElement>(`option[value="${k}"]`);
    if (opt && v) opt.title = v;
  }
  try {
    wasm = await createWasmBackend();
  } catch (e) {
    // Not cross-origin isolated (no SharedArrayBuffer): the single-thread module still runs.
    console.warn(e);
    wasm = await createWasmBackend({ sharedMemory: false, threads: 1 });
  }
  engine = new Engine(wasm);
  const isolated = globalThis.crossOriginIsolated === true;
  ui.backend.dataset.threads = String(wasm.threads);
  ui.backend.textContent =
    `wasm SIMD + ${wasm.threads} thread${wasm.threads > 1 ? "s" : ""} ` +
    `(${isolated ? "cross-origin isolated, shared memory" : "not isolated: no shared memory"}) — ` +
    `generation and LoRA training`;
  ui.webgpu.textContent =
    "gpu" in navigator
      ? "navigator.gpu present; checked after loading"
      : "not available (navigator.gpu is absent)";
  showMemory();
  setState("ready", "ready: press “Load & quantize”");
}

start().catch((e) => {
  console.error(e);
  document.body.dataset.state = "error";
  ui.status.textContent = `start failed: ${e instanceof Error ? e.message : String(e)}`;
});
