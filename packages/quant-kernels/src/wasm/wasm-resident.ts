// Resident wasm copies of immutable inputs, keyed by object identity: quantized layers (re-packed
// into the lane-interleaved container layout the fused kernels read, see wasm/kernels.h) and
// constant float weights (`GemmArgs.bConst`). Freed when the key is garbage-collected, evicted, or
// pushed out by the byte budget (least recently used first).
import type { QuantizedLinear } from "../types";
import { isBlockFormat } from "../formats/ggml-blocks";
import {
  D_BITS,
  D_BLOCK,
  D_CB,
  D_GIDX,
  D_OFFSET,
  D_GS,
  D_K,
  D_KP,
  D_LUT,
  D_N,
  D_NG,
  D_SCALES,
  D_SIZE,
  D_WORDS,
  D_WPR,
  D_ZEROS,
} from "./layout";
import type { WasmRuntime } from "./wasm-runtime";

/** A quantized layer living in wasm memory. */
export interface ResidentQuant {
  /** Byte address of the descriptor. */
  readonly desc: number;
  readonly N: number;
  readonly K: number;
  /** K padded to whole 128-bit blocks of codes. */
  readonly Kp: number;
  readonly nGroups: number;
  /** Whether the fused vector paths apply (no act-order, group length a multiple of 4). */
  readonly fast: boolean;
  /** Bytes held in wasm memory. */
  readonly bytes: number;
}

interface Entry {
  res: ResidentQuant;
  blocks: number[];
  id: number;
}

/** What the collection callback and the budget know of a resident copy. */
interface Held {
  id: number;
  blocks: number[];
}

/** A resident copy in use order (oldest first). */
interface LruEntry {
  key: WeakRef<QuantizedLinear | Float32Array>;
  bytes: number;
}

/** Container width for a code width: 1–2 → 2, 3–4 → 4, 5–8 → 8 bits. */
export function containerBits(bits: number): 2 | 4 | 8 {
  return bits <= 2 ? 2 : bits <= 4 ? 4 : 8;
}

function fail(msg: string): never {
  throw new Error(`quant-kernels: wasm backend: ${msg}`);
}

/** Checks the parts of a record a kernel reads, so that no call reads outside its arrays. */
function checkRecord(q: QuantizedLinear): { ng: number; gs: number } {
  const { format, outFeatures: N, inFeatures: K, qweight: w } = q;
  const bits = format.bits;
  if (!Number.isInteger(bits) || bits < 1 || bits > 8)
    fail(`format ${format.name}: bits must be 1..8, got ${bits}`);
  const gsz = format.groupSize;
  if (!(gsz === -1 || (Number.isSafeInteger(gsz) && gsz >= 1))) {
    fail(`format ${format.name}: groupSize must be -1 or a positive integer, got ${gsz}`);
  }
  if (w.bits !== bits || w.rows !== N || w.cols !== K) {
    fail(`qweight is ${w.rows}×${w.cols} at ${w.bits} bits, expected ${N}×${K} at ${bits} bits`);
  }
  const wpr = Math.ceil((K * bits) / 32);
  if (w.wordsPerRow !== wpr || w.words.length < N * wpr)
    fail(`qweight needs ${N * wpr} words, has ${w.words.length}`);
  const ng = gsz === -1 ? 1 : Math.ceil(K / gsz);
  if (q.scales.length < N * ng) fail(`scales needs ${N}×${ng} = ${N * ng} entries, has ${q.scales.length}`);
  if (q.zeros.length < N * ng) fail(`zeros needs ${N}×${ng} = ${N * ng} entries, has ${q.zeros.length}`);
  if (q.gIdx !== undefined) {
    if (q.gIdx.length < K) fail(`gIdx needs ${K} entries, has ${q.gIdx.length}`);
    for (let k = 0; k < K; k++) {
      const g = q.gIdx[k];
      if (!(g >= 0 && g < ng)) fail(`gIdx[${k}] = ${g} is outside [0, ${ng})`);
    }
  }
  return { ng, gs: gsz };
}

/** Cache of resident layers and constant float arrays for one runtime. */
export class ResidentCache {
  private readonly quant = new WeakMap<QuantizedLinear, Entry>();
  private readonly floats = new WeakMap<Float32Array, { addr: number; id: number }>();
  private readonly registry: FinalizationRegistry<Held>;
  private readonly rt: WasmRuntime;
  /** Resident copies by id, least recently used first. */
  private readonly lru = new Map<number, LruEntry>();
  private residentBytes = 0;
  private nextId = 1;
  private alive = true;

  /**
   * @param budget Bytes the resident copies may hold together; before a new copy is made, the least
   *   recently used ones are dropped until it fits (a copy larger than the budget is still made, alone).
   */
  constructor(
    rt: WasmRuntime,
    readonly budget = Number.POSITIVE_INFINITY,
  ) {
    this.rt = rt;
    this.registry = new FinalizationRegistry((held) => {
      const e = this.lru.get(held.id);
      if (e !== undefined) {
        this.lru.delete(held.id);
        this.residentBytes -= e.bytes;
      }
      if (this.alive) for (const b of held.blocks) rt.heap.release(b);
    });
  }

