import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { groupedBarChart, niceCeiling, xmlEscape, type BarChartOptions } from './chart.ts';

/**
 * A strict little XML well-formedness check: one root element, every tag closed in order,
 * attributes double-quoted and unique, no stray `<` or `&` in text or attribute values.
 */
function assertWellFormed(xml: string): void {
  const stack: string[] = [];
  let roots = 0;
  let i = 0;
  const entity = /^&(amp|lt|gt|quot|apos);/;
  const checkText = (t: string, where: string): void => {
    // eslint-disable-next-line no-control-regex
    assert.ok(!/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(t), `a character XML forbids in ${where}`);
    for (let k = 0; k < t.length; k++) {
      if (t[k] === '<') assert.fail(`stray < in ${where}`);
      if (t[k] === '&' && !entity.test(t.slice(k))) assert.fail(`bare & in ${where}: ${t.slice(k, k + 12)}`);
    }
  };
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    const text = lt < 0 ? xml.slice(i) : xml.slice(i, lt);
    checkText(text, 'text');
    if (stack.length === 0) assert.equal(text.trim(), '', 'text outside the root element');
    if (lt < 0) break;
    const gt = xml.indexOf('>', lt);
    assert.ok(gt > lt, 'unterminated tag');
    const tag = xml.slice(lt + 1, gt);
    if (tag.startsWith('/')) {
      assert.equal(tag.slice(1), stack.pop(), 'closing tag does not match');
    } else {
      const selfClosing = tag.endsWith('/');
      const body = selfClosing ? tag.slice(0, -1) : tag;
      const m = /^([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"]*")*)\s*$/.exec(body);
      assert.ok(m !== null, `malformed tag <${tag}>`);
      const names = [...m[2]!.matchAll(/([\w:-]+)="([^"]*)"/g)].map((a) => {
        checkText(a[2]!, `attribute ${a[1]!}`);
        return a[1]!;
      });
      assert.equal(new Set(names).size, names.length, `duplicate attribute in <${m[1]!}>`);
      if (stack.length === 0) roots++;
      if (!selfClosing) stack.push(m[1]!);
    }
    i = gt + 1;
  }
  assert.deepEqual(stack, [], 'unclosed elements');
  assert.equal(roots, 1, 'exactly one root element');
}

interface Bar {
  series: string;
  group: string;
  value: number;
  y: number;
  height: number;
}

