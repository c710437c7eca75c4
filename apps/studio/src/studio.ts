// The studio's pipeline, free of the DOM and of worker plumbing (worker.ts wires it to messages; the unit
// tests drive it in Node): load a model (llama2.c streamed through a ByteSource, GGUF bytes, Hugging Face
// files), quantize (RTN / GPTQ, 2/3/4/8 bits), LREC against the float teacher, LoRA fine-tuning with a
// resumable state, perplexity per configuration, generation, and the files to download as bytes.
import { AdamW, backward, memory, type OptimizerState, resetPeak, setBackend, tidy } from "@int21/autograd";
import type { Backend } from "@int21/quant-kernels";
import { serializeGguf, serializeSafetensors } from "@int21/io";
import {
  adaptersFromCheckpoint,
  adaptersToCheckpoint,
  type ChatRenderer,
  collate,
  type Example,
  LoRAModel,
  loraParameters,
} from "@int21/lora";
import { type LrecStep, runLrec, windowData } from "@int21/lrec";
import {
  assembleFromReader,
  calibrationWindows,
  evaluateNll,
  generate,
  type LlamaWeights,
  llamaLoss,
  llamaModules,
  quantizeModel,
  setLlamaModules,
  type Tokenizer,
} from "@int21/model-llama";
import {
  type ByteSource,
  baseWeightsOf,
  type GgufModelType,
  ggufModelTensors,
  HfTokenizer,
  hfTokenizerToGguf,
  Llama2cTokenizer,
  loadGguf,
  loadHf,
  loadInt21Checkpoint,
  loadInt21CheckpointBytes,
  loadHfBytes,
  loadLlama2cFrom,
  renderChatTemplate,
  saveLlamaAdapter,
  serializeGgufLora,
  serializeInt21Checkpoint,
} from "@int21/loaders";
import { batchAt, parseTrainingData, trainingExamples } from "./data";
import { hfStreamable, hfStreamConfig, openHfStream, sourceText } from "./hf-stream";
import { type StageProgress, stageClock } from "./progress";

/** Where a model comes from, as the worker hands it over. */
export type ModelInput =
  | { kind: "llama2c"; model: ByteSource; tokenizer: Uint8Array; tokenizerName: string }
  /** A GGUF: its bytes, or a path the build's `fs/promises` can open (a picked file registered in blob-files.ts, read in slices). */
  | { kind: "gguf"; src: Uint8Array | string; name: string }
  /**
   * A Hugging Face folder: its files by name. `dir`: the same files under a path the build's `fs/promises` can open
   * (blob-files.ts), used for what the streamed reader does not read (Phi-3's fused tensors: `loadHf(dir)`).
   */
  | { kind: "hf"; files: Record<string, ByteSource>; label: string; dir?: string };

/** Quantization settings. */
export interface QuantizeSettings {
  bits: 2 | 3 | 4 | 8;
  groupSize: 32 | 64 | 128;
  method: "rtn" | "gptq";
  /** Calibration text (GPTQ); its windows also measure RTN's output error. */
  calibText: string;
  /** Calibration windows and their length in tokens. */
  calibWindows: number;
  calibLen: number;
}

/** LREC settings. */
export interface LrecSettings {
  steps: number;
  r: number;
  lr: number;
  /** Weight of the CE term (λ). */
  lambda: number;
  batch: number;
  seq: number;
  text: string;
}

/** Fine-tuning settings. */
export interface FinetuneSettings {
  /** Training data: text, JSONL of `{text}`, or Alpaca JSON / JSONL. */
  data: string;
  dataName: string;
  r: number;
  alpha: number;
  targets: string[];
  /** Total steps of the run. */
  steps: number;
  lr: number;
  batch: number;
  seqLen: number;
  /** Save the resumable state every this many steps (0: never). */
  saveEvery: number;
}

/** Where the resumable training state goes (OPFS in the worker, memory in tests). */
export interface StateStore {
  save(bytes: Uint8Array): Promise<void>;
  load(): Promise<Uint8Array | null>;
  clear(): Promise<void>;
}

/** The pipeline's readout after each action. */
export interface Summary {
  model: string | null;
  kind: string | null;
  config: Record<string, number | string | boolean> | null;
  /** Weight bytes of the float teacher and of the student (packed). */
  teacherBytes: number;
  studentBytes: number;
  student: string | null;
  lrecSteps: number;
  ftSteps: number;
  ftTotal: number;
  adapters: string[];
}

