// The reverse-mode engine: op definitions ({forward, backward} pairs), graph recording, backward().
import type { Backend } from "@int21/quant-kernels";
import { currentBackend, getBackend } from "./backend";
import { allocFloats } from "./memory";
import { fmtShape, fromData, Tensor, tensor, untracked, zeros } from "./tensor";

/**
 * What an op's forward and backward see. `save()` keeps tensors for backward (they stay counted in
 * the ledger until backward has run); when no input needs a gradient, nothing is recorded and `save`
 * does nothing, so forward does no work for gradients nobody needs.
 */
export class OpContext {
  /** Tensors kept for backward, in `save()` order. */
  readonly saved: Tensor[] = [];
  /** Small per-application values for backward (numbers, index arrays). Not counted in the ledger. */
  readonly state: Record<string, unknown> = {};

  private pinned: Backend | null;

  constructor(
    /** The backend set at forward time (null: none; see {@link OpContext.backend}). */
    backend: Backend | null,
    /** Per input: whether backward must produce its gradient. */
    readonly needsInputGrad: readonly boolean[],
    /** Whether this application is recorded for backward. */
    readonly recording: boolean,
  ) {
    this.pinned = backend;
  }

  /**
   * The backend of this application: the one set when forward ran (backward uses the same one, even
   * when it runs outside that `withBackend`). Ops that run no kernels never read it, so they need no
   * backend; reading it when none was set then and none is set now throws (see `getBackend`).
   */
  get backend(): Backend {
    if (this.pinned === null) this.pinned = getBackend();
    return this.pinned;
  }

  /** Keeps tensors (inputs or the output) for backward. No-op when not recording. */
  save(...ts: Tensor[]): void {
    if (!this.recording) return;
    for (const t of ts) {
      t.storage.retain();
      this.saved.push(t);
    }
  }

  /**
   * Keeps a raw buffer computed in forward (e.g. RMSNorm's per-row 1/rms) for backward as a tensor,
   * counted in the ledger under `saved`. Returns it; no-op (returns null) when not recording.
   */
  saveBuffer(data: Float32Array, shape: readonly number[]): Tensor | null {
    if (!this.recording) return null;
    const t = untracked(() => fromData(data, shape, "saved"));
    this.saved.push(t); // the handle's own reference is the node's hold
    return t;
  }

  /** Releases everything saved (after backward, or when the graph is dropped). */
  releaseSaved(): void {
    for (const t of this.saved) t.storage.release();
    this.saved.length = 0;
  }
}

/**
 * One differentiable primitive. `forward` computes the output from the inputs (allocating it);
 * `backward` ACCUMULATES (`+=`) into `gradInputs[i]` (a dense tensor in input i's shape, or null when
 * input i needs no gradient) given `gradOutput` (dense, the output's shape).
 */
export interface OpDef<A = void> {
  readonly name: string;
  forward(ctx: OpContext, inputs: readonly Tensor[], attrs: A): Tensor;
  backward(ctx: OpContext, gradOutput: Tensor, gradInputs: readonly (Tensor | null)[], attrs: A): void;
}

/** A recorded op application: the edge from `inputs` to `output` in the graph. */
export interface Node {
  readonly def: OpDef<never>;
  readonly inputs: readonly Tensor[];
  readonly ctx: OpContext;
  readonly attrs: unknown;
  readonly output: Tensor;
}

let gradEnabled = true;
let touchedGrad = false;

/** Whether ops currently record a graph (false inside {@link noGrad}). */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording any graph (inference, evaluation, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const was = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = was;
  }
}

/** Runs `fn` with graph recording on (the inverse of {@link noGrad}). */
export function enableGrad<T>(fn: () => T): T {
  const was = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = was;
  }
}

/**
 * Runs `fn` and reports whether any op inside it saw an input that requires grad (used by
 * checkpoint() to learn whether a block touches trainable parameters).
 */
export function watchGrad<T>(fn: () => T): { result: T; touched: boolean } {
  const was = touchedGrad;
  touchedGrad = false;
  try {
    const result = fn();
    return { result, touched: touchedGrad };
  } finally {
    touchedGrad = was || touchedGrad;
  }
}

/** Applies an op: runs forward and, when some input requires grad (and grad is enabled), records it. */
export function applyOp<A>(def: OpDef<A>, inputs: readonly Tensor[], attrs: A): Tensor {
  let any = false;
  for (let i = 0; i < inputs.length; i++) {
    const x = inputs[i];
    if (!(x instanceof Tensor)) throw new Error(`autograd: ${def.name}: input ${i} is not a Tensor`);
    if (x.requiresGrad) any = true;
  }
  if (any) touchedGrad = true;
  const recording = gradEnabled && any;
  const needs = inputs.map((x) => recording && x.requiresGrad);
  const ctx = new OpContext(currentBackend(), needs, recording);
  const out = def.forward(ctx, inputs, attrs);
  if (recording) {
    out.requiresGrad = true;
    out.node = { def: def as OpDef<never>, inputs, ctx, attrs, output: out };
  }
  return out;
}

