// What identifies a training run (every input that determines its result: content hashes of the model
// and data, every hyper-parameter), how two identities differ, and the guards that stop a run that
// diverges. Used by the lora Trainer's checkpoints and by LREC's state file.

/** A value of a run identity field: JSON scalars, or a list of them. */
export type RunIdentityValue = string | number | boolean | null | readonly (string | number | boolean)[];

/**
 * Everything that determines a training run, as a flat record: content hashes (`"sha256:…"`) of the
 * model and data, and every hyper-parameter (rank, alpha, targets, lr, steps, seq, batch, seed, …).
 * Paths, modification times and settings that do not change the result (threads, checkpoint period)
 * do not belong in it.
 */
export type RunIdentity = Readonly<Record<string, RunIdentityValue>>;

/** One field in which a saved run and the run asked for differ. */
export interface RunDifference {
  field: string;
  /** The saved value (`undefined`: the saved run has no such field). */
  saved: RunIdentityValue | undefined;
  /** The value of the run asked for (`undefined`: it has no such field). */
  now: RunIdentityValue | undefined;
}

function same(a: RunIdentityValue | undefined, b: RunIdentityValue | undefined): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => v === b[i]);
  return a === b;
}

/** The fields in which two run identities differ, in the order of `now`'s fields, then `saved`'s extra ones. */
export function diffRunIdentity(saved: RunIdentity, now: RunIdentity): RunDifference[] {
  const out: RunDifference[] = [];
  for (const field of Object.keys(now))
    if (!same(saved[field], now[field])) out.push({ field, saved: saved[field], now: now[field] });
  for (const field of Object.keys(saved))
    if (!(field in now)) out.push({ field, saved: saved[field], now: undefined });
  return out;
}

function show(v: RunIdentityValue | undefined): string {
  if (v === undefined) return "(none)";
  if (typeof v === "string") return /^sha256:/.test(v) ? `${v.slice(0, 19)}…` : JSON.stringify(v);
  return JSON.stringify(v);
}

/** One line per difference: `  lr: 0.005 → 10`. */
export function formatRunDifferences(diffs: readonly RunDifference[]): string {
  return diffs.map((d) => `  ${d.field}: ${show(d.saved)} → ${show(d.now)}`).join("\n");
}

/**
 * Thrown when a checkpoint belongs to a run that differs from the one asked for. `differences` lists
 * each field (saved → now); `step` is the step the checkpoint holds. Start over, or continue on purpose
 * (the Trainer's `resume(dir, { force: true })`, LREC's `forceResume`).
 */
export class RunMismatchError extends Error {
  constructor(
    readonly path: string,
    readonly step: number,
    readonly differences: readonly RunDifference[],
  ) {
    super(
      `${path} (step ${step}) belongs to a different run; it differs in:\n${formatRunDifferences(differences)}`,
    );
    this.name = "RunMismatchError";
  }
}

/**
 * Thrown when training diverges (see {@link DivergenceGuard}). The last checkpoint written before the
 * loss went bad (`lastGoodStep`, 0 when none was) is left as it was.
 */
export class TrainingDivergedError extends Error {
  constructor(
    message: string,
    /** The step (1-based) at which the run was stopped. */
    readonly step: number,
    /** The step of the last checkpoint kept (0: none was written). */
    readonly lastGoodStep: number,
  ) {
    super(message);
    this.name = "TrainingDivergedError";
  }
}

/** Default {@link DivergenceOptions.factor}. */
export const DEFAULT_DIVERGE_FACTOR = 1.5;
/** Default {@link DivergenceOptions.steps}. */
export const DEFAULT_DIVERGE_STEPS = 20;
/** Steps in the moving mean the divergence guard compares. */
export const DIVERGE_WINDOW = 5;

/** When a run counts as diverged. */
export interface DivergenceOptions {
  /**
   * A step is bad when its loss, or the mean loss of the last {@link DIVERGE_WINDOW} steps, is above
   * `factor` × the running minimum (the lowest such mean so far; the first steps' means count, so the
   * untrained model's loss is a bar), or when its loss or gradient is not finite. Default 1.5;
   * `Infinity` turns the loss test off (non-finite steps still count).
   */
  factor?: number;
  /** This many bad steps in a row stop the run. Default 20. */
  steps?: number;
}

