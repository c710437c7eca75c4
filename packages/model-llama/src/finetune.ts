// EMEF fine-tuning of a LLaMA model: LoRA adapters (@int21/lora) on a frozen, possibly packed, base,
// trained through `trainForward` (per-layer checkpointing) with the lora package's Trainer.
import { Adam, AdamW, crossEntropy, type Tensor } from "@int21/autograd";
import {
  type Batch,
  type Example,
  type LoRAConfig,
  LoRALinear,
  LoRAModel,
  linearCrossEntropy,
  linearForward,
  loraParameters,
  lossChartSvg,
  type RunDifference,
  type RunIdentity,
  Trainer,
  type TrainerOptions,
  type TrainResult,
} from "@int21/lora";
import type { Linear } from "@int21/quant-kernels";
import { writeFileAtomic } from "@int21/io";
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

/**
 * Where {@link finetune} keeps its adapter: the core trains, the sink writes (files, memory, a network).
 */
export interface AdapterSink {
  /** Saves adapter `name` of `model` (called at every checkpoint and at the end of a run). */
  save(model: LoRAModel, name: string): Promise<void>;
  /** Whether a saved adapter is already there: a run found already finished saves it again only when not. */
  has(): Promise<boolean>;
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
  /**
   * Where the trained adapter is saved, at every checkpoint and at the end (`peftAdapterSink(dir, weights)`
   * of `@int21/loaders` writes a PEFT folder in Hugging Face's q/k layout).
   */
  adapterSink?: AdapterSink;
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
   * adapter and loss chart were not written again (the adapter only if `adapterSink` has none).
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
    adapterSink,
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
    ...(adapterSink ? { onCheckpoint: () => adapterSink.save(model, name) } : {}),
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
  if (adapterSink && (!alreadyFinished || !(await adapterSink.has()))) await adapterSink.save(model, name);
  if (alreadyFinished) return out;
  if (lossChart) {
    await writeFileAtomic(
      lossChart,
      lossChartSvg(result.history, `EMEF fine-tuning (${result.steps} steps)`),
    );
  }
  return out;
}