/** One fine-tuning step. */
export interface FtStep {
  step: number;
  loss: number;
  ms: number;
  skipped: boolean;
}

/** One perplexity measurement of a configuration. */
export interface EvalPoint {
  label: string;
  perplexity: number;
  meanNll: number;
  tokens: number;
}

/** The saved state's meta (JSON in the safetensors header). */
export interface SavedRun {
  format: "int21-studio-run";
  version: 1;
  model: string;
  quantize: QuantizeSettings | null;
  lrec: Omit<LrecSettings, "text"> | null;
  finetune: Omit<FinetuneSettings, "data"> & { dataChars: number };
  step: number;
  /** The curves so far, so a resumed run's charts continue where they were. */
  history: { lrec: { step: number; klPerToken: number; loss: number }[]; finetune: FtStep[] };
  optimizer: OptimizerState["meta"];
  adaptersMeta: unknown;
  savedAt: string;
}

type Emit = (p: StageProgress) => void;

const FT_NAME = "default";
const LREC_NAME = "lrec";

function linearBytes(w: LlamaWeights): number {
  let b = 0;
  for (const L of w.layers)
    for (const k of ["wq", "wk", "wv", "wo", "w1", "w2", "w3"] as const) b += L[k].bytes();
  return b;
}

/** `int2-g64-asym-f16`-style name of the settings. */
export function formatName(q: Pick<QuantizeSettings, "bits" | "groupSize">): string {
  return `int${q.bits}-g${q.groupSize}-asym-f16`;
}

/** The pipeline. One instance per worker. */
export class Studio {
  teacher: LlamaWeights | null = null;
  student: LlamaWeights | null = null;
  tokenizer: Tokenizer | null = null;
  name: string | null = null;
  kind: ModelInput["kind"] | null = null;
  quantized: QuantizeSettings | null = null;
  /** The student's name when it was opened as an int21 checkpoint instead of quantized here. */
  studentFile: string | null = null;
  lrecSettings: Omit<LrecSettings, "text"> | null = null;
  lrecHistory: LrecStep[] = [];
  ftHistory: FtStep[] = [];
  evals: EvalPoint[] = [];
  private lora: LoRAModel | null = null;
  private peftRuns = 0;
  private ft: {
    settings: FinetuneSettings;
    optimizer: AdamW;
    examples: Example[];
    step: number;
  } | null = null;

  /**
   * `opts.scratchDir`: a folder the libraries' file writers may write into and the studio reads back (the PEFT
   * adapter is written by model-llama's `saveLlamaAdapter`): in the browser the in-memory scratch folder of the
   * build's `fs/promises` stub (blob-files.ts), in Node a temporary folder.
   */
  constructor(
    readonly backend: Backend,
    readonly store: StateStore | null = null,
    readonly opts: { scratchDir?: string } = {},
  ) {
    setBackend(backend);
  }