/**
 * Watches the per-step training loss. The running minimum is the lowest mean of the last
 * {@link DIVERGE_WINDOW} finite losses seen so far (of fewer at the start, so the first step's loss is
 * a bar); a step is bad when its loss or the current mean is above `factor` × that minimum, or when
 * its loss or gradient was not finite, and `steps` bad steps in a row mean divergence. (A minimum of
 * means, not of single steps, keeps one unusually easy batch from setting a bar the others cannot
 * reach; judging each step lets the first bad step hold back a checkpoint; judging the mean keeps a
 * lucky batch in a diverged run from ending the streak.) Losses are assumed non-negative
 * (cross-entropy, KL).
 */
export class DivergenceGuard {
  readonly factor: number;
  readonly steps: number;
  private window: number[] = [];
  /** The running minimum: lowest moving mean so far. */
  best = Number.POSITIVE_INFINITY;
  /** The last loss observed. */
  last = Number.NaN;
  /** The current moving mean. */
  mean = Number.NaN;
  /** Bad steps in a row, up to the last one observed. */
  streak = 0;

  constructor(opts: DivergenceOptions = {}, where = "training") {
    this.factor = opts.factor ?? DEFAULT_DIVERGE_FACTOR;
    this.steps = opts.steps ?? DEFAULT_DIVERGE_STEPS;
    if (!(this.factor > 1))
      throw new Error(`${where}: the divergence factor must be a number > 1, got ${opts.factor}`);
    if (!Number.isSafeInteger(this.steps) || this.steps < 1)
      throw new Error(`${where}: the divergence steps must be a positive integer, got ${opts.steps}`);
  }

  /** Records one step's loss (`NaN` for a skipped, non-finite step); returns true when the run has diverged. */
  observe(loss: number): boolean {
    this.last = loss;
    if (!Number.isFinite(loss)) {
      this.streak++;
      return this.streak >= this.steps;
    }
    this.window.push(loss);
    if (this.window.length > DIVERGE_WINDOW) this.window.shift();
    const mean = this.window.reduce((a, b) => a + b, 0) / this.window.length;
    this.mean = mean;
    if (mean < this.best) this.best = mean;
    const bar = this.factor * this.best;
    this.streak = loss > bar || mean > bar ? this.streak + 1 : 0;
    return this.streak >= this.steps;
  }

  /** A one-line description of why the run counts as diverged. */
  describe(): string {
    const min = this.best.toPrecision(4);
    return Number.isFinite(this.last)
      ? `the loss (last ${this.last.toPrecision(4)}, mean of the last ${DIVERGE_WINDOW} ${this.mean.toPrecision(4)}) stayed above ${this.factor} × its running minimum (${min}) or was not finite for ${this.steps} steps in a row`
      : `the loss or gradient was not finite, or the loss above ${this.factor} × its running minimum (${min}), for ${this.steps} steps in a row`;
  }
}

/** An incremental SHA-256 (node:crypto), for content hashes of data and tensors. */
export interface ContentHasher {
  update(data: string | ArrayBufferView): ContentHasher;
  /** `"sha256:<64 hex digits>"`. */
  digest(): string;
}

/** A new {@link ContentHasher} (Node only: it loads node:crypto). */
export async function contentHasher(): Promise<ContentHasher> {
  const { createHash } = await import("node:crypto");
  const h = createHash("sha256");
  const self: ContentHasher = {
    update(data) {
      h.update(
        typeof data === "string" ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      );
      return self;
    },
    digest: () => `sha256:${h.digest("hex")}`,
  };
  return self;
}

/**
 * The SHA-256 of a file's contents (streamed, so a 13 GB model is never held in memory), or of a
 * directory: the names and contents of its regular files, sorted by name, not recursing and skipping
 * names that start with a dot. `"sha256:<hex>"`. Node only.
 */
export async function hashPathContents(path: string): Promise<string> {
  const { createReadStream } = await import("node:fs");
  const { readdir, stat } = await import("node:fs/promises");
  const { join } = await import("node:path");
  const h = await contentHasher();
  const feed = async (file: string) => {
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 22 })) h.update(chunk as Buffer);
  };
  const st = await stat(path);
  if (st.isDirectory()) {
    const names = (await readdir(path)).filter((n) => !n.startsWith(".")).sort();
    for (const n of names) {
      const p = join(path, n);
      if (!(await stat(p)).isFile()) continue;
      h.update(`\0${n}\0`);
      await feed(p);
    }
  } else await feed(path);
  return h.digest();
}
