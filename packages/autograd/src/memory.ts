// The memory ledger: every tensor buffer the engine allocates is counted from allocation until the
// last holder lets go of it (a scope handle, a graph node that saved it, a parameter's gradient).

/** A snapshot of the ledger. All figures are bytes of tensor storage (4 bytes per float32 element). */
export interface MemoryStats {
  /** Bytes currently held by the engine (scopes, saved activations, gradients, optimizer state). */
  liveBytes: number;
  /** Highest `liveBytes` seen since start or since the last {@link resetPeak}. */
  peakBytes: number;
  /** `liveBytes` broken down by tag (`param`, `activation`, `grad`, `optimizer`, `scratch`, `data`, ...). */
  byTag: Record<string, number>;
  /**
   * Bytes of released buffers that {@link BufferPool}s keep for reuse (not in `liveBytes`: no tensor holds
   * them, but the process does). 0 when no pool is in use.
   */
  pooledBytes: number;
}

let liveBytes = 0;
let peakBytes = 0;
let pooledBytes = 0;
const byTag = new Map<string, number>();

function count(bytes: number, tag: string): void {
  liveBytes += bytes;
  if (liveBytes > peakBytes) peakBytes = liveBytes;
  byTag.set(tag, (byTag.get(tag) ?? 0) + bytes);
}

function uncount(bytes: number, tag: string): void {
  liveBytes -= bytes;
  const left = (byTag.get(tag) ?? 0) - bytes;
  if (left === 0) byTag.delete(tag);
  else byTag.set(tag, left);
}

/**
 * Returns the ledger: live tensor bytes, peak bytes and live bytes per tag.
 *
 * A buffer is live while something in the engine holds it: a tensor handle not yet disposed (by
 * {@link Tensor.dispose} or the end of its enclosing `tidy`), a graph node that saved it for backward,
 * a parameter's `.grad`, an optimizer's state. JavaScript arrays the caller still references after
 * they were released are not counted (the engine no longer holds them).
 */
export function memory(): MemoryStats {
  return { liveBytes, peakBytes, byTag: Object.fromEntries(byTag), pooledBytes };
}

/** Sets `peakBytes` to the current `liveBytes`, so the next peak measures one phase (e.g. one step). */
export function resetPeak(): void {
  peakBytes = liveBytes;
}

/** Buffers a pool handed out that no {@link Storage} has taken over yet, by the pool that owns them. */
const issued = new WeakMap<Float32Array, BufferPool>();
/** Pooled buffers a {@link Storage} has taken over, by that storage. */
const claimed = new WeakMap<Float32Array, Storage>();
/** The pool {@link allocFloats} takes from (set by {@link BufferPool.run}). */
let activePool: BufferPool | null = null;

/** Counters of a {@link BufferPool}. */
export interface BufferPoolStats {
  /** Buffers handed out in all. */
  taken: number;
  /** Of those, how many were released buffers reused (the rest were allocated new). */
  reused: number;
  /** Bytes of released buffers the pool keeps now. */
  pooledBytes: number;
  /** Distinct buffer lengths (in floats) the pool has seen. */
  sizes: number;
}

/**
 * Keeps the buffers of released tensors for reuse, by exact length: a training step that runs the same
 * shapes every step (and every layer) allocates its activations, gradients and op scratch once and then
 * reuses them, instead of leaving garbage for the collector (whose delay is what a process's peak RSS
 * sees). Inside {@link BufferPool.run}, the engine's ops, gradients and scratch take their buffers from
 * the pool (zero-filled, as `new Float32Array` would be), and a buffer comes back to the pool that
 * issued it when the last tensor, graph node or gradient holding it lets go (even after `run` returned).
 * Only buffers a pool issued ever go back to it: arrays a caller wrapped in a tensor stay the caller's.
 *
 * A released tensor's values may be overwritten by a later op: do not read `t.data` (or a view of it)
 * after the tensor was disposed. Retaining a released storage whose buffer was already handed out again
 * throws instead of sharing it.
 *
 * ```ts
 * const pool = new BufferPool();
 * for (const batch of batches) pool.run(() => { opt.zeroGrad(); tidy(() => backward(loss(batch))); opt.step(); });
 * ```
 */
export class BufferPool {
  private readonly free = new Map<number, Set<Float32Array>>();
  /** Lengths taken since the last {@link BufferPool.trim}. */
  private readonly wanted = new Set<number>();
  private bytes = 0;
  private taken = 0;
  private reused = 0;
  /** Most bytes kept for reuse; a buffer released past it is left to the garbage collector. */
  readonly maxBytes: number;

  constructor(opts: { maxBytes?: number } = {}) {
    const max = opts.maxBytes ?? Number.POSITIVE_INFINITY;
    if (!(max >= 0))
      throw new Error(`autograd: BufferPool: maxBytes must be a number >= 0, got ${String(opts.maxBytes)}`);
    this.maxBytes = max;
  }

  /** Runs `fn` with this pool active (pools nest: the innermost one is used). */
  run<T>(fn: () => T): T {
    const was = activePool;
    activePool = this;
    try {
      return fn();
    } finally {
      activePool = was;
    }
  }

