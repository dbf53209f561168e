import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderTimelineSvg } from './timeline-chart.ts';
import { xmlEscape } from './chart.ts';

void test('the SVG has one polyline per series with one point per window, spans as rects, and escaped labels', () => {
  const svg = renderTimelineSvg({
    title: 'a < b & "c"',
    yLabel: 'ops/s',
    series: [
      { label: 'coordinated', values: [100, 0, 50] },
      { label: 'sequential', values: [90, 95, 100, 98] },
    ],
    spans: [{ label: 'recovering', fromS: 1, toS: 2, series: 1 }],
  });
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  const lines = [...svg.matchAll(/<polyline [^>]*points="([^"]*)"/g)].map((m) => m[1]!.split(' ').length);
  assert.deepEqual(lines, [3, 4]);
  assert.ok(svg.includes('<title>recovering</title>'));
  assert.ok(svg.includes(xmlEscape('a < b & "c"')) && !svg.includes('a < b'));
  // Every y coordinate lies inside the plot (no value drawn above the axis maximum).
  for (const m of svg.matchAll(/points="([^"]*)"/g)) for (const pt of m[1]!.split(' ')) assert.ok(Number(pt.split(',')[1]) >= 36);
});
