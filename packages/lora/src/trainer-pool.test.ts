// The Trainer runs each step in an autograd BufferPool (its default): the same run as without one.
import { AdamW, BufferPool, setBackend } from "@int21/autograd";
import { createReferenceBackend } from "@int21/quant-kernels";
import { describe, expect, it } from "vitest";
import { splitExamples, textDataset } from "./dataset";
import { loraParameters } from "./lora-op";
import { charTokenizer } from "./testing/char-tokenizer";
import { bigramLoRA } from "./testing/bigram";
import { Trainer } from "./trainer";

const backend = createReferenceBackend();
setBackend(backend);
const V = 131;
const tok = charTokenizer();
// examples of different lengths: batches of different shapes
const text = "the cat sat on the mat. a dog sat on a log. ".repeat(8);
const { train } = splitExamples(textDataset(text, tok, { seqLen: 16 }), 4, 1);

/** A LoRA bigram model (one-hot → frozen INT4 [V × V] + adapter, dropout 0.1) trained `steps` steps. */
function run(bufferPool: BufferPool | false | undefined) {
  const { model, loss } = bigramLoRA(backend, V);
  const params = loraParameters(model);
  const t = new Trainer({
    optimizer: new AdamW(params, { lr: 0.05 }),
    loss,
    train,
    steps: 6,
    batchSize: 2,
    gradAccum: 2,
    beforeMicroBatch: (m) => model.setDropoutStep(m),
    seed: 11,
    ...(bufferPool !== undefined ? { bufferPool } : {}),
  });
  const losses: number[] = [];
  for (let s = 0; s < 6; s++) losses.push(t.trainStep().loss);
  return { losses, weights: params.map((p) => p.toFloat32Array()) };
}

describe("Trainer with a BufferPool", () => {
  it("gives the same losses and adapter weights with its default pool, a given pool or none", () => {
    const none = run(false);
    const byDefault = run(undefined);
    const pool = new BufferPool();
    const given = run(pool);
    expect(none.losses[5]).toBeLessThan(none.losses[0]);
    expect(byDefault).toEqual(none);
    expect(given).toEqual(none);
    const s = pool.stats();
    expect(s.reused).toBeGreaterThan(s.taken / 2); // the steps ran on reused buffers
  });
});
