/** The median: shared by the order stage's throughput monitor and the benchmark reports. */

/**
 * Median of `xs`: the middle value, the mean of the two middle ones for an even count, undefined
 * for none. Returns +0 for a zero middle: 0 and -0 sort as equal, so which one lands in the
 * middle would otherwise depend on the input order.
 */
export function median(xs: readonly number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return (s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2) + 0;
}
