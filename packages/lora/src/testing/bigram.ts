// Test fixture: a LoRA bigram model — one-hot(token) → frozen INT4 [V × V] "lm_head" with an adapter (r 4, dropout
// 0.1) — and its cross-entropy loss over a `Batch`, as the Trainer's tests train it.
import { crossEntropy, type Tensor, tensor } from "@int21/autograd";
import { type Backend, createQuantLinear, rtnQuantize } from "@int21/quant-kernels";
import type { Batch } from "../dataset";
import type { LoRALinear } from "../lora-linear";
import { linearForward } from "../lora-op";
import { LoRAModel } from "../lora-model";
import { randomArray } from "./dense-linear";

/** The bigram model over a `V`-token vocabulary on `backend`: its LoRAModel, the adapted layer and the loss. */
export function bigramLoRA(backend: Backend, V: number) {
  const base = createQuantLinear({
    q: rtnQuantize(randomArray(V * V, 3, 0.5), V, V, "int4-g32-asym-f16"),
    backend,
  });
  const modules = new Map([["lm_head", base as never]]);
  const model = new LoRAModel(modules);
  model.addAdapter({ targetModules: ["lm_head"], r: 4, alpha: 8, dropout: 0.1, seed: 5 });
  const layer = modules.get("lm_head") as unknown as LoRALinear;
  const loss = (b: Batch, info: { training: boolean }): Tensor => {
    const n = b.batch * b.seqLen;
    const x = new Float32Array(n * V);
    for (let i = 0; i < n; i++) x[i * V + b.input[i]] = 1;
    return crossEntropy(linearForward(layer, tensor(x, [n, V]), { training: info.training }), b.target);
  };
  return { model, layer, loss };
}
