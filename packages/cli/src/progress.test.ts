import { describe, expect, it } from "vitest";
import { bufferIo } from "./cli-io";
import { formatDuration, progressBar } from "./progress";

describe("progressBar", () => {
  it("prints one line per 10% in a log, with an ETA extrapolated from the elapsed time", () => {
    let t = 0;
    const io = bufferIo();
    const bar = progressBar(io, "work", { now: () => t });
    for (let i = 1; i <= 100; i++) {
      t = i * 100;
      bar.update(i, 100);
    }
    bar.finish("done");
    const lines = io.err().trim().split("\n");
    // 1%, 10%, 20% … 90%, then the final line
    expect(lines).toHaveLength(11);
    expect(lines[0]).toBe("work [--------------------]   1% 1/100 0.1s ETA 9.9s");
    expect(lines[1]).toBe("work [##------------------]  10% 10/100 1.0s ETA 9.0s");
    expect(lines[4]).toBe("work [########------------]  40% 40/100 4.0s ETA 6.0s");
    expect(lines[10]).toBe("work [####################] 100% 100/100 10s ETA 0s done");
  });

  it("redraws in place on a terminal and is silent when quiet", () => {
    const tty = bufferIo({ stderrIsTTY: true });
    const bar = progressBar(tty, "x", { now: () => 0 });
    bar.update(1, 4);
    bar.update(2, 4);
    bar.finish();
    expect(tty.err().split("\r")).toHaveLength(4);
    expect(tty.err().endsWith("\n")).toBe(true);
    const quiet = bufferIo();
    const q = progressBar(quiet, "x", { quiet: true });
    q.update(1, 2);
    q.finish();
    expect(quiet.err()).toBe("");
  });

  it("formats durations", () => {
    expect(formatDuration(400)).toBe("0.4s");
    expect(formatDuration(42_000)).toBe("42s");
    expect(formatDuration(185_000)).toBe("3m05s");
    expect(formatDuration(3_720_000)).toBe("1h02m");
    expect(formatDuration(Number.NaN)).toBe("?");
  });
});
