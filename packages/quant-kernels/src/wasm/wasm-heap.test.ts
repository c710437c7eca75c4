import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { WasmHeap } from "./wasm-heap";

function makeHeap(pages = 1): WasmHeap {
  return new WasmHeap(new WebAssembly.Memory({ initial: pages, maximum: 1024 }), 1000);
}

describe("WasmHeap", () => {
  it("hands out 64-byte aligned, non-overlapping blocks above the heap base and grows the memory", () => {
    const h = makeHeap();
    const a = h.alloc(10);
    const b = h.alloc(100_000);
    expect(a).toBe(1024);
    expect(a % 64).toBe(0);
    expect(b % 64).toBe(0);
    expect(b).toBeGreaterThanOrEqual(a + 64);
    expect(h.byteLength).toBeGreaterThanOrEqual(b + 100_000);
    expect(h.f32.length * 4).toBe(h.byteLength);
  });

  it("throws a clear error on a bad size, an unknown address, or a double free", () => {
    const h = makeHeap();
    expect(() => h.alloc(-1)).toThrow(/cannot allocate/);
    const a = h.alloc(64);
    expect(() => h.release(a + 64)).toThrow(/not an allocated block/);
    h.release(a);
    expect(() => h.release(a)).toThrow(/not an allocated block/);
  });

  it("property: random alloc/free sequences never overlap, and freeing everything coalesces to one block", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 5000 }), fc.nat()), { maxLength: 80 }),
        (ops) => {
          const h = makeHeap();
          const live: [number, number][] = [];
          for (const [isAlloc, size, pick] of ops) {
            if (isAlloc || live.length === 0) {
              const a = h.alloc(size);
              for (const [b, s] of live)
                expect(a + Math.max(size, 1) <= b || b + Math.max(s, 1) <= a).toBe(true);
              live.push([a, size]);
            } else {
              const [a] = live.splice(pick % live.length, 1)[0];
              h.release(a);
            }
          }
          for (const [a] of live) h.release(a);
          expect(h.usedBytes()).toBe(0);
          expect(h.freeBlockCount()).toBeLessThanOrEqual(1);
        },
      ),
      { seed: 42, numRuns: 200 },
    );
  });

  it("recognises views of its memory, including after growth", () => {
    const h = makeHeap();
    const before = new Float32Array(h.memory.buffer, 1024, 4);
    expect(h.owns(before)).toBe(true);
    h.alloc(200_000);
    expect(h.owns(new Float32Array(h.memory.buffer, 1024, 4))).toBe(true);
    expect(h.owns(new Float32Array(4))).toBe(false);
  });
});
