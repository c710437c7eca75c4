// The page's work, free of the DOM: load a llama2.c model (quantizing while it loads), generate, and
// train a LoRA adapter on the frozen (packed) base. main.ts wires it to buttons and readouts.
import { AdamW, backward, crossEntropy, memory, resetPeak, setBackend, tidy } from "@int21/autograd";
import { type Batch, collate, LoRAModel, loraParameters, textDataset } from "@int21/lora";
import {
  generate,
  LINEAR_NAMES,
  type LinearName,
  Llama2cTokenizer,
  type LlamaWeights,
  loadLlama2cBytes,
  trainForward,
} from "@int21/model-llama";
import type { Linear, WasmBackend } from "@int21/quant-kernels";

/** The weight formats the page offers: float32, or RTN while loading (groups of 32, f16 scales and zeros). */
export const FORMAT_CHOICES = {
  float32: null,
  int4: "int4-g32-asym-f16",
  int2: "int2-g32-asym-f16",
} as const;

/** A key of {@link FORMAT_CHOICES}. */
export type FormatChoice = keyof typeof FORMAT_CHOICES;

/** What {@link Engine.load} measured. */
export interface LoadReport {
  format: string;
  loadMs: number;
  /** Bytes of the seven projections of every layer (packed words + scales + zeros, or float). */
  projectionBytes: number;
  /** The same projections as float32. */
  projectionFloatBytes: number;
  /** Every weight byte: projections, float embedding (shared classifier), norms. */
  modelBytes: number;
  params: number;
  config: LlamaWeights["config"];
}

/** What {@link Engine.generate} produced. */
export interface GenerateReport {
  text: string;
  /** Generated tokens. */
  tokens: number;
  /** Prompt tokens, BOS included. */
  promptTokens: number;
  stop: string;
  prefillTokensPerSec: number;
  decodeTokensPerSec: number;
  ms: number;
  withAdapter: boolean;
}

/** One LoRA training step. */
export interface StepReport {
  step: number;
  loss: number;
  ms: number;
  tokensPerSec: number;
  /** autograd's peak live bytes during the step (activations, gradients, optimizer state). */
  peakBytes: number;
}

/** Options of {@link Engine.train}. */
export interface TrainOptions {
  steps: number;
  /** Called after each step (the page redraws the loss list there). */
  onStep?: (s: StepReport) => void | Promise<void>;
}

/** The LoRA setup the page trains: every projection, rank 8, AdamW. */
export const LORA_SETUP = {
  r: 8,
  alpha: 16,
  lr: 1e-2,
  windows: 4,
  seqLen: 64,
  targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
} as const;

function projections(weights: LlamaWeights): Linear[] {
  return weights.layers.flatMap((L) => (Object.keys(LINEAR_NAMES) as LinearName[]).map((n) => L[n]));
}

/** Holds the loaded model, tokenizer and adapter between button presses. */
export class Engine {
  weights: LlamaWeights | null = null;
  tokenizer: Llama2cTokenizer | null = null;
  format: FormatChoice = "float32";
  private lora: LoRAModel | null = null;
  private optimizer: AdamW | null = null;
  private batch: Batch | null = null;
  /** Steps trained on the current model. */
  trainedSteps = 0;

  constructor(readonly backend: WasmBackend) {
    setBackend(backend);
  }

  /** Parses the tokenizer and the model, quantizing every projection as it is read. */
  load(
    modelFile: Uint8Array,
    tokenizerFile: Uint8Array,
    format: FormatChoice,
    names: [string, string],
  ): LoadReport {
    const t0 = performance.now();
    const spec = FORMAT_CHOICES[format];
    const tokenizer = Llama2cTokenizer.fromBytes(tokenizerFile, names[1]);
    const weights = loadLlama2cBytes(modelFile, {
      backend: this.backend,
      name: names[0],
      ...(spec ? { quantize: { format: spec } } : {}),
    });
    if (tokenizer.vocabSize !== weights.config.vocabSize) {
      throw new Error(
        `${names[1]}: ${tokenizer.vocabSize} tokens, but ${names[0]} has a vocabulary of ${weights.config.vocabSize}`,
      );
    }
    const loadMs = performance.now() - t0;
    // Drop the previous model's resident copies from wasm memory.
    if (this.weights) for (const l of projections(this.weights)) this.evict(l);
    this.weights = weights;
    this.tokenizer = tokenizer;
    this.format = format;
    this.lora = null;
    this.optimizer = null;
    this.batch = null;
    this.trainedSteps = 0;
    const proj = projections(weights);
    const projectionBytes = proj.reduce((s, l) => s + l.bytes(), 0);
    const projectionFloatBytes = proj.reduce((s, l) => s + 4 * l.inFeatures * l.outFeatures, 0);
    const c = weights.config;
    const floatParams = c.vocabSize * c.dim + weights.finalNorm.length + 2 * c.nLayers * c.dim; // float32 table
    // A shared classifier reads the token embedding (counted above); a separate one has its own weights.
    const classifierBytes = c.sharedClassifier ? 0 : weights.classifier.bytes();
    const modelBytes = projectionBytes + 4 * floatParams + classifierBytes;
    return {
      format: spec ?? "float32",
      loadMs,
      projectionBytes,
      projectionFloatBytes,
      modelBytes,
      params: floatParams + projectionFloatBytes / 4,
      config: c,
    };
  }