  /** Opens a model as the float teacher (llama2.c streams tensor by tensor from its ByteSource). */
  async load(input: ModelInput, emit: Emit): Promise<Summary> {
    this.reset();
    let weights: LlamaWeights;
    let tokenizer: Tokenizer;
    let name: string;
    if (input.kind === "llama2c") {
      name = input.model.name;
      const tick = stageClock("load", 1, emit);
      weights = loadLlama2cFrom(input.model, {
        backend: this.backend,
        onProgress: (p) => tick(p.done / p.total, p.tensor),
      });
      tokenizer = Llama2cTokenizer.fromBytes(input.tokenizer, input.tokenizerName, weights.config.vocabSize);
    } else if (input.kind === "gguf") {
      name = input.name;
      const tick = stageClock("load", 1, emit);
      const g = await loadGguf(input.src, {
        backend: this.backend,
        onProgress: (p) => tick(p.done / p.total, p.tensor),
      });
      weights = g.weights;
      if (g.tokenizer) tokenizer = g.tokenizer;
      else if (g.ggufTokenizer) tokenizer = HfTokenizer.fromGguf(g.ggufTokenizer, name);
      else
        throw new Error(
          `${name}: the GGUF has no tokenizer (${g.tokenizerError ?? "tokenizer.ggml.* absent"})`,
        );
    } else {
      name = input.label;
      const tick = stageClock("load", 1, emit);
      const onProgress = (p: { tensor: string; done: number; total: number }) =>
        tick(p.done / p.total, p.tensor);
      const files = input.files;
      const config = hfStreamConfig(files, name);
      if (hfStreamable(config)) {
        // tensor by tensor through the ByteSources: the safetensors files are never held whole
        weights = await assembleFromReader(openHfStream(files, name), { backend: this.backend, onProgress });
      } else if (input.dir !== undefined) {
        // model-llama's own folder reader, its positioned reads served from the picked files
        weights = await loadHf(input.dir, { backend: this.backend, onProgress });
      } else {
        const whole: Record<string, Uint8Array> = {};
        for (const [n, src] of Object.entries(files)) whole[n] = src.read(0, src.size);
        weights = await loadHfBytes(whole, { backend: this.backend, onProgress });
      }
      const tokFile = files["tokenizer.json"];
      if (!tokFile) throw new Error(`${name}: the folder has no tokenizer.json`);
      const json = JSON.parse(sourceText(tokFile)) as Record<string, unknown>;
      const cfgFile = files["tokenizer_config.json"];
      const tokConfig = cfgFile ? (JSON.parse(sourceText(cfgFile)) as Record<string, unknown>) : undefined;
      const jinja = files["chat_template.jinja"];
      tokenizer = new HfTokenizer(json, {
        ...(tokConfig ? { config: tokConfig } : {}),
        ...(jinja ? { chatTemplate: sourceText(jinja) } : {}),
        source: `${name}/tokenizer.json`,
      });
      if (tokenizer.vocabSize > weights.config.vocabSize)
        throw new Error(
          `${name}/tokenizer.json: ${tokenizer.vocabSize} tokens, but config.json has a vocabulary of ${weights.config.vocabSize}`,
        );
    }
    if (input.kind === "llama2c" && tokenizer.vocabSize !== weights.config.vocabSize)
      throw new Error(
        `${input.tokenizerName}: ${tokenizer.vocabSize} tokens, but ${name} has a vocabulary of ${weights.config.vocabSize}`,
      );
    this.teacher = weights;
    this.tokenizer = tokenizer;
    this.name = name;
    this.kind = input.kind;
    return this.summary();
  }

  private reset(): void {
    this.teacher = null;
    this.student = null;
    this.tokenizer = null;
    this.quantized = null;
    this.studentFile = null;
    this.lrecSettings = null;
    this.lora = null;
    this.ft = null;
    this.lrecHistory = [];
    this.ftHistory = [];
    this.evals = [];
  }

  /** The model generation and evaluation use: the student (with its adapters) once quantized, else the teacher. */
  get active(): LlamaWeights {
    const w = this.student ?? this.teacher;
    if (!w) throw new Error("no model loaded: open a model first");
    return w;
  }

  private need(): { teacher: LlamaWeights; tokenizer: Tokenizer } {
    if (!this.teacher || !this.tokenizer) throw new Error("no model loaded: open a model first");
    return { teacher: this.teacher, tokenizer: this.tokenizer };
  }

  /** Calibration windows of `text` (at most `count` windows of `len` tokens, fewer when the text is short). */
  calibration(text: string, count: number, len: number): Int32Array[] {
    const { tokenizer, teacher } = this.need();
    const L = Math.min(len, teacher.config.seqLen);
    const ids = tokenizer.encode(text, { bos: false });
    const body = L - 1;
    const n = Math.min(count, Math.floor(ids.length / body));
    if (n < 1)
      throw new Error(
        `calibration text: ${ids.length} tokens, need at least ${body} for one window of ${L} tokens (give more text)`,
      );
    return calibrationWindows(ids, n, L, tokenizer.bosId);
  }

  /** Quantizes the float teacher into the student (replacing any earlier student and its adapters). */
  quantize(
    q: QuantizeSettings,
    emit: Emit,
  ): { summary: Summary; meanRelError: number; meanRtnRelError: number } {
    const { teacher } = this.need();
    const calib = q.calibText.trim() ? this.calibration(q.calibText, q.calibWindows, q.calibLen) : undefined;
    if (q.method === "gptq" && !calib) throw new Error("GPTQ needs calibration text");
    const tick = stageClock("quantize", 1, emit);
    const r = quantizeModel(teacher, {
      format: { bits: q.bits, groupSize: q.groupSize },
      method: q.method,
      ...(calib ? { calib } : {}),
      backend: this.backend,
      onProgress: (p) => tick(p.done / p.total, `layer ${p.layer} ${p.name}`),
    });
    tick(1, "done");
    this.student = r.weights;
    this.quantized = q;
    this.studentFile = null;
    this.lora = null;
    this.ft = null;
    this.lrecSettings = null;
    this.lrecHistory = [];
    this.ftHistory = [];
    const mean = (xs: (number | undefined)[]) => {
      const v = xs.filter((x): x is number => x !== undefined && Number.isFinite(x));
      return v.length ? v.reduce((a, b) => a + b, 0) / v.length : Number.NaN;
    };
    return {
      summary: this.summary(),
      meanRelError: mean(r.report.map((x) => x.relError)),
      meanRtnRelError: mean(
        r.report.map((x) => x.rtnRelError ?? (q.method === "rtn" ? x.relError : undefined)),
      ),
    };
  }

