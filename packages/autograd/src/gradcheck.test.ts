import { describe, expect, it } from "vitest";
import { defineOp, type OpDef } from "./engine";
import { gradCheck } from "./gradcheck";
import { output } from "./strided";
import type { Tensor } from "./tensor";
import { leaf, useReferenceBackend } from "./test-utils";

useReferenceBackend();

/** y = x², with a backward that is wrong by `factor` (1 is correct). */
function square(factor: number) {
  const op: OpDef = {
    name: "square",
    forward(ctx, [x]) {
      ctx.save(x);
      return output(
        Float32Array.from(x.values(), (v) => v * v),
        x.shape,
      );
    },
    backward(ctx, gy, [gx]) {
      const x = ctx.saved[0].values();
      const g = gy.values();
      for (let i = 0; i < g.length; i++) gx!.data[i] += factor * 2 * x[i] * g[i];
    },
  };
  const f = defineOp(op);
  return (x: Tensor) => f([x]);
}

describe("gradCheck", () => {
  it("passes a correct backward", () => {
    const r = gradCheck(square(1), [leaf([5, 3], 7)]);
    expect(r.checked).toBe(15);
    expect(r.worst).toBeLessThan(0.2);
  });

  it("fails a backward that is off by 10% or has the wrong sign, naming the element", () => {
    expect(() => gradCheck(square(1.1), [leaf([5, 3], 7)])).toThrow(
      /gradCheck: \d+ of 15 gradients differ:\ninput 0 \[/,
    );
    expect(() => gradCheck(square(-1), [leaf([4], 8)])).toThrow(/gradients differ/);
  });

  it("fails a backward that forgets an input", () => {
    const op: OpDef = {
      name: "forgetful-add",
      forward(_ctx, [a, b]) {
        return output(
          Float32Array.from(a.values(), (v, i) => v + b.values()[i]),
          a.shape,
        );
      },
      backward(_ctx, gy, [ga]) {
        const g = gy.values();
        for (let i = 0; i < g.length; i++) ga!.data[i] += g[i];
      },
    };
    const f = defineOp(op);
    expect(() => gradCheck((a, b) => f([a, b]), [leaf([3], 1), leaf([3], 2)])).toThrow(/input 1/);
  });
});
