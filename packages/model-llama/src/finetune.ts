// EMEF fine-tuning of a LLaMA model: LoRA adapters (@int21/lora) on a frozen, possibly packed, base,
// trained through `trainForward` (per-layer checkpointing) with the lora package's Trainer.
import { Adam, AdamW, crossEntropy, type Tensor } from "@int21/autograd";
import {
  type Batch,
  type Example,
  type AdapterRecord,
  attachPeftAdapter,
  type LoRAConfig,
  LoRALinear,
  LoRAModel,
  linearCrossEntropy,
  linearForward,
  loraParameters,
  lossChartSvg,
  PEFT_CONFIG_FILE,
  PEFT_WEIGHTS_FILE,
  type PeftAttachOptions,
  type PeftSaveOptions,
  peftConfig,
  type RunDifference,
  type RunIdentity,
  peftTensors,
  readPeftAdapter,
  Trainer,
  type TrainerOptions,
  type TrainResult,
} from "@int21/lora";
import type { Linear } from "@int21/quant-kernels";
import { writeFileAtomic, writeSafetensors } from "@int21/io";
import { headSize } from "./config";
import { permuteHfRows, unpermuteHfRows } from "./load-hf";
import { fusePhi3Adapter, splitPhi3Adapter } from "./phi3-adapter";
import { trainForward } from "./train-forward";
import { LINEAR_NAMES, type LinearName, type LlamaWeights } from "./weights";

/**
 * The model's projections under their Hugging Face / PEFT module names:
 * `model.layers.{i}.self_attn.q_proj` … `model.layers.{i}.mlp.down_proj`, and `lm_head`.
 */
export function llamaModules(weights: LlamaWeights): Map<string, Linear> {
  const m = new Map<string, Linear>();
  weights.layers.forEach((L, i) => {
    for (const [short, hf] of Object.entries(LINEAR_NAMES))
      m.set(`model.layers.${i}.${hf}`, L[short as LinearName]);
  });
  m.set("lm_head", weights.classifier);
  return m;
}

/** Puts the layers of `modules` (as from {@link llamaModules}, possibly LoRA-wrapped) back into `weights`. */
export function setLlamaModules(weights: LlamaWeights, modules: ReadonlyMap<string, Linear>): void {
  weights.layers.forEach((L, i) => {
    for (const [short, hf] of Object.entries(LINEAR_NAMES)) {
      const l = modules.get(`model.layers.${i}.${hf}`);
      if (l !== undefined) L[short as LinearName] = l;
    }
  });
  const head = modules.get("lm_head");
  if (head !== undefined) weights.classifier = head;
}

/**
 * Adds a LoRA adapter to `weights` (in place: the targeted projections become `LoRALinear`s, which the
 * inference `forward`, `generate` and `trainForward` all use). Stack more with `model.addAdapter` +
 * {@link setLlamaModules}, or load PEFT adapters with `loadPeftAdapter(dir, model)` + `setLlamaModules`.
 */
export function addLlamaLoRA(weights: LlamaWeights, config: LoRAConfig): LoRAModel {
  const model = new LoRAModel(llamaModules(weights));
  model.addAdapter(config);
  setLlamaModules(weights, model.modules);
  return model;
}

/** Heads of a q_proj / k_proj module name (HF's q/k rows are permuted per head), else 0. */
function qkHeads(weights: LlamaWeights, module: string): number {
  if (module.endsWith(".self_attn.q_proj")) return weights.config.nHeads;
  if (module.endsWith(".self_attn.k_proj")) return weights.config.nKvHeads;
  return 0;
}

/**
 * Saves adapter `opts.name` of a LLaMA model as a PEFT adapter **for the Hugging Face model**: int21 keeps
 * q/k rows in llama2.c's interleaved-RoPE order, HF's `q_proj` / `k_proj` weights have their rows
 * permuted per head (`convert_llama_weights_to_hf`), so `lora_B` of q_proj / k_proj is permuted the
 * same way (A, whose columns are the hidden state, is unchanged). Load it back with {@link loadLlamaAdapter}.
 */