  private needStudent(): { teacher: LlamaWeights; student: LlamaWeights; tokenizer: Tokenizer } {
    const t = this.need();
    if (!this.student)
      throw new Error("quantize the model first (LREC and fine-tuning train adapters on the packed student)");
    return { ...t, student: this.student };
  }

  /** LREC: trains the `lrec` adapter so the packed student matches the float teacher (KL + λ·CE). */
  async lrec(s: LrecSettings, emit: Emit, onStep: (st: LrecStep) => void): Promise<Summary> {
    const { teacher, student, tokenizer } = this.needStudent();
    if (this.lora?.adapterNames().includes(LREC_NAME))
      throw new Error("LREC already ran on this student: quantize again to start over");
    if (this.ft) throw new Error("LREC must run before fine-tuning (quantize again to start over)");
    const seq = Math.min(s.seq, teacher.config.seqLen);
    const tokens = tokenizer.encode(s.text, { bos: true });
    if (tokens.length < seq + 2)
      throw new Error(`LREC text: ${tokens.length} tokens, need more than ${seq + 1} (give more text)`);
    const tick = stageClock("lrec", s.steps, emit);
    const r = await runLrec(teacher, student, windowData(tokens, { batch: s.batch, seq, seed: 1 }), {
      steps: s.steps,
      r: s.r,
      alpha: 2 * s.r,
      lr: s.lr,
      lambda: s.lambda,
      log: () => {},
      onProgress: (p) => {
        this.lrecHistory.push(p);
        onStep(p);
        tick(p.step, `KL ${p.klPerToken.toFixed(4)}/token, loss ${p.loss.toFixed(4)}`);
      },
    });
    this.lora = r.model;
    setLlamaModules(student, r.model.modules);
    this.lrecSettings = { steps: s.steps, r: s.r, lr: s.lr, lambda: s.lambda, batch: s.batch, seq };
    return this.summary();
  }

  private adaptersModel(student: LlamaWeights): LoRAModel {
    if (!this.lora) this.lora = new LoRAModel(llamaModules(student));
    return this.lora;
  }

  /** Starts (or replaces) a fine-tuning run: adds the `default` adapter and a fresh AdamW. */
  startFinetune(s: FinetuneSettings): void {
    const { student, tokenizer } = this.needStudent();
    const data = parseTrainingData(s.data, s.dataName);
    const seqLen = Math.min(s.seqLen, student.config.seqLen);
    const examples = trainingExamples(data, tokenizer, seqLen, s.dataName, this.chatRenderer(s.dataName));
    const model = this.adaptersModel(student);
    if (model.adapterNames().includes(FT_NAME))
      throw new Error(
        "a fine-tuning adapter is already on the student: continue it, or quantize again to start over",
      );
    if (s.targets.length === 0) throw new Error("fine-tuning: choose at least one target module");
    model.addAdapter({ name: FT_NAME, targetModules: s.targets, r: s.r, alpha: s.alpha, seed: 1 });
    setLlamaModules(student, model.modules);
    const optimizer = new AdamW(loraParameters(model, FT_NAME), { lr: s.lr, weightDecay: 0 });
    this.ft = { settings: { ...s, seqLen }, optimizer, examples, step: 0 };
    this.ftHistory = [];
  }