/**
 * Turns an op definition into a function. This is the public way to add a custom op (e.g. a
 * quantized linear): write `{name, forward, backward}` and call the result like any built-in op.
 */
export function defineOp<A = void>(def: OpDef<A>): (inputs: readonly Tensor[], attrs: A) => Tensor {
  return (inputs, attrs) => applyOp(def, inputs, attrs);
}

function topoOrder(root: Tensor): Node[] {
  const order: Node[] = [];
  const seen = new Set<Node>();
  const stack: [Node, number][] = [];
  if (root.node) {
    stack.push([root.node, 0]);
    seen.add(root.node);
  }
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const [node, i] = top;
    if (i < node.inputs.length) {
      top[1]++;
      const child = node.inputs[i].node;
      if (child && !seen.has(child)) {
        seen.add(child);
        stack.push([child, 0]);
      }
    } else {
      stack.pop();
      order.push(node);
    }
  }
  return order;
}

/**
 * Back-propagates from `root`. With no `grad`, `root` must have one element (a loss) and its gradient
 * is 1. Leaf tensors that require grad get `.grad` ACCUMULATED (`+=`; zero it between steps, or keep
 * it for gradient accumulation). The graph is consumed: saved activations and intermediate gradients
 * are released as soon as each node's backward has run, so calling backward twice on one graph throws.
 */
export function backward(root: Tensor, grad?: Tensor | ArrayLike<number>): void {
  if (!root.requiresGrad) {
    throw new Error(
      `autograd: backward: ${root} does not require grad (no input of its graph requires grad)`,
    );
  }
  if (root.node === null && root.consumed) {
    throw new Error(`autograd: backward: the graph of ${root} was already consumed by an earlier backward()`);
  }
  let g: Tensor;
  if (grad === undefined) {
    if (root.size !== 1) {
      throw new Error(
        `autograd: backward: root has shape ${fmtShape(root.shape)}; pass a gradient or reduce to a scalar`,
      );
    }
    g = untracked(() => tensor(new Float32Array([1]), root.shape, { tag: "backward" }));
  } else {
    const src = grad instanceof Tensor ? grad.values() : Float32Array.from(grad);
    if (src.length !== root.size) {
      throw new Error(
        `autograd: backward: gradient has ${src.length} values, root has shape ${fmtShape(root.shape)} (${root.size})`,
      );
    }
    const copy = allocFloats(src.length); // a BufferPool's inside one (checkpoint passes each block's)
    copy.set(src);
    g = untracked(() => tensor(copy, root.shape, { tag: "backward" }));
  }
  if (root.node === null) {
    // A leaf root: its gradient is g itself.
    accumulateLeaf(root, g);
    g.dispose();
    return;
  }
  const order = topoOrder(root);
  const grads = new Map<Tensor, Tensor>();
  grads.set(root, g);
  try {
    for (let n = order.length - 1; n >= 0; n--) {
      const node = order[n];
      const gy = grads.get(node.output);
      if (gy) {
        const gradInputs = node.inputs.map((x, i) => {
          if (!node.ctx.needsInputGrad[i]) return null;
          if (x.node === null) {
            if (x.consumed) {
              throw new Error(
                `autograd: backward: ${x} comes from a graph already consumed by an earlier backward()`,
              );
            }
            return leafGrad(x);
          }
          let gx = grads.get(x);
          if (!gx) {
            gx = untracked(() => zeros(x.shape, { tag: "backward" }));
            grads.set(x, gx);
          }
          return gx;
        });
        node.def.backward(node.ctx, gy, gradInputs, node.attrs as never);
        grads.delete(node.output);
        gy.dispose();
      }
      node.ctx.releaseSaved();
      node.output.consumed = true;
      node.output.node = null;
    }
  } finally {
    for (const left of grads.values()) left.dispose(); // also on an error
  }
}

function leafGrad(x: Tensor): Tensor {
  if (!x.grad)
    x.grad = untracked(() => zeros(x.shape, { tag: "grad", name: x.name ? `${x.name}.grad` : undefined }));
  return x.grad;
}

function accumulateLeaf(x: Tensor, g: Tensor): void {
  const dst = leafGrad(x).data;
  const src = g.values();
  for (let i = 0; i < src.length; i++) dst[i] += src[i];
}

/** A new tensor sharing `t`'s storage, cut from the graph (no grad). */
export function detach(t: Tensor): Tensor {
  return new Tensor(t.storage, t.shape, t.strides, t.offset, false);
}

/**
 * Drops the graph behind `root` without back-propagating: every node's saved tensors are released (the
 * ledger stops counting them) and the graph is marked consumed. Use it for a loss computed with grad
 * recording on that will not be back-propagated (or compute such losses under {@link noGrad}).
 */
export function releaseGraph(root: Tensor): void {
  for (const node of topoOrder(root)) {
    node.ctx.releaseSaved();
    node.output.consumed = true;
    node.output.node = null;
  }
}