function bars(svg: string): Bar[] {
  const unescape = (s: string): string => s.replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
  return [...svg.matchAll(/<rect class="bar" x="[^"]*" y="([^"]*)" width="[^"]*" height="([^"]*)" fill="[^"]*" data-series="([^"]*)" data-group="([^"]*)" data-value="([^"]*)">/g)].map((m) => ({
    y: Number(m[1]),
    height: Number(m[2]),
    series: unescape(m[3]!),
    group: unescape(m[4]!),
    value: Number(m[5]),
  }));
}

const sample: BarChartOptions = {
  title: 'ops/s <by> system & workload',
  yLabel: 'ops/s',
  series: ['etcd', 'zookeeper', 'redis "always"', 'bulwark-cft'],
  groups: [
    { label: 'A', values: { etcd: 2100, zookeeper: 7400, 'redis "always"': 900, 'bulwark-cft': 1500 } },
    { label: 'W', values: { etcd: 1800, zookeeper: undefined, 'redis "always"': 800, 'bulwark-cft': 600 } },
  ],
};

test('chart: well-formed XML, one bar per present cell, escaped labels', () => {
  const svg = groupedBarChart(sample);
  assertWellFormed(svg);
  const b = bars(svg);
  assert.equal(b.length, 7, 'the missing zookeeper/W cell draws no bar');
  assert.deepEqual(
    b.map((x) => `${x.group}/${x.series}`),
    ['A/etcd', 'A/zookeeper', 'A/redis "always"', 'A/bulwark-cft', 'W/etcd', 'W/redis "always"', 'W/bulwark-cft'],
  );
  assert.ok(svg.includes('ops/s &lt;by&gt; system &amp; workload'));
  const labels = [...svg.matchAll(/<text class="value"[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
  assert.deepEqual(labels, ['2.1k', '7.4k', '900', '1.5k', '1.8k', '800', '600'], 'each bar labelled with its value');
});

test('chart: bar heights are proportional to values on an axis from 0 to a nice ceiling', () => {
  const svg = groupedBarChart({ ...sample, height: 400 });
  const b = bars(svg);
  const tallest = b.reduce((a, x) => (x.value > a.value ? x : a));
  assert.equal(tallest.value, 7400);
  // The axis top is niceCeiling(7400) = 8000; every bar's height is value / 8000 of the plot.
  const plotH = tallest.height / (7400 / 8000);
  for (const x of b) {
    assert.ok(Math.abs(x.height - (x.value / 8000) * plotH) < 0.02, `${x.series}/${x.group} height ${x.height}`);
    assert.ok(Math.abs(x.y + x.height - (b[0]!.y + b[0]!.height)) < 0.02, 'every bar stands on the same baseline');
  }
  assert.ok(plotH > 0 && plotH < 400);
  assert.ok(svg.includes('>8000</text>') && svg.includes('>1600</text>'), 'the top tick is labelled with the ceiling, the others in fifths of it');
});

test('chart: empty and all-zero inputs still give a well-formed document', () => {
  assertWellFormed(groupedBarChart({ title: 't', yLabel: 'y', series: [], groups: [] }));
  const svg = groupedBarChart({ title: 't', yLabel: 'y', series: ['a'], groups: [{ label: 'g', values: { a: 0 } }] });
  assertWellFormed(svg);
  assert.equal(bars(svg)[0]!.height, 0);
});

test('chart: any series and group names and values give well-formed XML and one bar per finite value', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.string({ maxLength: 8, unit: 'binary' }), { minLength: 1, maxLength: 6 }),
      fc.array(fc.tuple(fc.string({ maxLength: 8, unit: 'binary' }), fc.array(fc.option(fc.double({ min: 0, max: 1e7, noNaN: true }), { nil: undefined }), { minLength: 6, maxLength: 6 })), { maxLength: 5 }),
      (series, raw) => {
        const groups = raw.map(([label, vs]) => ({ label, values: Object.fromEntries(series.map((s, i) => [s, vs[i]])) }));
        const svg = groupedBarChart({ title: 'x', yLabel: 'y', series, groups });
        assertWellFormed(svg);
        const expected = raw.reduce((n, [, vs]) => n + vs.slice(0, series.length).filter((v) => v !== undefined).length, 0);
        assert.equal(bars(svg).length, expected);
      },
    ),
    { numRuns: 200 },
  );
});

test('niceCeiling: the smallest 1/1.5/2/2.5/3/4/5/6/8 x 10^k at or above the maximum', () => {
  assert.equal(niceCeiling(0), 1);
  assert.equal(niceCeiling(-3), 1);
  assert.equal(niceCeiling(7400), 8000);
  assert.equal(niceCeiling(25_437), 30_000);
  assert.equal(niceCeiling(2100), 2500);
  assert.equal(niceCeiling(1000), 1000);
  assert.equal(niceCeiling(1001), 1500);
  assert.equal(niceCeiling(8001), 10_000);
  assert.equal(niceCeiling(0.3), 0.3);
  fc.assert(
    fc.property(fc.double({ min: 1e-6, max: 1e9, noNaN: true }), (m) => {
      const c = niceCeiling(m);
      assert.ok(c >= m * (1 - 1e-9) && c <= m * 1.5 * (1 + 1e-9), `${c} for ${m}: the tallest bar fills at least two thirds`);
    }),
  );
});

test('xmlEscape: the five special characters; characters XML forbids become U+FFFD', () => {
  assert.equal(xmlEscape(`<a href="x">&'</a>`), '&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;');
  assert.equal(xmlEscape('a\u0000b\uD800c\u{1F600}'), 'a\uFFFDb\uFFFDc\u{1F600}');
});
