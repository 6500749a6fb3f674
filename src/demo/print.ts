// How the demo talks to a person: numbered steps, each tool call, a compact result, and a verdict per step.
// The fleet's temp folder is shown as $DEMO so paths stay short.

export class Printer {
  private root?: string;
  private readonly write: (text: string) => void;

  /** By default writes to stdout; if stdout goes away (`demo | head`), the run goes on silently and still cleans up. */
  constructor(write?: (text: string) => void) {
    if (write) {
      this.write = write;
      return;
    }
    let gone = false;
    process.stdout.on('error', () => {
      gone = true;
    });
    this.write = (text) => {
      if (!gone) process.stdout.write(text);
    };
  }

  /** From now on, paths under `dir` print as $DEMO/... */
  abbreviate(dir: string): void {
    this.root = dir;
  }

  short(text: string): string {
    return this.root ? text.split(this.root).join('$DEMO') : text;
  }

  line(text = ''): void {
    this.write(this.short(text) + '\n');
  }

  heading(index: number, total: number, title: string): void {
    this.line();
    this.line(`[${index}/${total}] ${title}`);
  }

  call(tool: string, args: Record<string, unknown>): void {
    this.line(`  → ${tool} ${compactJson(args)}`);
  }

  /** A result block: the first line after "←", the rest indented under it. */
  result(lines: string[]): void {
    lines.forEach((l, i) => this.line(`${i === 0 ? '  ← ' : '    '}${l}`));
  }

  note(text: string): void {
    this.line(`    ${text}`);
  }

  ok(text: string): void {
    this.line(`  ✓ ${text}`);
  }

  fail(text: string): void {
    this.line(`  ✗ ${text}`);
  }
}

/** JSON on one line, with long strings shortened. */
export function compactJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'string' && v.length > 120 ? `${v.slice(0, 117)}...` : v));
}

/** Up to `max` lines of output, trailing newline dropped, with a count of what was left out. */
export function outputLines(text: string | undefined, max = 4): string[] {
  const lines = (text ?? '').replace(/\n$/, '').split('\n');
  if (lines.length === 1 && lines[0] === '') return [];
  return lines.length > max ? [...lines.slice(0, max), `... (${lines.length - max} more line(s))`] : lines;
}

/** Wraps a long message at word boundaries, for refusal reasons. */
export function wrap(text: string, width = 100): string[] {
  const out: string[] = [];
  for (const paragraph of text.split('\n')) {
    let current = '';
    for (const word of paragraph.split(/\s+/).filter((w) => w !== '')) {
      if (current !== '' && current.length + 1 + word.length > width) {
        out.push(current);
        current = word;
      } else {
        current = current === '' ? word : `${current} ${word}`;
      }
    }
    out.push(current);
  }
  return out;
}