  /** Runs fine-tuning steps until the run's total (or `until`), saving the state every `saveEvery` steps. */
  async finetune(
    emit: Emit,
    onStep: (s: FtStep) => void,
    opts: { until?: number; shouldStop?: () => boolean } = {},
  ): Promise<Summary> {
    const { student } = this.needStudent();
    const ft = this.ft;
    if (!ft) throw new Error("start a fine-tuning run first");
    const s = ft.settings;
    const end = Math.min(s.steps, opts.until ?? s.steps);
    const lossFn = llamaLoss(student, { checkpoint: true });
    const startStep = ft.step;
    const tick = stageClock("finetune", end - startStep, emit);
    while (ft.step < end && !opts.shouldStop?.()) {
      const t0 = performance.now();
      const batch = collate(batchAt(ft.examples, ft.step, s.batch));
      resetPeak();
      ft.optimizer.zeroGrad();
      const loss = tidy(() => {
        const l = lossFn(batch, { training: true });
        backward(l);
        return l.item();
      });
      const skipped = !Number.isFinite(loss);
      if (!skipped) ft.optimizer.step();
      ft.step++;
      const st: FtStep = { step: ft.step, loss, ms: performance.now() - t0, skipped };
      this.ftHistory.push(st);
      onStep(st);
      tick(ft.step - startStep, `step ${ft.step}/${s.steps}, loss ${loss.toFixed(4)}`);
      if (this.store && s.saveEvery > 0 && (ft.step % s.saveEvery === 0 || ft.step === s.steps))
        await this.store.save(this.serializeRun());
      await Promise.resolve();
    }
    return this.summary();
  }

  /** The resumable state: both adapters (LREC and fine-tuning), the optimizer, the step and the settings. */
  serializeRun(): Uint8Array {
    const ft = this.ft;
    if (!ft || !this.lora || !this.name) throw new Error("no fine-tuning run to save");
    const ad = adaptersToCheckpoint(this.lora);
    const opt = ft.optimizer.stateDict();
    const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (const [k, t] of Object.entries(ad.tensors))
      tensors[`adapter/${k}`] = { dtype: "F32", shape: t.shape, data: t.data };
    for (const [k, v] of Object.entries(opt.tensors))
      tensors[`optimizer/${k}`] = { dtype: "F32", shape: [v.length], data: v };
    const { data: _d, ...ftMeta } = ft.settings;
    const meta: SavedRun = {
      format: "int21-studio-run",
      version: 1,
      model: this.name,
      quantize: this.quantized,
      lrec: this.lrecSettings,
      finetune: { ...ftMeta, dataChars: ft.settings.data.length },
      step: ft.step,
      history: {
        lrec: this.lrecHistory.map((h) => ({ step: h.step, klPerToken: h.klPerToken, loss: h.loss })),
        finetune: this.ftHistory,
      },
      optimizer: opt.meta,
      adaptersMeta: ad.meta,
      savedAt: new Date().toISOString(),
    };
    return serializeSafetensors(tensors, { run: JSON.stringify(meta), data: ft.settings.data });
  }

  /**
   * Restores a saved run onto the loaded model: re-quantizes with the saved settings (RTN and GPTQ are
   * deterministic), stacks the saved adapters, restores AdamW and the step. `quantize` gets the settings
   * (the calibration text travels in them) so the caller reports progress.
   */
  async resumeRun(bytes: Uint8Array, emit: Emit): Promise<{ meta: SavedRun; summary: Summary }> {
    const { meta, data, tensors } = parseSavedRun(bytes);
    const { teacher } = this.need();
    if (meta.model !== this.name)
      throw new Error(
        `the saved run was made on ${meta.model}, the open model is ${this.name}: open ${meta.model} first`,
      );
    if (meta.quantize) this.quantize(meta.quantize, emit);
    else
      throw new Error(
        "the saved run was made on an opened int21 checkpoint: such runs cannot be resumed yet",
      );
    const student = this.student!;
    this.lora = new LoRAModel(llamaModules(student));
    const adTensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    const optTensors: Record<string, Float32Array> = {};
    for (const [k, t] of Object.entries(tensors)) {
      if (k.startsWith("adapter/")) adTensors[k.slice(8)] = t;
      else if (k.startsWith("optimizer/")) optTensors[k.slice(10)] = t.data;
    }
    adaptersFromCheckpoint(this.lora, { tensors: adTensors, meta: meta.adaptersMeta }, "saved run");
    setLlamaModules(student, this.lora.modules);
    if (!this.lora.adapterNames().includes(FT_NAME))
      throw new Error("saved run: no fine-tuning adapter in it");
    const settings: FinetuneSettings = { ...meta.finetune, data };
    const tokenizer = this.tokenizer!;
    const examples = trainingExamples(
      parseTrainingData(data, settings.dataName),
      tokenizer,
      settings.seqLen,
      settings.dataName,
      this.chatRenderer(settings.dataName),
    );
    const optimizer = new AdamW(loraParameters(this.lora, FT_NAME), { lr: settings.lr, weightDecay: 0 });
    optimizer.loadStateDict({ meta: meta.optimizer, tensors: optTensors });
    this.ft = { settings, optimizer, examples, step: meta.step };
    this.lrecSettings = meta.lrec;
    this.ftHistory = (meta.history?.finetune ?? []).filter((h) => h.step <= meta.step);
    this.lrecHistory = (meta.history?.lrec ?? []).map((h) => ({
      ...h,
      kl: Number.NaN,
      ce: Number.NaN,
      lr: Number.NaN,
      skipped: false,
    }));
    void teacher;
    return { meta, summary: this.summary() };
  }

