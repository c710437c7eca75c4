// A small allocator over a WebAssembly.Memory: first fit over a sorted free list, 64-byte aligned
// blocks, neighbours coalesced on free, the memory grown when nothing fits.

const ALIGN = 64;
const PAGE = 65536;

/**
 * Allocator for the wasm heap (addresses above the module's `__heap_base`). Only the thread that
 * owns the backend allocates; workers only read and write the blocks a job names.
 */
export class WasmHeap {
  readonly memory: WebAssembly.Memory;
  private top: number;
  private readonly used = new Map<number, number>();
  /** Free blocks `[address, bytes]`, sorted by address. */
  private readonly free: [number, number][] = [];
  private buf: ArrayBuffer | SharedArrayBuffer;
  private readonly buffers = new WeakSet<ArrayBuffer | SharedArrayBuffer>();
  /** Views of the whole memory; refreshed after the memory grows. */
  f32: Float32Array;
  u32: Uint32Array;
  i32: Int32Array;

  constructor(memory: WebAssembly.Memory, heapBase: number) {
    this.memory = memory;
    this.top = Math.ceil(heapBase / ALIGN) * ALIGN;
    this.buf = memory.buffer;
    this.f32 = new Float32Array(this.buf);
    this.u32 = new Uint32Array(this.buf);
    this.i32 = new Int32Array(this.buf);
    this.buffers.add(this.buf);
  }

  /** Current memory size in bytes. */
  get byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  /** Whether `a` is a view of this memory (any generation of its buffer). */
  owns(a: ArrayBufferView): boolean {
    this.refresh();
    return this.buffers.has(a.buffer);
  }

  /** Re-creates the views when the memory has grown (by this or any other owner). */
  refresh(): void {
    const b = this.memory.buffer;
    if (b !== this.buf) {
      this.buf = b;
      this.f32 = new Float32Array(b);
      this.u32 = new Uint32Array(b);
      this.i32 = new Int32Array(b);
      this.buffers.add(b);
    }
  }

  /** Allocates `bytes` (rounded up to 64), returns the byte address. Contents are unspecified. */
  alloc(bytes: number): number {
    if (!Number.isSafeInteger(bytes) || bytes < 0)
      throw new Error(`quant-kernels: wasm heap cannot allocate ${bytes} bytes`);
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    for (let i = 0; i < this.free.length; i++) {
      const [addr, fsize] = this.free[i];
      if (fsize >= size) {
        if (fsize === size) this.free.splice(i, 1);
        else this.free[i] = [addr + size, fsize - size];
        this.used.set(addr, size);
        return addr;
      }
    }
    // Take from the top, after absorbing a free block that ends there.
    const last = this.free[this.free.length - 1];
    let addr = this.top;
    if (last !== undefined && last[0] + last[1] === this.top) {
      addr = last[0];
      this.free.pop();
    }
    const end = addr + size;
    if (end > 4 * 1024 * 1024 * 1024) {
      throw new Error(
        `quant-kernels: wasm heap is full (4 GiB address space); cannot allocate ${bytes} bytes`,
      );
    }
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE);
      // Grow by at least 1/8 of the current size to keep the number of grows small.
      const extra = Math.max(pages, Math.ceil(have / PAGE / 8));
      try {
        this.memory.grow(extra);
      } catch {
        try {
          this.memory.grow(pages);
        } catch (e) {
          throw new Error(`quant-kernels: wasm memory cannot grow to ${end} bytes: ${(e as Error).message}`);
        }
      }
      this.refresh();
    }
    this.top = Math.max(this.top, end);
    this.used.set(addr, size);
    return addr;
  }

  /** Frees a block returned by {@link alloc}. Freeing twice or a foreign address throws. */
  release(addr: number): void {
    const size = this.used.get(addr);
    if (size === undefined)
      throw new Error(`quant-kernels: wasm heap: address ${addr} is not an allocated block`);
    this.used.delete(addr);
    let lo = 0;
    let hi = this.free.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.free[mid][0] < addr) lo = mid + 1;
      else hi = mid;
    }
    this.free.splice(lo, 0, [addr, size]);
    // Coalesce with the next, then with the previous block.
    const next = this.free[lo + 1];
    if (next !== undefined && addr + size === next[0]) {
      this.free[lo] = [addr, size + next[1]];
      this.free.splice(lo + 1, 1);
    }
    const prev = this.free[lo - 1];
    if (prev !== undefined && prev[0] + prev[1] === addr) {
      this.free[lo - 1] = [prev[0], prev[1] + this.free[lo][1]];
      this.free.splice(lo, 1);
    }
  }

  /** Bytes in allocated blocks. */
  usedBytes(): number {
    let s = 0;
    for (const v of this.used.values()) s += v;
    return s;
  }

  /** Number of free blocks (for tests: freeing everything coalesces back to at most one). */
  freeBlockCount(): number {
    return this.free.length;
  }
}
