// Does a regex rule let an argument start with `-` where its author meant a value? `^systemctl status [\w@.-]+$`
// admits `systemctl status -Hroot@host`, which makes the device ssh wherever the agent says. The check walks the
// pattern's atoms in order, tracking whether the previous character may be a space (a new word starts), and flags
//  - an atom that can match `-` right where a word may start, unless it is a literal `-` straight after a space, and
//  - a repeated atom that can match both a space and `-` (it can start an option-shaped word inside itself).
// A `-` the author wrote literally (`-n`) is meant. Whether an atom can match a space or `-` is asked of the regex
// engine itself, so every escape and range (`\x2d`, `[+--]`) counts as JS counts it. Linear in the pattern's length.

interface Atom {
  kind: 'atom';
  source: string;
  literalDash: boolean;
}
interface Group {
  kind: 'group';
  alternatives: Node[][];
  /** Lookarounds match no characters. */
  zeroWidth: boolean;
}
type Node = (Atom | Group | { kind: 'anchor' }) & { min: number; max: number };

class Unfollowable extends Error {}

/** Why `source` lets an argument start with `-`, or undefined. Never throws. */
export function optionArgumentProblem(source: string): string | undefined {
  let tree: Node[][];
  try {
    new RegExp(source);
    tree = new PatternReader(source).readAlternatives(false);
  } catch (error) {
    return error instanceof Unfollowable ? `could not be checked for option-shaped arguments (${error.message}); prefer a structured rule` : undefined;
  }
  const found: string[] = [];
  try {
    walkAlternatives(tree, false, found);
  } catch {
    return 'could not be checked for option-shaped arguments; prefer a structured rule'; // config load must not fail on advice
  }
  const first = found[0];
  if (first === undefined) return undefined;
  return (
    `lets an argument start with "-" at \`${first}\`, so the agent can pass options where a value was meant ` +
    '(`systemctl status [\\w@.-]+` admits `-Hroot@host`); start each value with a class without "-", e.g. [\\w@.][\\w@.-]*, or use a structured rule'
  );
}

function walkAlternatives(alternatives: Node[][], mayFollowSpace: boolean, found: string[]): boolean {
  return alternatives.map((nodes) => walkSequence(nodes, mayFollowSpace, found)).some(Boolean);
}

/** Returns whether the character before the next one may be a space. */
function walkSequence(nodes: Node[], mayFollowSpace: boolean, found: string[]): boolean {
  let state = mayFollowSpace;
  let previousSkippable = false;
  for (const node of nodes) {
    if (node.kind === 'anchor' || node.max === 0) continue;
    let after: boolean;
    if (node.kind === 'atom') {
      const space = matches(node.source, ' ');
      const dash = matches(node.source, '-');
      // A literal `-` right after a space is an option the author wrote; after something that may be skipped
      // (`\w*-`), it can start a word by accident.
      const meant = node.literalDash && !previousSkippable;
      if (dash && !meant && (state || (node.max > 1 && space))) found.push(node.source);
      after = space;
    } else {
      if (node.zeroWidth) continue;
      after = walkAlternatives(node.alternatives, state, found);
      // A second round of a repeated group starts where the first may have ended.
      if (node.max > 1 && after && !state) after = walkAlternatives(node.alternatives, true, found) || after;
    }
    state = node.min === 0 ? state || after : after;
    previousSkippable = node.min === 0;
  }
  return state;
}

function matches(atom: string, ch: string): boolean {
  return new RegExp(`^(?:${atom})$`).test(ch);
}

class PatternReader {
  private i = 0;
  constructor(private readonly s: string) {}

  readAlternatives(inGroup: boolean): Node[][] {
    const alternatives: Node[][] = [[]];
    while (this.i < this.s.length) {
      const ch = this.s[this.i]!;
      if (ch === ')') {
        if (!inGroup) throw new Unfollowable('an unbalanced `)`');
        return alternatives;
      }
      if (ch === '|') {
        this.i += 1;
        alternatives.push([]);
        continue;
      }
      alternatives.at(-1)!.push(this.withQuantifier(this.readNode()));
    }
    if (inGroup) throw new Unfollowable('an unclosed group');
    return alternatives;
  }

  private readNode(): Atom | Group | { kind: 'anchor' } {
    const start = this.i;
    const ch = this.s[this.i]!;
    if (ch === '^' || ch === '$') {
      this.i += 1;
      return { kind: 'anchor' };
    }
    if (ch === '(') return this.readGroup();
    if (ch === '[') return this.atom(start, this.classEnd());
    if (ch === '\\') return this.readEscape();
    this.i += 1;
    return { kind: 'atom', source: this.s.slice(start, this.i), literalDash: ch === '-' };
  }

  private readGroup(): Group {
    const head = /^\((\?(?::|=|!|<=|<!|<[A-Za-z_$][\w$]*>))?/.exec(this.s.slice(this.i))![0];
    this.i += head.length;
    const alternatives = this.readAlternatives(true);
    this.i += 1; // `)`
    return { kind: 'group', alternatives, zeroWidth: /^\(\?(=|!|<=|<!)/.test(head) };
  }

  private readEscape(): Atom | { kind: 'anchor' } {
    const start = this.i;
    const next = this.s[this.i + 1] ?? '';
    if (next === 'b' || next === 'B') {
      this.i += 2;
      return { kind: 'anchor' };
    }
    if (/[1-9]/.test(next) || (next === 'k' && this.s[this.i + 2] === '<')) throw new Unfollowable('a backreference');
    let length = 2;
    if (next === 'x' && /^[0-9a-fA-F]{2}/.test(this.s.slice(this.i + 2))) length = 4;
    else if (next === 'u' && /^[0-9a-fA-F]{4}/.test(this.s.slice(this.i + 2))) length = 6;
    else if (next === 'c' && /^[A-Za-z]/.test(this.s.slice(this.i + 2))) length = 3;
    this.i += length;
    const source = this.s.slice(start, this.i);
    return { kind: 'atom', source, literalDash: matches(source, '-') && !matches(source, 'a') };
  }

  /** Index just past the `]` that closes the class opened at the cursor. */
  private classEnd(): number {
    let j = this.i + 1;
    if (this.s[j] === '^') j += 1;
    for (; j < this.s.length; j += 1) {
      if (this.s[j] === '\\') j += 1;
      else if (this.s[j] === ']') return j + 1;
    }
    throw new Unfollowable('an unclosed class');
  }

  private atom(start: number, end: number): Atom {
    this.i = end;
    return { kind: 'atom', source: this.s.slice(start, end), literalDash: false };
  }

  private withQuantifier(node: Atom | Group | { kind: 'anchor' }): Node {
    const q = /^(?:\*|\+|\?|\{(\d+)(,(\d*))?\})\??/.exec(this.s.slice(this.i));
    if (!q) return { ...node, min: 1, max: 1 };
    this.i += q[0].length;
    const [min, max] = q[0].startsWith('*')
      ? [0, Infinity]
      : q[0].startsWith('+')
        ? [1, Infinity]
        : q[0].startsWith('?')
          ? [0, 1]
          : [Number(q[1]), q[2] === undefined ? Number(q[1]) : q[3] === '' ? Infinity : Number(q[3])];
    return { ...node, min, max };
  }
}
