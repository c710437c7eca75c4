// Timing, JSON results and SVG charts for int21 benchmarks (see index.d.ts for the API).
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
let sink = 0;
export function consume(x) {
  if (typeof x === "number") sink += x;
  else if (x && typeof x === "object" && "length" in x) sink += x.length;
  else sink += 1;
  return sink;
}

function summarize(name, samples) {
  samples.sort((a, b) => a - b);
  return { name, medianMs: samples[samples.length >> 1], minMs: samples[0], runs: samples.length };
}

export function time(name, fn, { minTimeMs = 500, minRuns = 3, maxRuns = 1000 } = {}) {
  consume(fn());
  const samples = [];
  const start = performance.now();
  while (samples.length < maxRuns && (samples.length < minRuns || performance.now() - start < minTimeMs)) {
    const t0 = performance.now();
    consume(fn());
    samples.push(performance.now() - t0);
  }
  return summarize(name, samples);
}

export async function timeAsync(name, fn, { minTimeMs = 500, minRuns = 3, maxRuns = 1000 } = {}) {
  consume(await fn());
  const samples = [];
  const start = performance.now();
  while (samples.length < maxRuns && (samples.length < minRuns || performance.now() - start < minTimeMs)) {
    const t0 = performance.now();
    consume(await fn());
    samples.push(performance.now() - t0);
  }
  return summarize(name, samples);
}

export function resultsDir() {
  return process.env.INT21_BENCH_OUT
    ? resolve(process.env.INT21_BENCH_OUT)
    : join(repoRoot, "benchmarks", "results");
}

function fmt(v) {
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(1) : a >= 1 ? v.toFixed(3) : v.toPrecision(3);
}

const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function barChartSvg(title, labels, values, unit = "") {
  const w = 760;
  const left = Math.min(380, 12 + 6.2 * Math.max(8, ...labels.map((l) => l.length)));
  const bh = 20;
  const h = 50 + labels.length * (bh + 6);
  const max = Math.max(1e-30, ...values.filter(Number.isFinite));
  let s = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="11">`;
  s += `<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="14" font-weight="bold">${esc(title)}</text>`;
  labels.forEach((l, i) => {
    const y = 36 + i * (bh + 6);
    const v = values[i];
    const bw = Number.isFinite(v) ? Math.max(1, ((w - left - 90) * v) / max) : 0;
    s += `<text x="${left - 6}" y="${y + 14}" text-anchor="end">${esc(l)}</text>`;
    s += `<rect x="${left}" y="${y}" width="${bw}" height="${bh}" fill="#4a7ebb"/>`;
    s += `<text x="${left + bw + 4}" y="${y + 14}">${esc(fmt(v))}${esc(unit)}</text>`;
  });
  return `${s}</svg>\n`;
}

export function lineChartSvg(title, series, axes = {}) {
  const w = 760,
    h = 420,
    l = 70,
    r = 160,
    t = 36,
    b = 46;
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const xs = pts.map((p) => p[0]),
    ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs, 0),
    x1 = Math.max(...xs, 1),
    y0 = Math.min(...ys),
    y1 = Math.max(...ys, y0 + 1e-9);
  const X = (x) => l + ((w - l - r) * (x - x0)) / (x1 - x0 || 1);
  const Y = (y) => h - b - ((h - t - b) * (y - y0)) / (y1 - y0 || 1);
  const colors = ["#4a7ebb", "#d1603d", "#3f9e4d", "#8b5fbf", "#c9a227", "#555555"];
  let s = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="11">`;
  s += `<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="14" font-weight="bold">${esc(title)}</text>`;
  s += `<line x1="${l}" y1="${h - b}" x2="${w - r}" y2="${h - b}" stroke="black"/><line x1="${l}" y1="${t}" x2="${l}" y2="${h - b}" stroke="black"/>`;
  for (let i = 0; i <= 4; i++) {
    const yv = y0 + ((y1 - y0) * i) / 4,
      xv = x0 + ((x1 - x0) * i) / 4;
    s += `<text x="${l - 4}" y="${Y(yv) + 4}" text-anchor="end">${esc(fmt(yv))}</text>`;
    s += `<text x="${X(xv)}" y="${h - b + 14}" text-anchor="middle">${esc(fmt(xv))}</text>`;
  }
  if (axes.x) s += `<text x="${(l + w - r) / 2}" y="${h - 8}" text-anchor="middle">${esc(axes.x)}</text>`;
  if (axes.y)
    s += `<text x="14" y="${(t + h - b) / 2}" transform="rotate(-90 14 ${(t + h - b) / 2})" text-anchor="middle">${esc(axes.y)}</text>`;
  series.forEach((ser, i) => {
    const c = colors[i % colors.length];
    const p = ser.points
      .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y))
      .map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`);
    if (p.length) s += `<polyline fill="none" stroke="${c}" stroke-width="1.5" points="${p.join(" ")}"/>`;
    s += `<rect x="${w - r + 10}" y="${t + i * 16}" width="10" height="10" fill="${c}"/><text x="${w - r + 24}" y="${t + 9 + i * 16}">${esc(ser.name)}</text>`;
  });
  return `${s}</svg>\n`;
}

export function report(suite, rows, opts = {}) {
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const widths = keys.map((k) => Math.max(k.length, ...rows.map((r) => fmt(r[k] ?? "").length)));
  const line = (cells) => cells.map((c, i) => c.padEnd(widths[i])).join("  ");
  console.log(`\n## ${suite}`);
  console.log(line(keys));
  for (const r of rows) console.log(line(keys.map((k) => fmt(r[k] ?? ""))));
  for (const n of opts.notes ?? []) console.log(`note: ${n}`);
  const dir = resultsDir();
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${suite.replace(/[^A-Za-z0-9._-]+/g, "_")}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ suite, date: new Date().toISOString(), node: process.version, cpus: cpus().length, cpu: cpus()[0]?.model, rows, notes: opts.notes ?? [] }, null, 2)}\n`,
  );
  if (opts.chart) {
    const { title, value, unit = "", label = "name" } = opts.chart;
    const rs = rows.filter((r) => typeof r[value] === "number");
    writeFileSync(
      file.replace(/\.json$/, ".svg"),
      barChartSvg(
        title,
        rs.map((r) => String(r[label])),
        rs.map((r) => r[value]),
        unit,
      ),
    );
  }
  return file;
}
