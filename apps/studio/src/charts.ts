// Small SVG charts (no dependency): line charts of loss / KL per step and a bar chart of perplexity per
// configuration. Pure string builders, so they run in the page and in unit tests alike.

/** One line of a {@link lineChart}. */
export interface Series {
  name: string;
  points: readonly (readonly [number, number])[];
}

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

function esc(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
}

/** Round tick values covering [lo, hi] (about `n` of them). */
export function ticks(lo: number, hi: number, n = 4): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi <= lo) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
    out.push(Number(v.toPrecision(12)));
  return out;
}

function fmt(v: number): string {
  return Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0)
    ? v.toExponential(1)
    : String(Number(v.toPrecision(3)));
}

/**
 * A line chart: one polyline per series over shared axes, with a legend. Non-finite points are left out.
 * Returns `<svg …>` markup with `data-series` / `data-points` attributes a test can read.
 */
export function lineChart(title: string, series: readonly Series[], axes: { x: string; y: string }): string {
  const W = 460;
  const H = 220;
  const L = 52;
  const R = 10;
  const T = 26;
  const B = 34;
  const pts = series.flatMap((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  const n = pts.length;
  let [x0, x1, y0, y1] = [0, 1, 0, 1];
  if (n > 0) {
    x0 = Math.min(...pts.map((p) => p[0]));
    x1 = Math.max(...pts.map((p) => p[0]));
    y0 = Math.min(...pts.map((p) => p[1]));
    y1 = Math.max(...pts.map((p) => p[1]));
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  }
  const sx = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y: number) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" data-series="${series.length}" data-points="${n}" role="img" aria-label="${esc(title)}">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${L}" y="16" font-size="12" font-weight="bold">${esc(title)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#888"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#888"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 4}" font-size="10" text-anchor="middle">${esc(axes.x)}</text>`,
    `<text x="10" y="${(T + H - B) / 2}" font-size="10" text-anchor="middle" transform="rotate(-90 10 ${(T + H - B) / 2})">${esc(axes.y)}</text>`,
  ];
  if (n > 0) {
    for (const t of ticks(y0, y1))
      parts.push(
        `<text x="${L - 4}" y="${sy(t) + 3}" font-size="9" text-anchor="end">${fmt(t)}</text>`,
        `<line x1="${L}" y1="${sy(t)}" x2="${W - R}" y2="${sy(t)}" stroke="#eee"/>`,
      );
    for (const t of ticks(x0, x1))
      parts.push(`<text x="${sx(t)}" y="${H - B + 12}" font-size="9" text-anchor="middle">${fmt(t)}</text>`);
  }
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const good = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (good.length > 0) {
      const d = good.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
      parts.push(`<polyline fill="none" stroke="${c}" stroke-width="1.5" points="${d}"/>`);
      if (good.length === 1)
        parts.push(`<circle cx="${sx(good[0][0])}" cy="${sy(good[0][1])}" r="3" fill="${c}"/>`);
    }
    parts.push(
      `<text x="${W - R - 4}" y="${T + 12 + 12 * i}" font-size="10" text-anchor="end" fill="${c}">${esc(s.name)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("");
}

/** A bar chart of one value per labelled configuration (e.g. perplexity: float, INT2 GPTQ, + LREC, + LoRA). */
export function barChart(
  title: string,
  bars: readonly { label: string; value: number }[],
  unit: string,
): string {
  const W = 460;
  const rowH = 22;
  const H = 30 + rowH * Math.max(1, bars.length);
  const L = 210;
  const finite = bars.filter((b) => Number.isFinite(b.value) && b.value > 0);
  const max = finite.length ? Math.max(...finite.map((b) => b.value)) : 1;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" data-bars="${bars.length}" role="img" aria-label="${esc(title)}">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="8" y="16" font-size="12" font-weight="bold">${esc(title)}</text>`,
  ];
  bars.forEach((b, i) => {
    const y = 26 + i * rowH;
    const ok = Number.isFinite(b.value) && b.value > 0;
    const w = ok ? ((W - L - 70) * b.value) / max : 0;
    parts.push(
      `<text x="${L - 6}" y="${y + 13}" font-size="10" text-anchor="end">${esc(b.label)}</text>`,
      `<rect x="${L}" y="${y + 2}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${COLORS[i % COLORS.length]}"/>`,
      `<text x="${L + w + 4}" y="${y + 13}" font-size="10">${ok ? `${fmt(b.value)} ${esc(unit)}` : "n/a"}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("");
}
