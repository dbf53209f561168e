/**
 * Glob patterns as Redis' SCAN MATCH and KEYS understand them, over characters (code points):
 * `*` any run, `?` any one character, `[abc]`, `[a-z]`, `[^a]` classes, `\x` the character x.
 * An unclosed `[` takes the rest of the pattern as its class, as Redis does.
 *
 * Matching is linear in the pattern times the text (one backtrack point, the last `*`), so a
 * hostile pattern such as `*a*a*a*a*b` cannot make a replica spin: every token but `*` matches
 * exactly one character, and for such patterns resuming from the last star loses no match.
 */

/** One pattern element: a star, or a test for exactly one character. */
type Token = { readonly star: true } | { readonly star: false; readonly test: (c: string) => boolean };

/** Compiles a pattern into tokens (consecutive stars collapse into one). */
function compile(pattern: string): Token[] {
  const p = Array.from(pattern);
  const tokens: Token[] = [];
  let i = 0;
  while (i < p.length) {
    const c = p[i]!;
    if (c === '*') {
      if (tokens.at(-1)?.star !== true) tokens.push({ star: true });
      i++;
    } else if (c === '?') {
      tokens.push({ star: false, test: () => true });
      i++;
    } else if (c === '\\' && i + 1 < p.length) {
      const lit = p[i + 1]!;
      tokens.push({ star: false, test: (x) => x === lit });
      i += 2;
    } else if (c === '[') {
      i++;
      const negate = p[i] === '^';
      if (negate) i++;
      const singles = new Set<string>();
      const ranges: [number, number][] = [];
      while (i < p.length && p[i] !== ']') {
        if (p[i] === '\\' && i + 1 < p.length) {
          singles.add(p[i + 1]!);
          i += 2;
        } else if (i + 2 < p.length && p[i + 1] === '-' && p[i + 2] !== ']') {
          const a = p[i]!.codePointAt(0)!;
          const b = p[i + 2]!.codePointAt(0)!;
          ranges.push(a <= b ? [a, b] : [b, a]);
          i += 3;
        } else {
          singles.add(p[i]!);
          i++;
        }
      }
      i++; // the closing ']' (or past the end of an unclosed class)
      tokens.push({
        star: false,
        test: (x) => {
          const cp = x.codePointAt(0)!;
          const hit = singles.has(x) || ranges.some(([a, b]) => cp >= a && cp <= b);
          return hit !== negate;
        },
      });
    } else {
      tokens.push({ star: false, test: (x) => x === c });
      i++;
    }
  }
  return tokens;
}

/** A compiled glob: `matches(text)` is true when the whole text matches the pattern. */
export class Glob {
  private readonly tokens: Token[];
  constructor(readonly pattern: string) {
    this.tokens = compile(pattern);
  }

  /** True when the whole of `text` matches. */
  matches(text: string): boolean {
    const t = Array.from(text);
    const tokens = this.tokens;
    let ti = 0;
    let pi = 0;
    // The last star seen and the text position it currently stands for (-1: none yet).
    let starAt = -1;
    let starText = 0;
    while (ti < t.length) {
      const tok = tokens[pi];
      if (tok !== undefined && tok.star) {
        starAt = pi;
        starText = ti;
        pi++;
      } else if (tok !== undefined && tok.test(t[ti]!)) {
        pi++;
        ti++;
      } else if (starAt >= 0) {
        // Let the last star swallow one more character and retry after it.
        pi = starAt + 1;
        starText++;
        ti = starText;
      } else return false;
    }
    while (pi < tokens.length && tokens[pi]!.star) pi++;
    return pi === tokens.length;
  }
}
