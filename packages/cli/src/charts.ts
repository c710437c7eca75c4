// A horizontal bar chart as a standalone SVG (perplexity per configuration).

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/**
 * Horizontal bars, one per `[label, value]`, the value printed at each bar's end. With `log`, bar lengths
 * are proportional to `log(value)` (values ≥ 1, e.g. perplexities spanning 5 to 400).
 */
export function barChartSvg(
  title: string,
  bars: readonly (readonly [string, number])[],
  opts: { unit?: string; log?: boolean } = {},
): string {
  const unit = opts.unit ?? "";
  const len = (v: number) => (opts.log ? Math.log(Math.max(v, 1)) : v);
  const rowH = 34;
  const left = 230;
  const right = 110;
  const W = 760;
  const top = 48;
  const H = top + bars.length * rowH + 20;
  const max = Math.max(...bars.map(([, v]) => (Number.isFinite(v) ? len(v) : 0)), 1e-12);
  const colors = ["#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"];
  const rows = bars.map(([label, v], i) => {
    const y = top + i * rowH;
    const w = Number.isFinite(v) ? ((W - left - right) * len(v)) / max : 0;
    return (
      `<text x="${left - 8}" y="${y + rowH / 2 + 4}" text-anchor="end" font-size="13">${esc(label)}</text>` +
      `<rect x="${left}" y="${y + 6}" width="${w.toFixed(1)}" height="${rowH - 12}" fill="${colors[i % colors.length]}"/>` +
      `<text x="${(left + w + 6).toFixed(1)}" y="${y + rowH / 2 + 4}" font-size="13">${Number.isFinite(v) ? v.toFixed(2) : "n/a"}${esc(unit)}</text>`
    );
  });
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">` +
    `<rect width="100%" height="100%" fill="white"/>` +
    `<text x="${W / 2}" y="26" text-anchor="middle" font-size="16" font-weight="bold">${esc(title)}</text>` +
    rows.join("") +
    "</svg>\n"
  );
}
