/**
 * Throughput-over-time charts as self-contained SVG: one polyline per series (operations per
 * 1-second window) and optional shaded spans (a state transfer, say). No dependencies; the output is plain XML that browsers and GitHub render.
 * Escaping and axis rounding are chart.ts's (the bar charts of `bulwark compare`).
 */
import { niceCeiling, xmlEscape } from './chart.ts';

/** One line of the chart. */
export interface TimelineSeries {
  readonly label: string;
  /** Value per 1-second window, from second 0. */
  readonly values: readonly number[];
}

/** A shaded interval on the time axis (seconds). */
export interface TimelineSpan {
  readonly label: string;
  readonly fromS: number;
  readonly toS: number;
  /** Index of the series whose colour it takes. */
  readonly series: number;
}

/** What to draw. */
export interface TimelineChart {
  readonly title: string;
  readonly yLabel: string;
  readonly series: readonly TimelineSeries[];
  readonly spans?: readonly TimelineSpan[];
}

const palette = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

/** Renders the chart as an SVG document. */
export function renderTimelineSvg(c: TimelineChart, width = 760, height = 320): string {
  const left = 64;
  const right = 16;
  const top = 36;
  const bottom = 58;
  const w = width - left - right;
  const h = height - top - bottom;
  const seconds = Math.max(1, ...c.series.map((s) => s.values.length));
  const yMax = niceCeiling(Math.max(0, ...c.series.flatMap((s) => s.values)));
  const x = (t: number): number => left + (t / seconds) * w;
  const y = (v: number): number => top + h - (v / yMax) * h;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${width / 2}" y="18" text-anchor="middle" font-size="13">${xmlEscape(c.title)}</text>`);
  for (const span of c.spans ?? []) {
    const colour = palette[span.series % palette.length]!;
    const x0 = x(Math.max(0, span.fromS));
    const x1 = x(Math.min(seconds, span.toS));
    out.push(`<rect x="${x0.toFixed(1)}" y="${top}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="${h}" fill="${colour}" fill-opacity="0.12"><title>${xmlEscape(span.label)}</title></rect>`);
  }
  for (let i = 0; i <= 5; i++) {
    const v = (yMax * i) / 5;
    out.push(`<line x1="${left}" x2="${left + w}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${Math.round(v)}</text>`);
  }
  const step = seconds <= 20 ? 2 : seconds <= 60 ? 5 : seconds <= 150 ? 10 : 30;
  for (let t = 0; t <= seconds; t += step) {
    out.push(`<text x="${x(t).toFixed(1)}" y="${top + h + 16}" text-anchor="middle">${t}</text>`);
  }
  out.push(`<line x1="${left}" x2="${left + w}" y1="${top + h}" y2="${top + h}" stroke="#333"/>`);
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${top + h}" stroke="#333"/>`);
  out.push(`<text x="${left + w / 2}" y="${top + h + 32}" text-anchor="middle">seconds</text>`);
  out.push(`<text transform="translate(14 ${top + h / 2}) rotate(-90)" text-anchor="middle">${xmlEscape(c.yLabel)}</text>`);
  c.series.forEach((s, i) => {
    const colour = palette[i % palette.length]!;
    // Each window's value is drawn at the window's middle.
    const pts = s.values.map((v, t) => `${x(t + 0.5).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    out.push(`<polyline fill="none" stroke="${colour}" stroke-width="1.8" points="${pts}"/>`);
    const lx = left + 8 + i * 190;
    out.push(`<rect x="${lx}" y="${height - 16}" width="12" height="4" fill="${colour}"/>`);
    out.push(`<text x="${lx + 16}" y="${height - 11}">${xmlEscape(s.label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
