// EMEF training: LoRA adapters on a frozen (packed or float) LLaMA, trained with the lora package's Trainer.
import { AdamW, crossEntropy } from "@int21/autograd";
import {
  type DivergenceOptions,
  type Example,
  type LoRAConfig,
  type LoRAModel,
  type Progress,
  type RunDifference,
  type RunIdentity,
  Trainer,
  type TrainResult,
  loraParameters,
  PEFT_CONFIG_FILE,
  PEFT_WEIGHTS_FILE,
} from "@int21/lora";
import { type LlamaWeights, saveLlamaAdapter, setLlamaModules, trainForward } from "@int21/model-llama";
import { loraModelOf } from "./model-loading";

/** Options of {@link trainLoRA}. */
export interface TrainLoRAOptions {
  lora: LoRAConfig;
  steps: number;
  lr: number;
  batchSize?: number;
  gradAccum?: number;
  warmupSteps?: number;
  evalEvery?: number;
  seed?: number;
  /**
   * Trainer checkpoints (optimizer state, step, run identity) go here; an existing one of the same run
   * is resumed, one of a different run is refused with lora's `RunMismatchError` (each difference
   * listed) unless `forceResume`.
   */
  checkpointDir?: string;
  checkpointEvery?: number;
  /** The adapter is saved here in PEFT format (Hugging Face q/k row order) at each checkpoint and at the end. */
  adapterDir?: string;
  onProgress?: (p: Progress) => void;
  /** When the run counts as diverged (the Trainer's `divergence`; default 1.5 × the running minimum for 20 steps). */
  divergence?: DivergenceOptions;
  /** An existing LoRA view of `weights` (adapters already attached) to add the new adapter to. */
  existing?: LoRAModel;
  /**
   * What else identifies the run (content hashes of the base model and the data file, `--bits`,
   * `--seq`, …). The adapter's rank, alpha, targets, name, dropout and init seed are added here; the
   * Trainer adds the rest (steps, lr and schedule, batch, seed, the examples' hashes, …).
   */
  identity?: RunIdentity;
  /** Continue from a checkpoint of a different run (see {@link TrainLoRAResult.resumedDespite}). */
  forceResume?: boolean;
  /** Called after a checkpoint was resumed, before training: its step and the differences forced past. */
  onResume?: (step: number, differences: readonly RunDifference[]) => void;
}

/** What {@link trainLoRA} returns. */
export interface TrainLoRAResult extends TrainResult {
  model: LoRAModel;
  /** The step the run resumed from (0 for a fresh run). */
  resumedFrom: number;
  /**
   * True when the checkpoint already held every step of this very run: nothing was trained, and the
   * adapter was not written again (unless it was missing from `adapterDir`).
   */
  alreadyFinished: boolean;
  /** The differences a `forceResume` continued despite (empty otherwise). */
  resumedDespite: readonly RunDifference[];
}

/** The identity fields of a LoRA adapter configuration. */
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
 * Adds adapter `opts.lora` to `weights` (in place) and trains it: next-token cross-entropy of
 * `trainForward` (per-layer activation checkpointing; packed weights stay frozen and pass only input
 * gradients), AdamW, cosine schedule with warmup, optional resume from `checkpointDir`.
 */
export async function trainLoRA(
  weights: LlamaWeights,
  data: { train: readonly Example[]; heldOut?: readonly Example[] },
  opts: TrainLoRAOptions,
): Promise<TrainLoRAResult> {
  for (const e of [...data.train, ...(data.heldOut ?? [])])
    if (e.input.length > weights.config.seqLen)
      throw new Error(
        `an example has ${e.input.length} tokens, more than the model's seqLen ${weights.config.seqLen}`,
      );
  const model = loraModelOf(weights, opts.existing);
  // adapters already on the model (an LREC correction, an earlier task) stay frozen
  for (const n of model.adapterNames()) model.setTrainable(n, false);
  model.addAdapter(opts.lora);
  setLlamaModules(weights, model.modules);
  const name = opts.lora.name ?? "default";
  const optimizer = new AdamW(loraParameters(model, name), { lr: opts.lr, weightDecay: 0 });
  const trainer = new Trainer({
    optimizer,
    loss: (batch, info) =>
      crossEntropy(
        trainForward(weights, batch.input, { batch: batch.batch, checkpoint: true, training: info.training }),
        batch.target,
      ),
    train: data.train,
    ...(data.heldOut && data.heldOut.length > 0 ? { heldOut: data.heldOut } : {}),
    steps: opts.steps,
    batchSize: opts.batchSize ?? 4,
    gradAccum: opts.gradAccum ?? 1,
    schedule: {
      lr: opts.lr,
      warmupSteps: opts.warmupSteps ?? Math.min(10, Math.floor(opts.steps / 10)),
      kind: "cosine",
    },
    ...(opts.evalEvery !== undefined ? { evalEvery: opts.evalEvery } : {}),
    seed: opts.seed ?? 0,
    ...(opts.checkpointDir
      ? { checkpointDir: opts.checkpointDir, checkpointEvery: opts.checkpointEvery ?? 50 }
      : {}),
    ...(opts.adapterDir
      ? { onCheckpoint: () => saveLlamaAdapter(opts.adapterDir as string, model, weights, { name }) }
      : {}),
    beforeMicroBatch: (micro) => model.setDropoutStep(micro),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    ...(opts.divergence ? { divergence: opts.divergence } : {}),
    identity: { ...loraIdentity(opts.lora), ...opts.identity },
  });
  let resumedFrom = 0;
  if (opts.checkpointDir && (await trainer.resume(opts.checkpointDir, { force: opts.forceResume === true })))
    resumedFrom = trainer.step;
  if (resumedFrom > 0) opts.onResume?.(resumedFrom, trainer.resumedDespite);
  const alreadyFinished = resumedFrom > 0 && trainer.finished && trainer.resumedDespite.length === 0;
  const result = await trainer.run();
  if (opts.adapterDir) {
    const { existsSync } = await import("node:fs");
    const { join } = await import("node:path");
    const missing = ![PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE].every((f) =>
      existsSync(join(opts.adapterDir as string, f)),
    );
    if (!alreadyFinished || missing) await saveLlamaAdapter(opts.adapterDir, model, weights, { name });
  }
  return { ...result, model, resumedFrom, alreadyFinished, resumedDespite: trainer.resumedDespite };
}