  /** Perplexity of every configuration there is: float teacher, packed student, + LREC, + LREC + LoRA. */
  evaluate(text: string, ctx: number, emit: Emit): EvalPoint[] {
    const { teacher, tokenizer } = this.need();
    const tokens = tokenizer.encode(text, { bos: tokenizer.addBos ?? true });
    const c = Math.max(2, Math.min(ctx, teacher.config.seqLen));
    if (tokens.length < 2) throw new Error(`evaluation text: ${tokens.length} tokens, need at least 2`);
    const configs: [string, LlamaWeights][] = [["float32 teacher", teacher]];
    if (this.student) {
      const qName = this.studentLabel()!;
      configs.push([qName, baseWeightsOf(this.student)]);
      const names = this.lora?.adapterNames() ?? [];
      if (names.includes(LREC_NAME)) {
        if (names.includes(FT_NAME))
          configs.push([`${qName} + LREC`, this.withOnly(this.student, LREC_NAME)]);
        else configs.push([`${qName} + LREC`, this.student]);
      }
      if (names.includes(FT_NAME))
        configs.push([`${qName}${names.includes(LREC_NAME) ? " + LREC" : ""} + LoRA`, this.student]);
    }
    const tick = stageClock("eval", configs.length, emit);
    const out: EvalPoint[] = [];
    configs.forEach(([label, w], i) => {
      tick(i, label);
      const r = evaluateNll(w, tokens, { ctx: c });
      out.push({ label, perplexity: r.perplexity, meanNll: r.meanNll, tokens: r.tokens });
    });
    tick(configs.length, "done");
    this.evals = out;
    return out;
  }

  /** A shallow copy of `w` whose LoRA layers run only adapter `name` (for evaluating a stage of the stack). */
  private withOnly(w: LlamaWeights, name: string): LlamaWeights {
    const base = baseWeightsOf(w);
    const model = new LoRAModel(llamaModules(base));
    const ad = adaptersToCheckpoint(this.lora!);
    const meta = ad.meta as { adapters: { name: string }[] };
    const keep = { ...meta, adapters: meta.adapters.filter((a) => a.name === name) };
    const tensors = Object.fromEntries(Object.entries(ad.tensors).filter(([k]) => k.startsWith(`${name}/`)));
    adaptersFromCheckpoint(model, { tensors, meta: keep }, "stage");
    setLlamaModules(base, model.modules);
    return base;
  }

  /** The tokenizer's chat template as lora's ChatRenderer (chat training records), or undefined without one. */
  private chatRenderer(file: string): ChatRenderer | undefined {
    const tok = this.tokenizer;
    if (!(tok instanceof HfTokenizer) || tok.chatTemplate === undefined) return undefined;
    const template = tok.chatTemplate;
    return (messages, addGenerationPrompt) =>
      renderChatTemplate(template, messages, {
        tokens: tok.templateTokens,
        addGenerationPrompt,
        source: `${file}: chat template`,
      });
  }

  /** Generates with the active model (text prompt, or token ids given as `promptIds`). */
  generate(
    opts: {
      prompt: string;
      promptIds?: number[];
      /** Render `prompt` as one user turn with the model's chat template and stop at EOS. */
      chat?: boolean;
      steps: number;
      temperature: number;
      seed: number;
    },
    onToken?: (piece: string) => void,
  ) {
    const { tokenizer } = this.need();
    let promptIds = opts.promptIds;
    let rendered: string | undefined;
    if (opts.chat && !promptIds) {
      if (tokenizer.chatTemplate === undefined)
        throw new Error(
          `${this.name}: the tokenizer has no chat template (chat_template.jinja or tokenizer_config.json's chat_template): untick Chat`,
        );
      rendered = renderChatTemplate(tokenizer.chatTemplate, [{ role: "user", content: opts.prompt }], {
        tokens: tokenizer instanceof HfTokenizer ? tokenizer.templateTokens : {},
        source: `${this.name}: chat template`,
      });
      promptIds = tokenizer.encode(rendered); // the template decides BOS, as in transformers
    }
    const r = generate(this.active, tokenizer, {
      ...(promptIds ? { promptIds } : { prompt: opts.prompt }),
      ...(opts.chat ? { stopIds: [tokenizer.eosId] } : {}),
      steps: opts.steps,
      temperature: opts.temperature,
      topP: 0.9,
      seed: opts.seed,
      ...(onToken ? { onToken } : {}),
    });
    return { ...r, ...(rendered !== undefined ? { rendered } : {}) };
  }

