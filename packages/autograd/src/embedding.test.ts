import { describe, expect, it } from "vitest";
import { mul } from "./elementwise";
import { embedding } from "./embedding";
import { gradCheck } from "./gradcheck";
import { expectClose, leaf, useReferenceBackend } from "./test-utils";

useReferenceBackend();

describe("embedding", () => {
  it("gathers rows and scatter-adds gradients (repeated ids accumulate)", () => {
    const table = leaf([5, 3], 1);
    const ids = [4, 0, 4, 2, 4, 1];
    const y = embedding(table, ids, [2, 3]);
    expect(y.shape).toEqual([2, 3, 3]);
    expectClose(
      y.toArray(),
      ids.flatMap((i) => [0, 1, 2].map((j) => table.get(i, j))),
      0,
      0,
    );
    const w = leaf([2, 3, 3], 2, { grad: false });
    gradCheck((t) => mul(embedding(t, ids, [2, 3]), w), [table]);
  });

  it("rejects out-of-range and non-integer ids", () => {
    const table = leaf([5, 3], 1);
    expect(() => embedding(table, [1, 5])).toThrow(/embedding: id 5 at 1 out of range \[0, 5\)/);
    expect(() => embedding(table, [1.5])).toThrow(/id 1.5 at 0/);
    expect(() => embedding(table, [1, 2], [3])).toThrow(/shape \[3\] does not hold 2 ids/);
  });
});
