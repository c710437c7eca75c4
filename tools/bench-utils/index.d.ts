/** One timing: median/min wall time over repeated runs of a function. */
export interface Timing {
  name: string;
  medianMs: number;
  minMs: number;
  runs: number;
}
/** Runs `fn` once to warm up, then repeatedly for at least `minTimeMs` (default 500) and `minRuns` (default 3). */
export declare function time(
  name: string,
  fn: () => unknown,
  opts?: { minTimeMs?: number; minRuns?: number; maxRuns?: number },
): Timing;
/** Async variant of {@link time}. */
export declare function timeAsync(
  name: string,
  fn: () => Promise<unknown>,
  opts?: { minTimeMs?: number; minRuns?: number; maxRuns?: number },
): Promise<Timing>;
/** A benchmark row: named like `quant-kernels:qmatvec:int2g64:4096x4096`, with any numeric/string fields. */
export type Row = { name: string } & Record<string, number | string | boolean | null>;
/** Folder results go to: env INT21_BENCH_OUT, default `<repo>/benchmarks/results`. */
export declare function resultsDir(): string;
/**
 * Prints rows as a table, writes `<resultsDir>/<suite>.json` ({suite, date, node, cpus, rows, notes}) and,
 * when `chart` is given, `<resultsDir>/<suite>.svg`: a horizontal bar chart of `chart.value` per row.
 */
export declare function report(
  suite: string,
  rows: Row[],
  opts?: { notes?: string[]; chart?: { title: string; value: string; unit?: string; label?: string } },
): string;
/** A standalone horizontal bar chart as SVG text. */
export declare function barChartSvg(title: string, labels: string[], values: number[], unit?: string): string;
/** A standalone line chart (e.g. loss curves) as SVG text; each series is [x, y] points. */
export declare function lineChartSvg(
  title: string,
  series: { name: string; points: [number, number][] }[],
  axes?: { x?: string; y?: string },
): string;
/** Prevents dead-code elimination of a result. */
export declare function consume(x: unknown): void;