  /** Whether `key` has a resident copy now. */
  has(key: QuantizedLinear | Float32Array): boolean {
    return key instanceof Float32Array ? this.floats.has(key) : this.quant.has(key);
  }

  /** Bytes held by resident copies now. */
  get bytes(): number {
    return this.residentBytes;
  }

  /** Marks a resident copy as just used. */
  private touch(id: number): void {
    const e = this.lru.get(id);
    if (e === undefined) return;
    this.lru.delete(id);
    this.lru.set(id, e);
  }

  /** Drops least recently used copies until `incoming` more bytes fit the budget. */
  private makeRoom(incoming: number): void {
    if (this.residentBytes + incoming <= this.budget) return;
    for (const e of [...this.lru.values()]) {
      if (this.residentBytes + incoming <= this.budget) break;
      // A collected key's copy is released by the registry callback, which also updates the count.
      const key = e.key.deref();
      if (key !== undefined) this.evict(key);
    }
  }

  private track(key: QuantizedLinear | Float32Array, bytes: number, blocks: number[]): number {
    const id = this.nextId++;
    this.lru.set(id, { key: new WeakRef(key), bytes });
    this.residentBytes += bytes;
    this.registry.register(key, { id, blocks }, key);
    return id;
  }

  private untrack(id: number, key: QuantizedLinear | Float32Array): void {
    const e = this.lru.get(id);
    if (e !== undefined) {
      this.lru.delete(id);
      this.residentBytes -= e.bytes;
    }
    this.registry.unregister(key);
  }

  /** The resident copy of `q`, made on first use. */
  quantized(q: QuantizedLinear): ResidentQuant {
    const hit = this.quant.get(q);
    if (hit !== undefined) {
      this.touch(hit.id);
      return hit.res;
    }
    if (isBlockFormat(q.format)) return this.blockQuantized(q);
    const { ng, gs } = checkRecord(q);
    const N = q.outFeatures;
    const K = q.inFeatures;
    const bits = q.format.bits;
    const cb = containerBits(bits);
    const per = 32 / cb;
    const bw = 4 * per;
    const Kp = Math.ceil(K / bw) * bw;
    const wpr = Kp / per;
    // Codebook formats: the 2^bits codebook values travel with the layer (D_LUT).
    const codebook = q.format.decode === "lut" ? q.format.codebook : undefined;
    if (q.format.decode === "lut" && !(codebook instanceof Float32Array && codebook.length === 2 ** bits))
      fail(`format ${q.format.name}: a "lut" format needs a codebook of 2^${bits} floats`);
    // Zero-padded to 16 floats: the wasm table decode loads four v128s for codebooks of ≤ 16 entries.
    const lutLen = codebook !== undefined ? Math.max(16, 2 ** bits) : 0;
    const need = (D_SIZE + N * wpr + 2 * N * ng + (q.gIdx !== undefined ? K : 0) + lutLen) * 4;
    this.makeRoom(need);
    const heap = this.rt.heap;
    const blocks: number[] = [];
    const take = (bytes: number) => {
      const a = heap.alloc(bytes);
      blocks.push(a);
      return a;
    };
    try {
      const desc = take(D_SIZE * 4);
      const words = take(N * wpr * 4);
      const scales = take(N * ng * 4);
      const zeros = take(N * ng * 4);
      const gidx = q.gIdx !== undefined ? take(K * 4) : 0;
      const lut = codebook !== undefined ? take(lutLen * 4) : 0;
      const src = heap.alloc(q.qweight.words.length * 4);
      heap.refresh();
      const d = desc >>> 2;
      const i32 = heap.i32;
      i32[d + D_BITS] = bits;
      i32[d + D_CB] = cb;
      i32[d + D_N] = N;
      i32[d + D_K] = K;
      i32[d + D_KP] = Kp;
      i32[d + D_WPR] = wpr;
      i32[d + D_NG] = ng;
      i32[d + D_GS] = gs === -1 ? Kp : gs;
      i32[d + D_WORDS] = words;
      i32[d + D_SCALES] = scales;
      i32[d + D_ZEROS] = zeros;
      i32[d + D_GIDX] = gidx;
      i32[d + D_OFFSET] = !q.format.symmetric && bits === cb ? 1 : 0;
      i32[d + D_LUT] = lut;
      i32[d + D_BLOCK] = 0;
      if (codebook !== undefined) {
        heap.f32.fill(0, lut >>> 2, (lut >>> 2) + lutLen);
        heap.f32.set(codebook, lut >>> 2);
      }
      heap.u32.fill(0, words >>> 2, (words >>> 2) + N * wpr);
      heap.f32.set(q.scales.subarray(0, N * ng), scales >>> 2);
      // Centred zeros z' = z − 2^(bits−1), matching the centred codes qk_repack stores.
      const c = 2 ** (bits - 1);
      const zf = heap.f32;
      const z0 = zeros >>> 2;
      for (let i = 0; i < N * ng; i++) zf[z0 + i] = q.zeros[i] - c;
      if (q.gIdx !== undefined) heap.i32.set(q.gIdx.subarray(0, K), gidx >>> 2);
      heap.u32.set(q.qweight.words, src >>> 2);
      this.rt.repack(desc, src, q.qweight.wordsPerRow);
      heap.release(src);
      // The fused backward (OP_QMATVEC_T) decodes affine codes and codebooks of up to 16 entries.
      const fast =
        (codebook === undefined || bits <= 4) && q.gIdx === undefined && (gs === -1 || gs % 4 === 0);
      const res: ResidentQuant = { desc, N, K, Kp, nGroups: ng, fast, bytes: need };
      const id = this.track(q, need, blocks);
      this.quant.set(q, { res, blocks, id });
      return res;
    } catch (e) {
      for (const b of blocks) heap.release(b);
      throw e;
    }
  }

