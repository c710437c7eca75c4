import { describe, expect, it } from "vitest";
import { barChartSvg } from "./charts";

const widths = (svg: string) =>
  [...svg.matchAll(/<rect x="\d+" y="[\d.]+" width="([\d.]+)"/g)].map((m) => Number(m[1]));

describe("barChartSvg", () => {
  it("draws one bar per value, proportional to the value (or its log), labels escaped", () => {
    const lin = barChartSvg("t", [
      ["a<b", 10],
      ["c", 5],
    ]);
    expect(lin).toContain("a&lt;b");
    const [w1, w2] = widths(lin);
    expect(w2 / w1).toBeCloseTo(0.5, 2);
    const [l1, l2] = widths(
      barChartSvg(
        "t",
        [
          ["x", 100],
          ["y", 10],
        ],
        { log: true },
      ),
    );
    expect(l2 / l1).toBeCloseTo(0.5, 2);
    expect(barChartSvg("t", [["n", Number.NaN]])).toContain("n/a");
  });
});