  /** The files to download, as bytes (the PEFT adapter's: {@link exportPeftFile}). */
  exportFile(
    what: "checkpoint" | "gguf" | "lora-gguf",
    opts: { ggufType?: GgufModelType; adapter?: string } = {},
  ): { name: string; bytes: Uint8Array } {
    const { tokenizer } = this.need();
    const w = this.active;
    const stem = (this.name ?? "model").replace(/\.[a-z]+$/i, "").replace(/[^A-Za-z0-9._-]+/g, "_");
    const tag = this.quantized ? `-${formatName(this.quantized)}` : this.studentFile ? "" : "-f32";
    if (what === "checkpoint") {
      const adapters = this.lora?.adapterNames().length ? adaptersToCheckpoint(this.lora) : undefined;
      return {
        name: `${stem}${tag}.int21.safetensors`,
        bytes: serializeInt21Checkpoint(baseWeightsOf(w), adapters ? { adapters } : {}),
      };
    }
    if (what === "gguf") {
      const { metadata, tensors } = ggufModelTensors(baseWeightsOf(w), {
        type: opts.ggufType ?? "F32",
        name: stem,
        ...(tokenizer instanceof Llama2cTokenizer ? { tokenizer } : {}),
      });
      if (tokenizer instanceof HfTokenizer)
        Object.assign(metadata, hfTokenizerToGguf(tokenizer, w.config.vocabSize));
      return { name: `${stem}${tag}.gguf`, bytes: serializeGguf({ metadata, tensors }) };
    }
    const adapter = opts.adapter ?? this.defaultAdapter();
    return {
      name: `${stem}${tag}-${adapter}-lora.gguf`,
      bytes: serializeGgufLora(this.lora!, w.config, { adapter }).bytes,
    };
  }

  /**
   * A file of the PEFT adapter for the Hugging Face model (`adapter_config.json` or `adapter_model.safetensors`):
   * written by model-llama's `saveLlamaAdapter` — q/k `lora_B` rows permuted to Hugging Face's layout, and on
   * Phi-3 one LoRA per fused `qkv_proj` / `gate_up_proj` — into the scratch folder, read back and removed.
   */
  async exportPeftFile(
    what: "peft-config" | "peft-weights",
    opts: { adapter?: string } = {},
  ): Promise<{ name: string; bytes: Uint8Array }> {
    const w = this.active;
    if (!this.lora) throw new Error("no adapter yet: run LREC or fine-tune first");
    const adapter = opts.adapter ?? this.defaultAdapter();
    const root = this.opts.scratchDir;
    if (root === undefined)
      throw new Error("PEFT export: this studio has no scratch folder (opts.scratchDir)");
    const { readFile, rm } = await import("node:fs/promises");
    const dir = `${root}/peft-${++this.peftRuns}`;
    await saveLlamaAdapter(dir, this.lora, w, { name: adapter });
    const name = what === "peft-config" ? "adapter_config.json" : "adapter_model.safetensors";
    const files = ["adapter_config.json", "adapter_model.safetensors"];
    try {
      return { name, bytes: new Uint8Array(await readFile(`${dir}/${name}`)) };
    } finally {
      for (const f of files) await rm(`${dir}/${f}`, { force: true });
    }
  }

  private defaultAdapter(): string {
    const names = this.lora?.adapterNames() ?? [];
    if (names.includes(FT_NAME)) return FT_NAME;
    if (names.includes(LREC_NAME)) return LREC_NAME;
    throw new Error("no adapter yet: run LREC or fine-tune first");
  }

  /** `int2-g64-asym-f16 GPTQ`, or the opened checkpoint's name; null without a student. */
  studentLabel(): string | null {
    if (this.quantized) return `${formatName(this.quantized)} ${this.quantized.method.toUpperCase()}`;
    if (this.studentFile) return `${this.studentFile} (int21 checkpoint)`;
    return null;
  }

