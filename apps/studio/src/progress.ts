// Progress arithmetic shared by every stage: fraction, ETA by linear extrapolation, and readable durations.

/** One progress report of a stage. */
export interface StageProgress {
  stage: string;
  done: number;
  total: number;
  elapsedMs: number;
  /** Remaining time by linear extrapolation (NaN before the first unit is done). */
  etaMs: number;
  /** Free text (e.g. `layer 3 wq`, `loss 2.31`). */
  detail: string;
}

/** `elapsed · (total − done) / done`, NaN while nothing is done; 0 once finished. */
export function etaMs(done: number, total: number, elapsedMs: number): number {
  if (!(total > 0) || done < 0 || elapsedMs < 0) return Number.NaN;
  if (done >= total) return 0;
  if (done === 0) return Number.NaN;
  return (elapsedMs * (total - done)) / done;
}

/** `950 ms`, `12.3 s`, `4 min 05 s`, `1 h 02 min`; `—` for NaN. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

/** `512 B`, `3.4 KiB`, `12.50 MiB`, `1.23 GiB`. */
export function formatBytes(b: number): string {
  if (!Number.isFinite(b) || b < 0) return "—";
  if (b < 1024) return `${b} B`;
  if (b < 2 ** 20) return `${(b / 1024).toFixed(1)} KiB`;
  if (b < 2 ** 30) return `${(b / 2 ** 20).toFixed(2)} MiB`;
  return `${(b / 2 ** 30).toFixed(2)} GiB`;
}

/** A progress reporter for one stage: call `tick(done, detail)`; it stamps elapsed time and ETA. */
export function stageClock(
  stage: string,
  total: number,
  emit: (p: StageProgress) => void,
  now: () => number = () => performance.now(),
): (done: number, detail?: string) => void {
  const t0 = now();
  return (done, detail = "") => {
    const elapsedMs = now() - t0;
    emit({ stage, done, total, elapsedMs, etaMs: etaMs(done, total, elapsedMs), detail });
  };
}
