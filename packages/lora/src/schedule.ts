// Learning-rate schedules: linear warmup, then constant, linear or cosine decay to a floor.

/** Options of {@link learningRate}. */
export interface ScheduleOptions {
  /** Peak learning rate. */
  lr: number;
  /** Optimizer steps in the whole run (the decay ends there). */
  totalSteps: number;
  /** Steps of linear warmup from `lr / warmupSteps` to `lr`. Default 0. */
  warmupSteps?: number;
  /** Shape after warmup. Default `cosine`. */
  kind?: "constant" | "linear" | "cosine";
  /** Floor the decay ends at. Default 0. */
  minLr?: number;
}

/** Checks a schedule, naming the bad option. */
export function checkSchedule(s: ScheduleOptions): void {
  const bad = (m: string) => {
    throw new Error(`lora: schedule: ${m}`);
  };
  if (!(Number.isFinite(s.lr) && s.lr > 0)) bad(`lr must be finite and > 0, got ${s.lr}`);
  if (!(Number.isSafeInteger(s.totalSteps) && s.totalSteps >= 1))
    bad(`totalSteps must be a positive integer, got ${s.totalSteps}`);
  const w = s.warmupSteps ?? 0;
  if (!(Number.isSafeInteger(w) && w >= 0 && w <= s.totalSteps))
    bad(`warmupSteps must be an integer in [0, totalSteps], got ${w}`);
  const m = s.minLr ?? 0;
  if (!(Number.isFinite(m) && m >= 0 && m <= s.lr)) bad(`minLr must be in [0, lr], got ${m}`);
  if (s.kind !== undefined && !["constant", "linear", "cosine"].includes(s.kind))
    bad(`unknown kind "${s.kind}"`);
}

/**
 * The learning rate of optimizer step `step` (0-based):
 * ```
 * step < W:  lr · (step + 1) / W
 * else:      p = (step − W) / max(1, T − W)          (0 … 1)
 *            constant: lr;  linear: lr − (lr − min)·p;  cosine: min + (lr − min)·(1 + cos(πp))/2
 * ```
 */
export function learningRate(step: number, s: ScheduleOptions): number {
  const W = s.warmupSteps ?? 0;
  if (step < W) return (s.lr * (step + 1)) / W;
  const min = s.minLr ?? 0;
  const p = Math.min(1, (step - W) / Math.max(1, s.totalSteps - W));
  switch (s.kind ?? "cosine") {
    case "constant":
      return s.lr;
    case "linear":
      return s.lr - (s.lr - min) * p;
    default:
      return min + ((s.lr - min) * (1 + Math.cos(Math.PI * p))) / 2;
  }
}