  /**
   * Opens an int21 checkpoint (as this app or `int21 quantize` writes it) as the student of the loaded float
   * teacher, with the adapters it carries (LREC, fine-tuning); its shape must be the teacher's. `src` is the
   * file's bytes or a path the build's `fs/promises` opens (a picked file, read in slices).
   */
  async loadStudent(src: Uint8Array | string, name: string): Promise<Summary> {
    const { teacher } = this.need();
    const ck =
      typeof src === "string"
        ? await loadInt21Checkpoint(src, { backend: this.backend })
        : await loadInt21CheckpointBytes(src, { backend: this.backend, name });
    const a = teacher.config;
    const b = ck.weights.config;
    for (const k of ["dim", "hiddenDim", "nLayers", "nHeads", "nKvHeads", "vocabSize"] as const)
      if (a[k] !== b[k])
        throw new Error(
          `${name}: ${k} ${b[k]}, but the open model ${this.name} has ${a[k]}: open the checkpoint's float model first`,
        );
    const student = ck.weights;
    let lora: LoRAModel | null = null;
    if (ck.adapters && Object.keys(ck.adapters.tensors).length > 0) {
      lora = new LoRAModel(llamaModules(student));
      adaptersFromCheckpoint(lora, ck.adapters, name);
      setLlamaModules(student, lora.modules);
    }
    this.student = student;
    this.quantized = null;
    this.studentFile = name;
    this.lora = lora;
    this.ft = null;
    this.lrecSettings = null;
    this.lrecHistory = [];
    this.ftHistory = [];
    return this.summary();
  }

  /** What the page shows. */
  summary(): Summary {
    const t = this.teacher;
    const c = t?.config;
    return {
      model: this.name,
      kind: this.kind,
      config: c
        ? {
            family: c.family ?? "llama",
            dim: c.dim,
            hiddenDim: c.hiddenDim,
            layers: c.nLayers,
            heads: c.nHeads,
            kvHeads: c.nKvHeads,
            vocab: c.vocabSize,
            seqLen: c.seqLen,
          }
        : null,
      teacherBytes: t ? linearBytes(t) : 0,
      studentBytes: this.student ? linearBytes(baseWeightsOf(this.student)) : 0,
      student: this.studentLabel(),
      lrecSteps: this.lrecHistory.length,
      ftSteps: this.ft?.step ?? 0,
      ftTotal: this.ft?.settings.steps ?? 0,
      adapters: this.lora?.adapterNames() ?? [],
    };
  }

  /** autograd's live / peak bytes (activations, gradients, optimizer state). */
  static ledger(): { liveBytes: number; peakBytes: number } {
    const m = memory();
    return { liveBytes: m.liveBytes, peakBytes: m.peakBytes };
  }
}

/** Reads a state written by {@link Studio.serializeRun}; throws naming what is wrong. */
export function parseSavedRun(bytes: Uint8Array): {
  meta: SavedRun;
  data: string;
  tensors: Record<string, { shape: number[]; data: Float32Array }>;
} {
  if (bytes.byteLength < 8) throw new Error(`saved run: ${bytes.byteLength} bytes, not a safetensors file`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  if (n <= 0 || 8 + n > bytes.byteLength)
    throw new Error(`saved run: header of ${n} bytes does not fit the file`);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  const md = header.__metadata__ as Record<string, string> | undefined;
  if (!md?.run || md.data === undefined) throw new Error("saved run: no run metadata");
  const meta = JSON.parse(md.run) as SavedRun;
  if (meta.format !== "int21-studio-run" || meta.version !== 1)
    throw new Error(`saved run: format ${meta.format} v${meta.version}, expected int21-studio-run v1`);
  const base = 8 + n;
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [k, v] of Object.entries(header)) {
    if (k === "__metadata__") continue;
    const t = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (t.dtype !== "F32") throw new Error(`saved run: tensor ${k} is ${t.dtype}, expected F32`);
    const [a, b] = t.data_offsets;
    if (b > bytes.byteLength - base || a > b || (b - a) % 4)
      throw new Error(`saved run: tensor ${k} is out of bounds`);
    const raw = bytes.slice(base + a, base + b);
    tensors[k] = { shape: t.shape, data: new Float32Array(raw.buffer, raw.byteOffset, (b - a) / 4) };
  }
  return { meta, data: md.data, tensors };
}
