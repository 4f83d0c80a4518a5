/**
 * The "bugs found over time" plot of the efficacy benchmark, as a standalone SVG (no
 * dependency): for each seed, a thin step curve of how many zoo bugs that seed's hunts had
 * found by time t; a thick curve for the mean over the seeds. Time is on a log axis from 10 ms
 * to the hunt budget, since times to a first finding span orders of magnitude.
 *
 * @module
 */
import type { EfficacyReport } from "./efficacy.ts";

const W = 720;
const H = 420;
const M = { left: 60, right: 20, top: 40, bottom: 50 };
const T_MIN = 0.01;

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Step points `[t, count]` of a curve from the sorted times at which it goes up by one. */
function steps(times: readonly number[], tMax: number): [number, number][] {
  const pts: [number, number][] = [[T_MIN, 0]];
  let n = 0;
  for (const t of [...times].sort((a, b) => a - b)) {
    const x = Math.max(t, T_MIN);
    pts.push([x, n]);
    n++;
    pts.push([x, n]);
  }
  pts.push([tMax, n]);
  return pts;
}

/** Renders the report's plot. */
export function efficacySvg(report: EfficacyReport): string {
  const tMax = Math.max(report.plan.budgetMs / 1000, T_MIN * 10);
  const nBugs = report.plan.bugs.length;
  const x = (t: number) =>
    M.left + (Math.log10(t / T_MIN) / Math.log10(tMax / T_MIN)) * (W - M.left - M.right);
  const y = (n: number) => H - M.bottom - (n / Math.max(nBugs, 1)) * (H - M.top - M.bottom);
  const path = (pts: readonly [number, number][]) =>
    pts.map(([t, n], i) => `${i === 0 ? "M" : "L"}${x(t).toFixed(1)},${y(n).toFixed(1)}`).join(
      " ",
    );
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" ` +
      `viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">` +
      `${esc(`Injected bugs found over time (${nBugs} bugs, ${report.plan.seeds} seeds)`)}</text>`,
  );
  // Axes, ticks and grid.
  const x0 = M.left;
  const y0 = H - M.bottom;
  parts.push(
    `<line x1="${x0}" y1="${y0}" x2="${W - M.right}" y2="${y0}" stroke="black"/>`,
    `<line x1="${x0}" y1="${y0}" x2="${x0}" y2="${M.top}" stroke="black"/>`,
  );
  for (let e = -2; 10 ** e <= tMax * 1.0001; e++) {
    const t = 10 ** e;
    const label = t >= 1 ? `${t}` : t.toFixed(-e);
    parts.push(
      `<line x1="${x(t).toFixed(1)}" y1="${y0}" x2="${x(t).toFixed(1)}" y2="${M.top}" ` +
        `stroke="#ddd"/>`,
      `<text x="${x(t).toFixed(1)}" y="${y0 + 16}" text-anchor="middle">${label}</text>`,
    );
  }
  const yStep = Math.max(1, Math.ceil(nBugs / 10));
  for (let n = 0; n <= nBugs; n += yStep) {
    parts.push(
      `<line x1="${x0}" y1="${y(n).toFixed(1)}" x2="${W - M.right}" y2="${y(n).toFixed(1)}" ` +
        `stroke="#eee"/>`,
      `<text x="${x0 - 6}" y="${(y(n) + 4).toFixed(1)}" text-anchor="end">${n}</text>`,
    );
  }
  parts.push(
    `<text x="${(x0 + W - M.right) / 2}" y="${H - 12}" text-anchor="middle">` +
      `time to first finding (s, log scale)</text>`,
    `<text x="16" y="${(M.top + y0) / 2}" text-anchor="middle" ` +
      `transform="rotate(-90 16 ${(M.top + y0) / 2})">bugs found</text>`,
  );
  // One thin curve per seed, then the mean.
  const seeds = [...new Set(report.runs.map((r) => r.seed))].sort((a, b) => a - b);
  const perSeed = seeds.map((s) =>
    report.runs.filter((r) => r.seed === s && r.found).map((r) => r.ms / 1000)
  );
  for (const times of perSeed) {
    parts.push(
      `<path d="${path(steps(times, tMax))}" fill="none" stroke="#7aa6d8" stroke-width="1"/>`,
    );
  }
  const all = perSeed.flat().sort((a, b) => a - b);
  const mean: [number, number][] = [[T_MIN, 0]];
  all.forEach((t, i) => {
    const tt = Math.max(t, T_MIN);
    mean.push([tt, i / seeds.length], [tt, (i + 1) / seeds.length]);
  });
  mean.push([tMax, all.length / Math.max(seeds.length, 1)]);
  parts.push(
    `<path d="${path(mean)}" fill="none" stroke="#1f4e8c" stroke-width="2.5"/>`,
    `<text x="${W - M.right - 4}" y="${M.top + 14}" text-anchor="end" fill="#1f4e8c">` +
      `mean over seeds (thick), each seed (thin)</text>`,
    `</svg>`,
  );
  return parts.join("\n") + "\n";
}