  private evict(l: Linear): void {
    const q = (l as { q?: unknown }).q;
    if (q) this.backend.evict(q as Parameters<WasmBackend["evict"]>[0]);
  }

  /** Generates from `prompt` (BOS only when empty); temperature 0 is greedy. */
  generate(prompt: string, steps: number, temperature: number): GenerateReport {
    const { weights, tokenizer } = this.need();
    const t0 = performance.now();
    const r = generate(weights, tokenizer, { prompt, steps, temperature, topP: 0.9, seed: 42 });
    return {
      text: r.text,
      tokens: r.generatedTokens,
      promptTokens: r.promptTokens,
      stop: r.stop,
      prefillTokensPerSec: r.prefillTokensPerSec,
      decodeTokensPerSec: r.decodeTokensPerSec,
      ms: performance.now() - t0,
      withAdapter: this.trainedSteps > 0,
    };
  }

  /**
   * Trains the LoRA adapter (added on first use, on every projection) for `steps` AdamW steps on one
   * fixed batch of {@link LORA_SETUP}.windows windows cut from `text`; the frozen base gets no gradient.
   * Calling it again continues the same adapter and optimizer.
   */
  async train(text: string, opts: TrainOptions): Promise<StepReport[]> {
    const { weights, tokenizer } = this.need();
    if (!this.lora) {
      const modules = new Map<string, Linear>();
      weights.layers.forEach((L, i) => {
        for (const [short, hf] of Object.entries(LINEAR_NAMES))
          modules.set(`model.layers.${i}.${hf}`, L[short as LinearName]);
      });
      const lora = new LoRAModel(modules);
      lora.addAdapter({
        targetModules: [...LORA_SETUP.targets],
        r: LORA_SETUP.r,
        alpha: LORA_SETUP.alpha,
        seed: 1,
      });
      weights.layers.forEach((L, i) => {
        for (const [short, hf] of Object.entries(LINEAR_NAMES))
          L[short as LinearName] = lora.modules.get(`model.layers.${i}.${hf}`)!;
      });
      const examples = textDataset(text, tokenizer, {
        seqLen: LORA_SETUP.seqLen,
        separator: "<|endoftext|>",
      });
      if (examples.length < LORA_SETUP.windows) {
        throw new Error(
          `training text: ${examples.length} windows of ${LORA_SETUP.seqLen + 1} tokens, need ${LORA_SETUP.windows}`,
        );
      }
      this.batch = collate(examples.slice(0, LORA_SETUP.windows));
      this.optimizer = new AdamW(loraParameters(lora), { lr: LORA_SETUP.lr, weightDecay: 0 });
      this.lora = lora;
    }
    const batch = this.batch!;
    const opt = this.optimizer!;
    const out: StepReport[] = [];
    for (let i = 0; i < opts.steps; i++) {
      const t0 = performance.now();
      resetPeak();
      opt.zeroGrad();
      const loss = tidy(() => {
        const logits = trainForward(weights, batch.input, {
          batch: batch.batch,
          checkpoint: true,
          training: true,
        });
        const l = crossEntropy(logits, batch.target);
        backward(l);
        return l.item();
      });
      opt.step();
      const ms = performance.now() - t0;
      this.trainedSteps++;
      const s: StepReport = {
        step: this.trainedSteps,
        loss,
        ms,
        tokensPerSec: (batch.inputTokens / ms) * 1000,
        peakBytes: memory().peakBytes,
      };
      out.push(s);
      await opts.onStep?.(s);
    }
    return out;
  }

  private need(): { weights: LlamaWeights; tokenizer: Llama2cTokenizer } {
    if (!this.weights || !this.tokenizer) throw new Error("no model loaded: press “Load & quantize” first");
    return { weights: this.weights, tokenizer: this.tokenizer };
  }
}
