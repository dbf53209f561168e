/**
 * A small, self-contained SVG generator for grouped bar charts (used by `bulwark compare` for
 * ops/s per system and workload). No dependencies: the output is one `<svg>` element with inline
 * styles, so it renders as an image in Markdown viewers and browsers alike.
 */

/** One group of bars (for example one workload) with one value per series (system). */
export interface BarGroup {
  readonly label: string;
  /** Value per series name; a series that has no value here draws no bar. */
  readonly values: Readonly<Record<string, number | undefined>>;
}

/** Input of {@link groupedBarChart}. */
export interface BarChartOptions {
  readonly title: string;
  /** Label of the value axis, e.g. "ops/s". */
  readonly yLabel: string;
  /** Series in drawing and legend order. */
  readonly series: readonly string[];
  readonly groups: readonly BarGroup[];
  /** Total width in pixels (default 900). */
  readonly width?: number;
  /** Total height in pixels (default 380). */
  readonly height?: number;
}

/** Colours for the series, cycled (colour-blind-friendly Okabe-Ito palette). */
export const chartPalette: readonly string[] = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];

/** Characters XML 1.0 does not allow anywhere (controls, lone surrogates, U+FFFE/U+FFFF). */
// eslint-disable-next-line no-control-regex
const notXmlChar = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Escapes text for an XML text node or a double-quoted attribute; characters XML cannot hold
 * become U+FFFD.
 */
export function xmlEscape(s: string): string {
  return s.replace(notXmlChar, '\uFFFD').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** Multipliers of a power of ten that make a "nice" axis top; each divides into five readable ticks. */
const niceSteps = [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10];

/**
 * The smallest "nice" number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten) that is at
 * least `max`; the value axis runs from 0 to it, so the tallest bar fills at least two thirds of
 * the plot. Returns 1 for a non-positive or non-finite `max`.
 */
export function niceCeiling(max: number): number {
  if (!Number.isFinite(max) || max <= 0) return 1;
  const k = Math.floor(Math.log10(max));
  // Dividing by 10^-k keeps 0.3 from becoming 0.30000000000000004.
  const scale = (m: number): number => (k >= 0 ? m * 10 ** k : m / 10 ** -k);
  for (const m of niceSteps) {
    const v = scale(m);
    // A relative tolerance keeps exact powers (1000) from rounding up to the next step.
    if (v >= max * (1 - 1e-12)) return v;
  }
  return scale(10);
}

function fmt(n: number): string {
  // Coordinates with two decimals at most keep the file small and diffs stable.
  return String(Math.round(n * 100) / 100);
}

function shortNumber(n: number): string {
  if (n >= 10_000) return `${fmt(n / 1000)}k`;
  return String(Math.round(n));
}

/** A bar's label: at most four characters or so (950, 1.3k, 15.4k, 120k). */
function barLabel(n: number): string {
  if (n >= 100_000) return `${Math.round(n / 1000)}k`;
  if (n >= 1000) return `${(Math.round(n / 100) / 10).toFixed(1)}k`;
  return String(Math.round(n));
}

/**
 * Renders a grouped bar chart as an SVG document. Bars are `<rect class="bar">` elements with
 * `data-series`, `data-group` and `data-value` attributes, each labelled with its value above it;
 * the value axis is linear from 0 to {@link niceCeiling} of the largest value, with five grid
 * lines.
 */
export function groupedBarChart(o: BarChartOptions): string {
  const width = o.width ?? 900;
  const height = o.height ?? 380;
  const left = 64;
  const right = 16;
  const top = 40;
  const legendRows = Math.max(1, Math.ceil(o.series.length / 4));
  const bottom = 36 + legendRows * 18;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const values = o.groups.flatMap((g) => o.series.map((s) => g.values[s])).filter((v): v is number => v !== undefined && Number.isFinite(v));
  const yMax = niceCeiling(Math.max(0, ...values));
  const y = (v: number): number => top + plotH - (Math.max(0, v) / yMax) * plotH;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${fmt(width / 2)}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${xmlEscape(o.title)}</text>`);
  // Grid and value axis.
  const ticks = 5;
  for (let i = 0; i <= ticks; i++) {
    const v = (yMax * i) / ticks;
    const ty = y(v);
    out.push(`<line x1="${left}" y1="${fmt(ty)}" x2="${left + plotW}" y2="${fmt(ty)}" stroke="${i === 0 ? '#333333' : '#dddddd'}" stroke-width="1"/>`);
    out.push(`<text x="${left - 6}" y="${fmt(ty + 4)}" text-anchor="end" fill="#333333">${xmlEscape(shortNumber(v))}</text>`);
  }
  out.push(`<text x="14" y="${fmt(top + plotH / 2)}" text-anchor="middle" transform="rotate(-90 14 ${fmt(top + plotH / 2)})" fill="#333333">${xmlEscape(o.yLabel)}</text>`);
  // Bars, group by group.
  const groupW = o.groups.length === 0 ? plotW : plotW / o.groups.length;
  const pad = groupW * 0.15;
  const barW = o.series.length === 0 ? 0 : (groupW - 2 * pad) / o.series.length;
  o.groups.forEach((g, gi) => {
    const gx = left + gi * groupW;
    o.series.forEach((s, si) => {
      const v = g.values[s];
      if (v === undefined || !Number.isFinite(v)) return;
      const x = gx + pad + si * barW;
      const by = y(v);
      const h = top + plotH - by;
      out.push(
        `<rect class="bar" x="${fmt(x)}" y="${fmt(by)}" width="${fmt(Math.max(1, barW - 2))}" height="${fmt(h)}" fill="${chartPalette[si % chartPalette.length]!}" data-series="${xmlEscape(s)}" data-group="${xmlEscape(g.label)}" data-value="${fmt(v)}"><title>${xmlEscape(`${s}, ${g.label}: ${shortNumber(v)} ${o.yLabel}`)}</title></rect>`,
      );
      out.push(`<text class="value" x="${fmt(x + Math.max(1, barW - 2) / 2)}" y="${fmt(by - 3)}" text-anchor="middle" font-size="9" fill="#333333">${barLabel(v)}</text>`);
    });
    out.push(`<text x="${fmt(gx + groupW / 2)}" y="${fmt(top + plotH + 16)}" text-anchor="middle" font-weight="bold">${xmlEscape(g.label)}</text>`);
  });
  // Legend, four series per row.
  o.series.forEach((s, si) => {
    const lx = left + (si % 4) * (plotW / 4);
    const ly = top + plotH + 34 + Math.floor(si / 4) * 18;
    out.push(`<rect x="${fmt(lx)}" y="${fmt(ly - 10)}" width="12" height="12" fill="${chartPalette[si % chartPalette.length]!}"/>`);
    out.push(`<text x="${fmt(lx + 16)}" y="${fmt(ly)}">${xmlEscape(s)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
