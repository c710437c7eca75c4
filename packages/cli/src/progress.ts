// A small progress bar with ETA on stderr: redrawn in place on a terminal, one line per 10% in a log.
import type { CliIo } from "./cli-io";

/** A running progress bar (see {@link progressBar}). */
export interface ProgressBar {
  /** Reports `done` of `total` units; `note` is shown after the ETA (e.g. the current loss). */
  update(done: number, total: number, note?: string): void;
  /** Ends the bar (prints its final state once). */
  finish(note?: string): void;
}

/** `1h02m`, `3m05s`, `12s`, `0.4s`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "?";
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(1)}s`;
  const t = Math.round(s);
  if (t < 60) return `${t}s`;
  const m = Math.floor(t / 60);
  if (m < 60) return `${m}m${String(t % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

/**
 * A progress bar on `io.stderr`: `label [#########-----------]  45% 9/20 2.1s ETA 2.6s note`.
 * The ETA extrapolates the elapsed time linearly. Silent when `quiet`.
 */
export function progressBar(
  io: CliIo,
  label: string,
  opts: { quiet?: boolean; now?: () => number } = {},
): ProgressBar {
  const now = opts.now ?? (() => performance.now());
  const t0 = now();
  let lastDecile = -1;
  let last = { done: 0, total: 1, note: "" };
  let finished = false;
  const line = (done: number, total: number, note: string): string => {
    const frac = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
    const width = 20;
    const fill = Math.round(frac * width);
    const elapsed = now() - t0;
    const eta = done > 0 ? (elapsed * (total - done)) / done : Number.NaN;
    const pct = `${Math.floor(frac * 100)}%`.padStart(4);
    return `${label} [${"#".repeat(fill)}${"-".repeat(width - fill)}] ${pct} ${done}/${total} ${formatDuration(elapsed)} ETA ${done >= total ? "0s" : formatDuration(eta)}${note ? ` ${note}` : ""}`;
  };
  return {
    update(done, total, note = "") {
      if (opts.quiet || finished) return;
      last = { done, total, note };
      if (io.stderrIsTTY) {
        io.stderr.write(`\r${line(done, total, note)}\x1b[K`);
        return;
      }
      const decile = total > 0 ? Math.floor((10 * done) / total) : 0;
      if (decile > lastDecile && done < total) {
        lastDecile = decile;
        io.stderr.write(`${line(done, total, note)}\n`);
      }
    },
    finish(note) {
      if (opts.quiet || finished) return;
      finished = true;
      const text = line(last.total, last.total, note ?? last.note);
      io.stderr.write(io.stderrIsTTY ? `\r${text}\x1b[K\n` : `${text}\n`);
    },
  };
}
