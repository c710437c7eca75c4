// EMEF training: LoRA adapters on a frozen (packed or float) LLaMA, trained with the lora package's Trainer.
import { AdamW, crossEntropy } from "@int21/autograd";
import {
  type Example,
  type LoRAConfig,
  type LoRAModel,
  type Progress,
  Trainer,
  type TrainResult,
  loraParameters,
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
  /** Trainer checkpoints (optimizer state, step) go here; an existing one is resumed. */
  checkpointDir?: string;
  checkpointEvery?: number;
  /** The adapter is saved here in PEFT format (Hugging Face q/k row order) at each checkpoint and at the end. */
  adapterDir?: string;
  onProgress?: (p: Progress) => void;
  /** An existing LoRA view of `weights` (adapters already attached) to add the new adapter to. */
  existing?: LoRAModel;
}

/** What {@link trainLoRA} returns. */
export interface TrainLoRAResult extends TrainResult {
  model: LoRAModel;
  /** The step the run resumed from (0 for a fresh run). */
  resumedFrom: number;
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
  });
  let resumedFrom = 0;
  if (opts.checkpointDir && (await trainer.resume(opts.checkpointDir))) resumedFrom = trainer.step;
  const result = await trainer.run();
  if (opts.adapterDir) await saveLlamaAdapter(opts.adapterDir, model, weights, { name });
  return { ...result, model, resumedFrom };
}
