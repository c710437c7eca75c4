// The KV cache where the attention kernel reads it: on a wasm backend, the run state's key and value
// caches are moved into wasm memory (views that stay valid across memory growth), so the wasm
// attention kernel (decode_attn.c) reads them in place; forward writes each new key/value row
// straight into them. On other backends the caches stay ordinary arrays and attention runs in JS.
import { type AttentionArgs, type DecodeKernels, decodeKernels } from "@int21/quant-kernels";
import type { RunState } from "./run-state";
import type { LlamaWeights } from "./weights";

interface Home {
  kernels: DecodeKernels;
  keys: Float32Array;
  values: Float32Array;
  /** One argument record per state, rewritten per call (no allocation per token). */
  args: AttentionArgs;
}

interface Held {
  kernels: DecodeKernels;
  keys: Float32Array;
  values: Float32Array;
}

const homes = new WeakMap<RunState, Home>();
const release = (h: Held) => {
  h.kernels.freeF32(h.keys);
  h.kernels.freeF32(h.values);
};
const registry = new FinalizationRegistry<Held>((h) => {
  try {
    release(h);
  } catch {
    // the backend's memory went away first
  }
});

/** Backends given for a run state's own work (attention over its KV cache), by {@link setStateBackend}. */
const stateBackends = new WeakMap<RunState, object>();

/**
 * Runs the work of `state` that no `Linear` owns (attention over its KV cache) on `backend`'s kernels from
 * now on (the reference backend: the JS attention), instead of the backend of the weights' first projection.
 */
export function setStateBackend(state: RunState, backend: object): void {
  stateBackends.set(state, backend);
}

/**
 * The wasm inference kernels for `state`'s attention: those of the backend given by {@link setStateBackend},
 * else of the backend `weights` run on (their first projection's), if any.
 */
export function weightKernels(weights: LlamaWeights, state?: RunState): DecodeKernels | undefined {
  const given = state === undefined ? undefined : stateBackends.get(state);
  const b = given ?? (weights.layers[0]?.wq as { backend?: object } | undefined)?.backend;
  return b === undefined ? undefined : decodeKernels(b);
}

/**
 * Makes `state`'s KV cache live in the wasm memory of `kernels` (moving it there after creation or after
 * {@link ensureContext} grew it) and returns the state's reusable attention record. The previous wasm copy
 * is released; a collected state releases its copy through a finalizer.
 */
export function residentKvCache(state: RunState, kernels: DecodeKernels): AttentionArgs {
  const h = homes.get(state);
  if (h !== undefined && h.kernels === kernels && state.keyCache === h.keys && state.valueCache === h.values)
    return h.args;
  const keys = kernels.allocF32(state.keyCache.length);
  const values = kernels.allocF32(state.valueCache.length);
  keys.set(state.keyCache);
  values.set(state.valueCache);
  if (h !== undefined) {
    registry.unregister(state);
    release(h);
  }
  state.keyCache = keys;
  state.valueCache = values;
  const c = state.config;
  const args: AttentionArgs = {
    q: state.q,
    out: state.xb,
    keys,
    values,
    offset: 0,
    cacheLen: 0,
    rows: 0,
    pos: 0,
    window: 0,
    nHeads: c.nHeads,
    nKvHeads: c.nKvHeads,
    headSize: 0,
    scale: 1,
  };
  homes.set(state, { kernels, keys, values, args });
  registry.register(state, { kernels, keys, values }, state);
  return args;
}