export async function saveLlamaAdapter(
  dir: string,
  model: LoRAModel,
  weights: LlamaWeights,
  opts: PeftSaveOptions = {},
): Promise<void> {
  const { mkdir } = await import("node:fs/promises");
  const { join } = await import("node:path");
  const hs = headSize(weights.config);
  const tensors = peftTensors(model, opts);
  for (const [key, t] of Object.entries(tensors)) {
    const m = /^base_model\.model\.(.+)\.lora_B\.weight$/.exec(key);
    const heads = m ? qkHeads(weights, m[1]) : 0;
    if (heads > 0) {
      const [rows, r] = t.shape;
      if (rows !== heads * hs)
        throw new Error(`saveLlamaAdapter: ${key} has ${rows} rows, expected ${heads}×${hs}`);
      tensors[key] = { ...t, data: permuteHfRows(t.data as Float32Array, heads, rows, r) };
    }
  }
  const config = peftConfig(model, opts);
  if (weights.config.family === "phi3") {
    // Hugging Face's Phi-3 has only the fused qkv_proj / gate_up_proj: write one LoRA per fused module
    const targets = new Map(
      model.record(opts.name ?? "default").targets.map((t) => [t.module, t.alpha / t.r]),
    );
    fusePhi3Adapter(weights, tensors, config, (module) => targets.get(module) ?? 1);
  }
  await mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, PEFT_WEIGHTS_FILE), tensors, { format: "pt" });
  await writeFileAtomic(join(dir, PEFT_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
}

/**
 * Loads a PEFT adapter trained on (or saved for) the Hugging Face LLaMA layout onto `weights`: reads and
 * validates it, un-permutes `lora_B` rows of q_proj / k_proj into int21's order, stacks it on the model
 * (frozen unless `trainable`) and puts the wrapped layers into `weights`. Returns the model and the record.
 */
export async function loadLlamaAdapter(
  dir: string,
  weights: LlamaWeights,
  opts: PeftAttachOptions = {},
): Promise<{ model: LoRAModel; record: AdapterRecord }> {
  const adapter = await readPeftAdapter(dir);
  if (weights.config.family === "phi3") splitPhi3Adapter(weights, adapter);
  const hs = headSize(weights.config);
  for (const [module, m] of adapter.modules) {
    const heads = qkHeads(weights, module);
    if (heads > 0 && m.outFeatures === heads * hs)
      m.loraB = unpermuteHfRows(m.loraB, heads, m.outFeatures, m.r);
  }
  const model = new LoRAModel(llamaModules(weights));
  const record = attachPeftAdapter(model, adapter, opts);
  setLlamaModules(weights, model.modules);
  return { model, record };
}

/** Options of {@link llamaLoss}. */
export interface LlamaLossOptions {
  /** Per-layer activation checkpointing. Default true. */
  checkpoint?: boolean;
  /**
   * Rows per chunk of the fused classifier + cross-entropy (`linearCrossEntropy`): the
   * `[B·T × vocab]` logits are never built whole. 0 builds the full logits. Default 128.
   * (A LoRA-wrapped classifier always builds full logits.)
   */
  chunk?: number;
}

/**
 * The training loss of a batch: mean next-token cross-entropy of the `trainForward` logits over the
 * trained targets (`-100` targets ignored). LoRA layers run their differentiable op (dropout when
 * training). The frozen classifier and the loss are fused and chunked (see {@link LlamaLossOptions.chunk}):
 * the `trainForward` hook returns the loss itself for the classifier, which is then trainForward's result.
 */
export function llamaLoss(weights: LlamaWeights, opts: LlamaLossOptions = {}) {
  const chunk = opts.chunk ?? 128;
  return (batch: Batch, info: { training: boolean }): Tensor => {
    let fused: Tensor | undefined;
    const out = trainForward(weights, batch.input, {
      batch: batch.batch,
      checkpoint: opts.checkpoint ?? true,
      linearOp: (lin, x, name) => {
        if (lin instanceof LoRALinear) return linearForward(lin, x, { training: info.training });
        // Gemma 2's final soft-cap comes after the classifier: the fused loss would skip it.
        if (name === "classifier" && chunk > 0 && weights.config.finalLogitSoftcap === undefined) {
          fused = linearCrossEntropy(x, lin, batch.target, { chunk });
          return fused;
        }
        return undefined;
      },
    });
    return fused ?? crossEntropy(out, batch.target);
  };
}

/** Options of {@link finetune}. */
export interface FinetuneOptions
  extends Omit<
    TrainerOptions,
    "optimizer" | "loss" | "train" | "heldOut" | "beforeMicroBatch" | "onCheckpoint"
  > {
  /** The adapter to train (e.g. `{ targetModules: ["q_proj", "v_proj"], r: 8, alpha: 16 }`). */
  lora: LoRAConfig;
  /** Peak learning rate (also `schedule.lr` when a schedule is given without one). Default 1e-3. */
  lr?: number;
  /** `adamw` (decoupled decay, default) or `adam` (L2 decay folded into the gradient). */
  optimizer?: "adam" | "adamw";
  weightDecay?: number;
  /** Per-layer activation checkpointing. Default true. */
  checkpointLayers?: boolean;
  /** Save the adapter in PEFT format (Hugging Face q/k layout, see {@link saveLlamaAdapter}) here at every checkpoint and at the end. */
  adapterDir?: string;
  /** Write the loss curves (SVG) here at the end. */
  lossChart?: string;
  /** Resume from `checkpointDir` when it holds a checkpoint. Default true. */
  resume?: boolean;
  /**
   * Continue from a checkpoint of a different run (the Trainer's `resume(dir, { force: true })`; the
   * differences are in {@link FinetuneResult.resumedDespite}). Default false: such a checkpoint is
   * refused with a `RunMismatchError` listing each difference.
   */
  forceResume?: boolean;
  /** Called after a checkpoint was resumed, before training: its step and the differences forced past. */
  onResume?: (step: number, differences: readonly RunDifference[]) => void;
  /**
   * The LoRA view of `weights` when adapters are already on it (an LREC correction, an earlier task):
   * the new adapter is added to it. Adapters already on the model are frozen either way.
   */
  existing?: LoRAModel;
  /**
   * Stop after this many steps in total, as a killed run would (no extra checkpoint is written: a rerun
   * with the same options resumes from the last `checkpointEvery` checkpoint).
   */
  stopAfter?: number;
}

/** What {@link finetune} returns. */
export interface FinetuneResult extends TrainResult {
  /** The adapters on the model (the trained one is `opts.lora.name ?? "default"`). */
  model: LoRAModel;
  trainer: Trainer;
  /** Whether the run continued from a checkpoint. */
  resumed: boolean;
  /** The step the run resumed from (0 for a fresh run). */
  resumedFrom: number;
  /**
   * True when the checkpoint already held every step of this very run: nothing was trained, and the
   * adapter and loss chart were not written again (the adapter only if missing from `adapterDir`).
   */
  alreadyFinished: boolean;
  /** The differences a `forceResume` continued despite (empty otherwise). */
  resumedDespite: readonly RunDifference[];
}

/** The identity fields of a LoRA adapter configuration (in every {@link finetune} checkpoint). */
function loraIdentity(c: LoRAConfig): RunIdentity {
  return {
    adapterName: c.name ?? "default",
    rank: c.r,
    alpha: c.alpha ?? c.r,
    targets: [...c.targetModules],
    dropout: c.dropout ?? 0,
    adapterSeed: c.seed ?? 0,
  };
}

/**
 * EMEF: trains a LoRA adapter on `weights` (frozen float or packed base; adapters are float32) on token
 * examples (`textDataset` / `alpacaExamples` from @int21/lora), with per-layer checkpointing, Adam/AdamW,
 * accumulation, schedule, periodic evaluation and checkpoint/resume. The adapter stays on `weights`;
 * adapters already on it stay frozen. Checkpoints carry the run's identity (`opts.identity`, the
 * adapter's rank, alpha, targets, name, dropout and seed, and the Trainer's own fields): a checkpoint of
 * a different run is refused unless `forceResume`; one that already holds every step is reported
 * (`alreadyFinished`) and nothing is trained or written.
 */
export async function finetune(
  weights: LlamaWeights,
  data: { train: readonly Example[]; heldOut?: readonly Example[] },
  opts: FinetuneOptions,
): Promise<FinetuneResult> {
  for (const e of [...data.train, ...(data.heldOut ?? [])]) {
    if (e.input.length > weights.config.seqLen) {
      throw new Error(
        `finetune: an example has ${e.input.length} tokens, more than the model's seqLen ${weights.config.seqLen}`,
      );
    }
  }
  const model = opts.existing ?? new LoRAModel(llamaModules(weights));
  for (const n of model.adapterNames()) model.setTrainable(n, false);
  model.addAdapter(opts.lora);
  setLlamaModules(weights, model.modules);
  const name = opts.lora.name ?? "default";
  const params = loraParameters(model, name);
  const lr = opts.lr ?? opts.schedule?.lr ?? 1e-3;
  const optimizer =
    opts.optimizer === "adam"
      ? new Adam(params, { lr, weightDecay: opts.weightDecay ?? 0 })
      : new AdamW(params, { lr, weightDecay: opts.weightDecay ?? 0 });
  const {
    lora: _l,
    lr: _r,
    optimizer: _o,
    weightDecay: _w,
    checkpointLayers,
    adapterDir,
    lossChart,
    resume,
    stopAfter,
    forceResume,
    onResume,
    existing: _e,
    identity,
    ...rest
  } = opts;
  const trainer = new Trainer({
    ...rest,
    ...(opts.schedule ? { schedule: { ...opts.schedule, lr: opts.schedule.lr ?? lr } } : {}),
    optimizer,
    loss: llamaLoss(weights, { checkpoint: checkpointLayers ?? true }),
    train: data.train,
    ...(data.heldOut ? { heldOut: data.heldOut } : {}),
    beforeMicroBatch: (micro) => model.setDropoutStep(micro),
    ...(adapterDir ? { onCheckpoint: () => saveLlamaAdapter(adapterDir, model, weights, { name }) } : {}),
    identity: { ...loraIdentity(opts.lora), ...identity },
  });
  let resumed = false;
  if (opts.checkpointDir && resume !== false)
    resumed = await trainer.resume(opts.checkpointDir, { force: forceResume === true });
  const resumedFrom = resumed ? trainer.step : 0;
  if (resumed) onResume?.(resumedFrom, trainer.resumedDespite);
  const alreadyFinished = resumed && trainer.finished && trainer.resumedDespite.length === 0;
  const result = await trainer.run(stopAfter !== undefined ? { until: stopAfter } : {});
  const out: FinetuneResult = {
    ...result,
    model,
    trainer,
    resumed,
    resumedFrom,
    alreadyFinished,
    resumedDespite: trainer.resumedDespite,
  };
  if (adapterDir) {
    const { existsSync } = await import("node:fs");
    const { join } = await import("node:path");
    const missing = ![PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE].every((f) => existsSync(join(adapterDir, f)));
    if (!alreadyFinished || missing) await saveLlamaAdapter(adapterDir, model, weights, { name });
  }
  if (alreadyFinished) return out;
  if (lossChart) {
    await writeFileAtomic(
      lossChart,
      lossChartSvg(result.history, `EMEF fine-tuning (${result.steps} steps)`),
    );
  }
  return out;
}