  /** A zero-filled buffer of `n` floats: a released one of that length when the pool has one. */
  take(n: number): Float32Array {
    this.taken++;
    this.wanted.add(n);
    const set = this.free.get(n);
    let a: Float32Array | undefined;
    if (set !== undefined)
      for (const b of set) {
        a = b;
        break;
      }
    if (a !== undefined) {
      set?.delete(a);
      this.bytes -= a.byteLength;
      pooledBytes -= a.byteLength;
      this.reused++;
      a.fill(0);
    } else a = new Float32Array(n);
    issued.set(a, this);
    return a;
  }

  /**
   * Takes back a buffer this pool issued that nothing uses any more; returns whether it is kept (false
   * for any other array, or past `maxBytes`).
   */
  give(a: Float32Array): boolean {
    if (issued.get(a) !== this) return false;
    issued.delete(a);
    if (this.bytes + a.byteLength > this.maxBytes) return false;
    let set = this.free.get(a.length);
    if (set === undefined) {
      set = new Set();
      this.free.set(a.length, set);
    }
    set.add(a);
    this.bytes += a.byteLength;
    pooledBytes += a.byteLength;
    return true;
  }

  /**
   * Takes `a` back out of the free buffers (a released storage retained again). Returns false when it
   * was already handed out again.
   */
  reclaim(a: Float32Array): boolean {
    const set = this.free.get(a.length);
    if (set === undefined || !set.delete(a)) return false;
    this.bytes -= a.byteLength;
    pooledBytes -= a.byteLength;
    return true;
  }

  /**
   * Drops the kept buffers of every length not taken since the last trim (or since the pool was made):
   * called after each training step, the pool keeps what the step's shapes use and lets go of the rest
   * (e.g. the buffers of an earlier, longer batch).
   */
  trim(): void {
    for (const [n, set] of this.free) {
      if (this.wanted.has(n)) continue;
      for (const a of set) {
        this.bytes -= a.byteLength;
        pooledBytes -= a.byteLength;
      }
      this.free.delete(n);
    }
    this.wanted.clear();
  }

  /** Drops every kept buffer (the collector frees them). */
  clear(): void {
    pooledBytes -= this.bytes;
    this.bytes = 0;
    this.free.clear();
    this.wanted.clear();
  }

  /** The pool's counters. */
  stats(): BufferPoolStats {
    return { taken: this.taken, reused: this.reused, pooledBytes: this.bytes, sizes: this.free.size };
  }
}

/**
 * A zero-filled `Float32Array` of `n` floats for an op's output, gradient or scratch: from the active
 * {@link BufferPool} inside its `run`, else a new array.
 */
export function allocFloats(n: number): Float32Array {
  return activePool === null ? new Float32Array(n) : activePool.take(n);
}

/**
 * One reference-counted buffer. Tensors (views) and graph nodes retain it; when the count falls to
 * zero its bytes leave the ledger (and a buffer a {@link BufferPool} issued goes back to it). Retaining
 * it again (a released buffer still in use) counts it again.
 */
export class Storage {
  /** Number of holders. */
  refs = 0;
  readonly bytes: number;
  /** The pool that issued `data`, when this storage took it over from one (and is its only storage). */
  private pool: BufferPool | undefined;
  /** Whether `data` was handed back to `pool` (refs fell to zero). */
  private pooled = false;

  constructor(
    readonly data: Float32Array,
    readonly tag: string,
  ) {
    this.bytes = data.byteLength;
    const pool = issued.get(data);
    if (pool !== undefined) {
      issued.delete(data);
      claimed.set(data, this);
      this.pool = pool;
    } else {
      // A second storage over a pooled buffer: neither may hand it back.
      const first = claimed.get(data);
      if (first !== undefined) first.pool = undefined;
    }
  }

  retain(): void {
    if (this.refs === 0) {
      if (this.pooled && this.pool !== undefined) {
        if (!this.pool.reclaim(this.data))
          throw new Error(
            `autograd: storage (${this.tag}, ${this.bytes} bytes) retained after its release, but its buffer was reused by the BufferPool: keep the tensor alive instead`,
          );
        this.pooled = false;
      }
      count(this.bytes, this.tag);
    }
    this.refs++;
  }

  release(): void {
    if (this.refs <= 0)
      throw new Error(`autograd: storage (${this.tag}, ${this.bytes} bytes) released twice`);
    this.refs--;
    if (this.refs === 0) {
      uncount(this.bytes, this.tag);
      if (this.pool !== undefined) {
        issued.set(this.data, this.pool);
        this.pooled = this.pool.give(this.data);
      }
    }
  }
}

/**
 * Counts a raw scratch buffer (op temporaries) in the ledger until the returned release function runs
 * (which also hands it back to the {@link BufferPool} it came from).
 */
export function scratch(n: number, tag = "scratch"): { data: Float32Array; free: () => void } {
  const data = allocFloats(n);
  const pool = issued.get(data);
  const bytes = data.byteLength;
  count(bytes, tag);
  let freed = false;
  return {
    data,
    free: () => {
      if (!freed) {
        uncount(bytes, tag);
        pool?.give(data);
      }
      freed = true;
    },
  };
}
