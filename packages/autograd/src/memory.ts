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
}

let liveBytes = 0;
let peakBytes = 0;
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
  return { liveBytes, peakBytes, byTag: Object.fromEntries(byTag) };
}

/** Sets `peakBytes` to the current `liveBytes`, so the next peak measures one phase (e.g. one step). */
export function resetPeak(): void {
  peakBytes = liveBytes;
}

/**
 * One reference-counted buffer. Tensors (views) and graph nodes retain it; when the count falls to
 * zero its bytes leave the ledger. Retaining it again (a released buffer still in use) counts it again.
 */
export class Storage {
  /** Number of holders. */
  refs = 0;
  readonly bytes: number;

  constructor(
    readonly data: Float32Array,
    readonly tag: string,
  ) {
    this.bytes = data.byteLength;
  }

  retain(): void {
    if (this.refs === 0) count(this.bytes, this.tag);
    this.refs++;
  }

  release(): void {
    if (this.refs <= 0)
      throw new Error(`autograd: storage (${this.tag}, ${this.bytes} bytes) released twice`);
    this.refs--;
    if (this.refs === 0) uncount(this.bytes, this.tag);
  }
}

/**
 * Counts a raw scratch buffer (op temporaries) in the ledger until the returned release function runs.
 */
export function scratch(n: number, tag = "scratch"): { data: Float32Array; free: () => void } {
  const data = new Float32Array(n);
  const bytes = data.byteLength;
  count(bytes, tag);
  let freed = false;
  return {
    data,
    free: () => {
      if (!freed) uncount(bytes, tag);
      freed = true;
    },
  };
}