  /**
   * The resident copy of a ggml block-format layer: its words as they are (each row the row's ggml
   * blocks, `wordsPerRow` words), decoded a block at a time by the kernels (wasm/ggml_blocks.c).
   */
  private blockQuantized(q: QuantizedLinear): ResidentQuant {
    const f = q.format;
    if (!isBlockFormat(f)) fail(`format ${f.name} is not a block format`);
    const N = q.outFeatures;
    const K = q.inFeatures;
    const w = q.qweight;
    const rowBytes = (K / f.block.blockSize) * f.block.blockBytes;
    if (K % f.block.blockSize !== 0 || w.bits !== 8 || w.rows !== N || w.cols !== rowBytes)
      fail(`qweight of ${f.name} is ${w.rows}×${w.cols} bytes, expected ${N}×${rowBytes}`);
    const wpr = w.wordsPerRow;
    if (wpr !== Math.ceil(rowBytes / 4) || w.words.length < N * wpr)
      fail(`qweight of ${f.name} needs ${N * Math.ceil(rowBytes / 4)} words, has ${w.words.length}`);
    const need = (D_SIZE + N * wpr) * 4;
    this.makeRoom(need);
    const heap = this.rt.heap;
    const blocks: number[] = [];
    try {
      const desc = heap.alloc(D_SIZE * 4);
      blocks.push(desc);
      const words = heap.alloc(N * wpr * 4);
      blocks.push(words);
      heap.refresh();
      const d = desc >>> 2;
      const i32 = heap.i32;
      i32.fill(0, d, d + D_SIZE);
      i32[d + D_BITS] = 8;
      i32[d + D_CB] = 8;
      i32[d + D_N] = N;
      i32[d + D_K] = K;
      i32[d + D_KP] = K;
      i32[d + D_WPR] = wpr;
      i32[d + D_WORDS] = words;
      i32[d + D_BLOCK] = f.block.ggmlTypeId;
      heap.u32.set(w.words.subarray(0, N * wpr), words >>> 2);
      const res: ResidentQuant = { desc, N, K, Kp: K, nGroups: 0, fast: false, bytes: need };
      const id = this.track(q, need, blocks);
      this.quant.set(q, { res, blocks, id });
      return res;
    } catch (e) {
      for (const b of blocks) heap.release(b);
      throw e;
    }
  }

  /** Byte address of a resident copy of the whole of `a` (a constant float array). */
  floatConst(a: Float32Array): number {
    const hit = this.floats.get(a);
    if (hit !== undefined) {
      this.touch(hit.id);
      return hit.addr;
    }
    this.makeRoom(a.length * 4);
    const heap = this.rt.heap;
    const addr = heap.alloc(a.length * 4);
    heap.refresh();
    heap.f32.set(a, addr >>> 2);
    const id = this.track(a, a.length * 4, [addr]);
    this.floats.set(a, { addr, id });
    return addr;
  }

  /** Drops the resident copy of `key` now (it is rebuilt if used again). */
  evict(key: QuantizedLinear | Float32Array): void {
    const heap = this.rt.heap;
    if (key instanceof Float32Array) {
      const f = this.floats.get(key);
      if (f === undefined) return;
      this.floats.delete(key);
      this.untrack(f.id, key);
      heap.release(f.addr);
      return;
    }
    const e = this.quant.get(key);
    if (e === undefined) return;
    this.quant.delete(key);
    this.untrack(e.id, key);
    for (const b of e.blocks) heap.release(b);
  }

  /** Stops releasing on collection (the memory goes away with the backend). */
  dispose(): void {
    this.alive = false;
  }
}
