import { describe, expect, it } from "vitest";
import { allocFloats, BufferPool, memory, resetPeak, Storage, scratch } from "./memory";
import { tensor, tidy, zeros } from "./tensor";
import { reshape } from "./view";

describe("memory ledger", () => {
  it("counts a storage once however many views hold it, until the last lets go", () => {
    const base = memory().liveBytes;
    const t = zeros([4, 4]);
    const v = reshape(t, [16]);
    expect(v.data).toBe(t.data);
    expect(memory().liveBytes - base).toBe(64);
    t.dispose();
    expect(memory().liveBytes - base).toBe(64);
    v.dispose();
    v.dispose(); // idempotent
    expect(memory().liveBytes).toBe(base);
  });

  it("tracks the peak and per-tag bytes; resetPeak starts a new phase", () => {
    resetPeak();
    const base = memory().liveBytes;
    const a = zeros([1000], { tag: "test-a" });
    const s = scratch(500);
    expect(memory().byTag["test-a"]).toBe(4000);
    expect(memory().byTag.scratch).toBe(2000);
    s.free();
    s.free();
    a.dispose();
    expect(memory().byTag["test-a"]).toBeUndefined();
    expect(memory().peakBytes - base).toBe(6000);
    resetPeak();
    expect(memory().peakBytes).toBe(memory().liveBytes);
  });

  it("a storage released more often than retained is an error", () => {
    const s = new Storage(new Float32Array(2), "x");
    s.retain();
    s.release();
    expect(() => s.release()).toThrow(/storage \(x, 8 bytes\) released twice/);
  });
});

describe("BufferPool", () => {
  it("hands a released tensor's buffer to the next allocation of that length, zero-filled", () => {
    const pool = new BufferPool();
    const [first, second, other] = pool.run(() => {
      const a = zeros([8]);
      a.data.fill(7);
      const buf = a.data;
      a.dispose();
      const b = zeros([2, 4]);
      const c = zeros([9]);
      return [buf, b.data, c.data];
    });
    expect(second).toBe(first);
    expect(Array.from(second)).toEqual(new Array(8).fill(0));
    expect(other).not.toBe(first);
    expect(pool.stats()).toMatchObject({ taken: 3, reused: 1, pooledBytes: 0 });
  });

  it("keeps released buffers (counted in pooledBytes) and only inside run", () => {
    const pool = new BufferPool();
    const before = memory().pooledBytes;
    pool.run(() =>
      tidy(() => {
        zeros([100]); // disposed when the scope ends
      }),
    );
    expect(pool.stats().pooledBytes).toBe(400);
    expect(memory().pooledBytes - before).toBe(400);
    const outside = zeros([100]);
    expect(pool.stats().pooledBytes).toBe(400); // not taken outside run
    outside.dispose();
    expect(pool.stats().pooledBytes).toBe(400); // and not given back: the pool did not issue it
    pool.clear();
    expect(memory().pooledBytes).toBe(before);
    expect(allocFloats(3)).toHaveLength(3);
  });

  it("never takes a caller's array, nor a buffer wrapped by two storages", () => {
    const pool = new BufferPool();
    pool.run(() => {
      const mine = new Float32Array(16);
      tensor(mine).dispose();
      expect(pool.stats().pooledBytes).toBe(0);
      const shared = allocFloats(16);
      const s1 = new Storage(shared, "a");
      const s2 = new Storage(shared, "b");
      s1.retain();
      s2.retain();
      s1.release();
      s2.release();
      expect(pool.stats().pooledBytes).toBe(0);
    });
  });

  it("scratch buffers go back when freed; maxBytes caps what is kept", () => {
    const pool = new BufferPool({ maxBytes: 100 });
    pool.run(() => {
      const s = scratch(20);
      s.free();
      s.free();
      expect(pool.stats().pooledBytes).toBe(80);
      scratch(20).free(); // reuses it
      expect(pool.stats()).toMatchObject({ taken: 2, reused: 1, pooledBytes: 80 });
      zeros([10]).dispose(); // 40 more bytes would pass maxBytes: left to the collector
      expect(pool.stats().pooledBytes).toBe(80);
    });
    expect(() => new BufferPool({ maxBytes: -1 })).toThrow(/maxBytes must be a number >= 0/);
  });

  it("a released storage retained again takes its buffer back, or throws once it was reused", () => {
    const pool = new BufferPool();
    pool.run(() => {
      const s = new Storage(allocFloats(4), "x");
      s.retain();
      s.release();
      expect(pool.stats().pooledBytes).toBe(16);
      s.retain(); // still in the pool: taken back
      expect(pool.stats().pooledBytes).toBe(0);
      s.release();
      const again = allocFloats(4);
      expect(again).toBe(s.data);
      expect(() => s.retain()).toThrow(/retained after its release, but its buffer was reused/);
    });
  });

  it("nests: the innermost pool is used", () => {
    const outer = new BufferPool();
    const inner = new BufferPool();
    outer.run(() => {
      inner.run(() => zeros([5]).dispose());
      zeros([6]).dispose();
    });
    expect(inner.stats().pooledBytes).toBe(20);
    expect(outer.stats().pooledBytes).toBe(24);
  });

  it("trim drops the buffers of lengths not taken since the last trim", () => {
    const pool = new BufferPool();
    pool.run(() => {
      zeros([3]).dispose();
      zeros([4]).dispose();
    });
    pool.trim(); // both lengths were taken: kept
    expect(pool.stats()).toMatchObject({ pooledBytes: 28, sizes: 2 });
    pool.run(() => zeros([4]).dispose()); // reuses the 4
    pool.trim(); // 3 was not taken since: dropped
    expect(pool.stats()).toMatchObject({ pooledBytes: 16, sizes: 1 });
    pool.trim();
    expect(pool.stats()).toMatchObject({ pooledBytes: 0, sizes: 0 });
  });
});
