import { describe, expect, it } from "vitest";
import { memory, resetPeak, Storage, scratch } from "./memory";
import { zeros } from "./tensor";
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
