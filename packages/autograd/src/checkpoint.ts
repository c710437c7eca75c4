// Gradient checkpointing: run a block without keeping its inner activations; recompute them in backward.
import type { Backend } from "@int21/quant-kernels";
import { currentBackend, withBackend } from "./backend";
import {
  backward,
  detach,
  enableGrad,
  isGradEnabled,
  noGrad,
  OpContext,
  type OpDef,
  watchGrad,
} from "./engine";
import { type Tensor, tidy } from "./tensor";

type Block = (...inputs: Tensor[]) => Tensor;

/** The block and the backend set when it ran forward (its recomputation in backward runs on the same one). */
interface CheckpointAttrs {
  fn: Block;
  backend: Backend | null;
}

const checkpointOp: OpDef<CheckpointAttrs> = {
  name: "checkpoint",
  forward() {
    throw new Error("autograd: checkpoint: internal op, call checkpoint(fn, inputs)");
  },
  backward(ctx, gy, gradInputs, { fn, backend }) {
    // Recompute the block with a graph (on the forward's backend), back-propagate gy through it, then
    // hand input grads out.
    const onBackend = <T>(f: () => T): T => (backend === null ? f() : withBackend(backend, f));
    const grads = onBackend(() =>
      enableGrad(() =>
        tidy(() => {
          const xs = ctx.saved.map((t, i) => {
            const d = detach(t);
            d.requiresGrad = ctx.needsInputGrad[i];
            return d;
          });
          const y = fn(...xs);
          if (y.requiresGrad) backward(y, gy);
          return xs.map((x) => x.grad);
        }),
      ),
    );
    grads.forEach((g, i) => {
      const gx = gradInputs[i];
      if (g && gx) {
        const src = g.data;
        const dst = gx.data;
        for (let j = 0; j < src.length; j++) dst[j] += src[j];
      }
      g?.dispose();
    });
  },
};

/**
 * Runs `fn(...inputs)` (one block, e.g. a transformer layer) without keeping its inner activations:
 * forward runs without a graph and everything inside is released when it returns; only `inputs` are
 * kept. In backward the block is run again with a graph and back-propagated at once, so at most one
 * block's activations are live at a time. Parameters `fn` closes over get their gradients as usual.
 * `fn` must be deterministic (same output when recomputed); the recomputation runs on the backend that was
 * set when `checkpoint` ran. Without grad recording it is just `fn`.
 */
export function checkpoint(fn: Block, inputs: readonly Tensor[]): Tensor {
  if (!isGradEnabled()) return fn(...inputs);
  const { result: out, touched } = watchGrad(() => noGrad(() => tidy(() => fn(...inputs))));
  if (out.requiresGrad || inputs.includes(out)) {
    throw new Error(
      `autograd: checkpoint: the block returned an existing tensor (${out}); it must compute its output with ops`,
    );
  }
  if (!touched) return out; // nothing inside needs a gradient
  const backend = currentBackend();
  const ctx = new OpContext(
    backend,
    inputs.map((t) => t.requiresGrad),
    true,
  );
  ctx.save(...inputs);
  const attrs: CheckpointAttrs = { fn, backend };
  out.requiresGrad = true;
  out.node = { def: checkpointOp as OpDef<never>, inputs, ctx, attrs, output: out };
  return out;
}
