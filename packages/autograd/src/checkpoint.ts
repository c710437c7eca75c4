// Gradient checkpointing: run a block without keeping its inner activations; recompute them in backward.
import { getBackend } from "./backend";
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

const checkpointOp: OpDef<Block> = {
  name: "checkpoint",
  forward() {
    throw new Error("autograd: checkpoint: internal op, call checkpoint(fn, inputs)");
  },
  backward(ctx, gy, gradInputs, fn) {
    // Recompute the block with a graph, back-propagate gy through it, then hand input grads out.
    const grads = enableGrad(() =>
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
 * `fn` must be deterministic (same output when recomputed). Without grad recording it is just `fn`.
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
  const ctx = new OpContext(
    getBackend(),
    inputs.map((t) => t.requiresGrad),
    true,
  );
  ctx.save(...inputs);
  out.requiresGrad = true;
  out.node = { def: checkpointOp as OpDef<never>, inputs, ctx, attrs: fn, output: out };
  return out;
}
