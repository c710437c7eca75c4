import { describe, expect, it } from "vitest";
import { lineChartSvg, niceTicks } from "./loss-chart";

describe("lineChartSvg", () => {
  it("draws one polyline per series with its legend, escaped", () => {
    const svg = lineChartSvg(
      "loss <train>",
      [
        {
          name: "train",
          points: [
            [0, 3],
            [1, 2.5],
            [2, 2.1],
          ],
        },
        {
          name: "held-out & co",
          points: [
            [0, 3.1],
            [2, Number.NaN],
            [2, 2.4],
          ],
        },
      ],
      { x: "step", y: "nats" },
    );
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    expect(svg).toContain("loss &lt;train&gt;");
    expect(svg).toContain("held-out &amp; co");
    expect(svg).not.toContain("NaN");
    // x = 0 maps to the left margin, the highest loss to near the top
    expect(svg).toContain('points="70.0,');
  });

  it("picks round ticks", () => {
    expect(niceTicks(0, 10)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(2.05, 3.1)).toEqual([2.25, 2.5, 2.75, 3]);
    expect(niceTicks(1, 1)).toEqual([1]);
  });

  it("handles empty and single-point series", () => {
    expect(lineChartSvg("e", [])).toContain("</svg>");
    expect(lineChartSvg("one", [{ name: "a", points: [[3, 1]] }])).toContain("<circle");
  });
});
