// Shell command-line analysis for the policy gate.
//
// Two parsers look at every line:
//  1. sh-syntax (mvdan/sh compiled to WASM) is the grammar authority: a line bash's grammar rejects is
//     a syntax error, and its top-level statements (where each starts, its redirections, `&`) must agree
//     with ours. sh-syntax only exposes that top level, not the words of each command, so:
//  2. a small reader of our own walks the whole line and extracts every simple command's argv. It knows
//     a deliberately small subset of the shell; anything outside it, or whose value only the device can
//     know (expansions, globs in a command name, brace expansion, ~), makes the line `uncertain`.
// A line is `ok` only when both parsers agree and nothing in it is uncertain.
import { shellQuote } from '../util/shell.js';
import { nestedScriptsOf } from './nested.js';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { getProcessor, LangVariant, type File as ShFile, type Redirect as ShRedirect, type ShOptions } from 'sh-syntax';

export interface SimpleCommand {
  /**
   * Canonical form matched by policy patterns: assignments then argv, joined by single spaces, each word
   * encoded by `encodeWord` (see there): a word made only of safe characters stands as it is, any other is
   * single-quoted, and an unquoted glob character stays outside the quotes. The encoding is injective: two
   * commands with different words never read the same, so a pattern sees word boundaries and quotes as they are.
   */
  readonly text: string;
  /** The words the program receives, quoting resolved (`r''m` → `rm`). */
  readonly argv: readonly string[];
  /** Each argv word with whether the device's shell will glob-expand it (an unquoted `*`, `?` or `[`). */
  readonly words: readonly CommandWord[];
  /** `NAME=value` prefixes (`LANG=C ls`), quoting resolved; part of `text`. */
  readonly assignments: readonly string[];
}

export interface CommandWord {
  readonly value: string;
  /** An unquoted glob character: the device decides which words this becomes. */
  readonly glob: boolean;
  /** It contains an expansion (`$X`, `$(...)`): `value` is then the source text, and the line is uncertain. */
  readonly expanded: boolean;
}

export interface Redirection {
  /** Operator as written: `>`, `>>`, `>|`, `<>`, `&>`, `&>>`, `>&`, `<&`, `<`, `<<`, `<<-`, `<<<`. */
  readonly op: string;
  /** Explicit file-descriptor prefix (`2` in `2>x`), or null. */
  readonly fd: string | null;
  /** Target file, fd (`1` in `2>&1`), or here-document delimiter; quoting resolved. */
  readonly target: string;
  /** True when it creates, truncates or appends to a file. `/dev/null` and fd duplication are not writes. */
  readonly writes: boolean;
  /** True when it opens a file for reading (`<`, `<>`), other than `/dev/null`. */
  readonly reads: boolean;
  /** What policy patterns see: `${fd}${op}${target}`, the target encoded like a command word (`>'/tmp/a b'`). */
  readonly text: string;
  /** What structured rules see: the operator with its fd (`2>`), then the target. */
  readonly words: readonly CommandWord[];
}

export type ShellParse =
  | { readonly ok: true; readonly commands: readonly SimpleCommand[]; readonly redirections: readonly Redirection[] }
  | {
      readonly ok: false;
      /** `syntax`: the shell would reject the line. `uncertain`: it parses, but we can't know what runs. */
      readonly kind: 'syntax' | 'uncertain';
      readonly reason: string;
      /** Best effort, for deny rules only: words with expansions appear as written (`rm $X`). */
      readonly commands: readonly SimpleCommand[];
      readonly redirections: readonly Redirection[];
    };

/** Parses `line` as bash would and lists every simple command and redirection in it. */
export async function parseCommandLine(line: string): Promise<ShellParse> {
  const cached = parseCache.get(line);
  if (cached) return cached;
  const result = deepFreeze(await analyze(line));
  rememberParse(line, result);
  return result;
}

/** POSIX single-quoting: the shell reads the result back as exactly one word equal to `value`. */

export { shellQuote };

// sh-syntax's default entry point compiles its 750 KB WASM module on every call (~30 ms). Compile it once and
// only instantiate per call (~4 ms): the Go runtime inside still needs a fresh instance each time.
let compiledGrammar: Promise<WebAssembly.Module> | undefined;
const grammarProcessor = getProcessor(async (imports: WebAssembly.Imports) => {
  compiledGrammar ??= readFile(createRequire(import.meta.url).resolve('sh-syntax/main.wasm')).then((bytes) => WebAssembly.compile(bytes));
  return WebAssembly.instantiate(await compiledGrammar, imports);
});

function shSyntaxParse(text: string, options: ShOptions): Promise<ShFile> {
  return grammarProcessor(text, options);
}

async function analyze(line: string, depth = 0): Promise<ShellParse> {
  const parsed = await analyzeOne(line);
  return parsed.ok || parsed.kind === 'uncertain' ? withNestedScripts(parsed, depth) : parsed;
}

/** Deepest `sh -c "sh -c '...'"` nesting that is read; deeper is uncertain. */
const MAX_NESTED_SCRIPTS = 4;

/**
 * A script handed to a shell (`sh -c '...'`, `eval '...'`, also behind `sudo`, `env`, `find -exec`...) is a command
 * line of its own: read it like the outer one, so every command in it is judged, and an unreadable one refuses the
 * whole line. A shell that reads its commands from a file or stdin makes the line uncertain (see nested.ts).
 */
async function withNestedScripts(parsed: ShellParse, depth: number): Promise<ShellParse> {
  const commands = [...parsed.commands];
  const redirections = [...parsed.redirections];
  let uncertain = parsed.ok ? undefined : parsed.reason;
  for (const command of parsed.commands) {
    if (command.words.some((w) => w.expanded)) continue; // uncertain already: its words are not known
    for (const nested of nestedScriptsOf(command.argv)) {
      if ('uncertain' in nested) {
        uncertain ??= nested.uncertain;
        continue;
      }
      if (depth >= MAX_NESTED_SCRIPTS) {
        uncertain ??= `it nests scripts in scripts more than ${MAX_NESTED_SCRIPTS} levels deep`;
        continue;
      }
      const inner = await analyze(nested.script, depth + 1);
      commands.push(...inner.commands);
      redirections.push(...inner.redirections);
      if (!inner.ok) uncertain ??= `the script that \`${nested.via}\` runs can't be checked: ${inner.reason}`;
    }
  }
  if (uncertain === undefined) return { ok: true, commands, redirections };
  return { ok: false, kind: 'uncertain', reason: uncertain, commands, redirections };
}

async function analyzeOne(line: string): Promise<ShellParse> {
  let grammar: ShFile;
  try {
    grammar = await shSyntaxParse(line, { variant: LangVariant.LangBash, keepComments: false });
  } catch (error) {
    return { ok: false, kind: 'syntax', reason: describeSyntaxError(error, line), commands: [], redirections: [] };
  }
  const reader = new ShellReader(line, newFindings(), 0);
  const trap = MULTIBYTE_TRAP.exec(line);
  if (trap) {
    reader.findings.uncertain.push(
      `\`${trap[0]}\`: a non-ASCII character right before \`${trap[0].slice(-1)}\` reads differently in some device locales (GBK, Big5, Shift-JIS); put a space or a quote between them`,
    );
  }
  const outcome = readFailingClosed(reader);
  const { commands, redirections } = reader.findings;
  if (outcome.kind === 'stopped') {
    return { ok: false, kind: 'uncertain', reason: outcome.reason, commands, redirections };
  }
  const disagreement = compareTopLevel(grammar, outcome.statements, line);
  const reason = disagreement ?? reader.findings.uncertain[0];
  if (reason !== undefined) return { ok: false, kind: 'uncertain', reason, commands, redirections };
  return { ok: true, commands, redirections };
}

/** A bug in our reader must refuse the line, never let it through. */
function readFailingClosed(reader: ShellReader): TopLevelOutcome {
  try {
    return reader.readTopLevel();
  } catch (error) {
    return { kind: 'stopped', reason: `the policy's shell reader failed on it (${String(error)})` };
  }
}

// ---------------------------------------------------------------------------------------------------
// Cache: parsing costs a few ms (sh-syntax starts a WASM instance per call) and run_on_many asks about
// the same line once per device.

const PARSE_CACHE_LIMIT = 256;
const parseCache = new Map<string, ShellParse>();

function rememberParse(line: string, result: ShellParse): void {
  if (parseCache.size >= PARSE_CACHE_LIMIT) {
    const oldest = parseCache.keys().next().value;
    if (oldest !== undefined) parseCache.delete(oldest);
  }
  parseCache.set(line, result);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------------
// sh-syntax errors and cross-check

function describeSyntaxError(error: unknown, line: string): string {
  const err = error as { Text?: unknown; message?: unknown; Pos?: { Line: number; Col: number } };
  const text = typeof err.Text === 'string' && err.Text ? err.Text : String(err.message ?? error);
  if (!err.Pos || err.Pos.Line === 0) return `not valid shell syntax: ${text}`;
  const where = line.includes('\n') ? `line ${err.Pos.Line}, column ${err.Pos.Col}` : `column ${err.Pos.Col}`;
  return `not valid shell syntax at ${where}: ${text}`;
}

/** What our reader saw of one top-level statement, in sh-syntax's terms. */
interface StatementSummary {
  startByte: number;
  background: boolean;
  /** Redirections sh-syntax attaches to the statement itself (only when it is a single command). */
  redirections: string[];
}

function compareTopLevel(grammar: ShFile, ours: StatementSummary[], line: string): string | undefined {
  const theirs = grammar.Stmts.map((stmt) => ({
    startByte: stmt.Pos.Offset,
    background: stmt.Background,
    redirections: stmt.Redirs.map(describeShRedirect),
  }));
  if (JSON.stringify(theirs) === JSON.stringify(ours)) return undefined;
  return (
    'the command line is too intricate to check with certainty (two shell parsers read its structure ' +
    `differently: ${preview(line)}); split it into simpler commands`
  );
}

function describeShRedirect(redirect: ShRedirect): string {
  return `${redirect.N?.Value ?? ''}${redirect.Op}`;
}

// ---------------------------------------------------------------------------------------------------
// Our reader

interface Findings {
  commands: SimpleCommand[];
  redirections: Redirection[];
  /** Reasons the line's effect can't be known; the first one is reported. */
  uncertain: string[];
}

function newFindings(): Findings {
  return { commands: [], redirections: [], uncertain: [] };
}

type TopLevelOutcome = { kind: 'read'; statements: StatementSummary[] } | { kind: 'stopped'; reason: string };

/** Thrown when reading can't safely go on; the whole line is then uncertain. */
class StopReading extends Error {}

/** Where a statement list ends. */
interface ListEnd {
  words?: readonly string[];
  paren?: boolean;
  caseItem?: boolean;
}

interface PendingHereDoc {
  delimiter: string;
  stripTabs: boolean;
  quoted: boolean;
}

/** One character of a word after quote removal, remembering whether it was quoted. */
interface WordChar {
  ch: string;
  quoted: boolean;
}

interface Word {
  chars: WordChar[];
  raw: string;
  /** Expansions (values only the device knows) found in the word. */
  expansions: string[];
}

const MAX_NESTING = 32;
const BLANKS = new Set([' ', '\t']);
const METACHARS = new Set([' ', '\t', '\n', '|', '&', ';', '<', '>', '(', ')']);
const RESERVED = new Set([
  '!', '{', '}', 'if', 'then', 'elif', 'else', 'fi', 'while', 'until', 'do', 'done', 'for', 'in',
  'case', 'esac', 'function', 'select', 'coproc', 'time', '[[', ']]',
]);
const UNSUPPORTED_KEYWORDS: Record<string, string> = {
  function: 'a function definition',
  select: 'a `select` loop',
  coproc: 'a coprocess',
  time: 'the `time` keyword',
  '[[': 'a `[[ ... ]]` test',
};
/** Longest first, so `>>` is not read as `>`. */
const REDIRECT_OPS = ['&>>', '<<<', '<<-', '&>', '<<', '<>', '<&', '>>', '>|', '>&', '<', '>'];
const CONTROL_OPS = [';;&', '&&', '||', ';;', ';&', '|&', ';', '&', '|', '(', ')', '\n'];
const CASE_TERMINATORS = new Set([';;', ';&', ';;&']);
const FILE_WRITE_OPS = new Set(['>', '>>', '>|', '<>', '&>', '&>>']);
const FILE_READ_OPS = new Set(['<', '<>']);
/** bash-only operators that a POSIX sh (dash, busybox) reads as `&` followed by a new command. */
const BASH_ONLY_REDIRECTS = new Set(['&>', '&>>']);
/**
 * Variables whose value changes what runs or how the line is read: the command search path, how words are split,
 * startup files, the locale (which decides what a byte means), and variables bash evaluates as arithmetic, where
 * `a[$(cmd)]` runs cmd. Setting them (by `NAME=value` or `for NAME in ...`) is refused under a policy.
 */
const SPECIAL_VARIABLES = new Set([
  'PATH', 'IFS', 'ENV', 'BASH_ENV', 'CDPATH', 'GLOBIGNORE', 'HOME', 'SHELLOPTS', 'BASHOPTS', 'PS4', 'PROMPT_COMMAND',
  'HISTFILE', 'LANG', 'LANGUAGE', 'NLSPATH', 'LOCPATH', 'POSIXLY_CORRECT', 'TMOUT', 'FUNCNEST',
  'RANDOM', 'SRANDOM', 'SECONDS', 'OPTIND', 'OPTERR', 'LINENO', 'HISTCMD', 'EPOCHSECONDS', 'EPOCHREALTIME',
]);
const SPECIAL_VARIABLE_PREFIXES = /^(LC_|LD_|BASH|DYLD_)/;
/**
 * A non-ASCII character right before one of these: in a GBK, Big5 or Shift-JIS locale the shell reads the two as one
 * character, so a `\` or `` ` `` we see is not there for it (and the line means something else).
 */
const MULTIBYTE_TRAP = /[^\u0000-\u007f][\\`{|}[\]^~]/u;
const HARMLESS_WRITE_TARGETS = new Set(['/dev/null']);

class ShellReader {
  private pos = 0;
  private pendingHereDocs: PendingHereDoc[] = [];

  constructor(
    private readonly src: string,
    readonly findings: Findings,
    private depth: number,
  ) {}

  readTopLevel(): TopLevelOutcome {
    try {
      const statements = this.readList({}, true);
      if (this.pos < this.src.length) this.fail(`unexpected \`${this.src[this.pos]}\``);
      if (this.pendingHereDocs.length > 0) this.fail('a here-document is not terminated');
      return { kind: 'read', statements };
    } catch (error) {
      if (error instanceof StopReading) return { kind: 'stopped', reason: error.message };
      throw error;
    }
  }

  // --- lists, and-or lists, pipelines -----------------------------------------------------------

  private readList(end: ListEnd, topLevel = false): StatementSummary[] {
    const statements: StatementSummary[] = [];
    this.enter();
    for (;;) {
      this.skipLinebreaks();
      if (this.atListEnd(end)) break;
      const startByte = topLevel ? Buffer.byteLength(this.src.slice(0, this.pos)) : 0;
      const redirections = this.readAndOr();
      this.skipBlanks();
      const op = this.peekControlOp();
      const background = op === '&';
      if (op === ';' || op === '&') this.pos += 1;
      else if (op === '\n') this.consumeNewline();
      else if (!this.atListEnd(end)) this.fail(`unexpected \`${this.src[this.pos]}\``);
      statements.push({ startByte, background, redirections });
    }
    this.leave();
    return statements;
  }

  private atListEnd(end: ListEnd): boolean {
    if (this.pos >= this.src.length) return true;
    if (end.paren && this.src[this.pos] === ')') return true;
    if (end.caseItem && CASE_TERMINATORS.has(this.peekControlOp() ?? '')) return true;
    const word = this.peekReservedWord();
    return word !== undefined && (end.words ?? []).includes(word);
  }

  /** Returns the statement-level redirections when the and-or list is a single command. */
  private readAndOr(): string[] {
    let redirections = this.readPipeline();
    for (;;) {
      this.skipBlanks();
      const op = this.peekControlOp();
      if (op !== '&&' && op !== '||') return redirections;
      this.pos += 2;
      this.skipLinebreaks();
      this.readPipeline();
      redirections = [];
    }
  }

  private readPipeline(): string[] {
    this.skipBlanks();
    if (this.peekReservedWord() === '!') this.pos += 1;
    let redirections = this.readCommand();
    for (;;) {
      this.skipBlanks();
      const op = this.peekControlOp();
      if (op !== '|' && op !== '|&') return redirections;
      this.pos += op.length;
      this.skipLinebreaks();
      this.readCommand();
      redirections = [];
    }
  }

  // --- commands ---------------------------------------------------------------------------------

  /** Reads one command; returns its own redirections in sh-syntax's notation (`2>&`, `>`). */
  private readCommand(): string[] {
    this.skipBlanks();
    if (this.src.startsWith('((', this.pos)) this.stop('an arithmetic command `((...))`');
    if (this.src[this.pos] === '(') {
      this.pos += 1;
      this.readList({ paren: true });
      this.expectChar(')');
      return this.readTrailingRedirections();
    }
    const keyword = this.peekReservedWord();
    // `in` is only reserved inside `for`/`case`; elsewhere it's an ordinary (nonexistent) command.
    if (keyword === undefined || keyword === 'in') return this.readSimpleCommand();
    const unsupported = UNSUPPORTED_KEYWORDS[keyword];
    if (unsupported) this.stop(unsupported);
    this.readCompound(keyword);
    return this.readTrailingRedirections();
  }

  private readCompound(keyword: string): void {
    this.pos += keyword.length;
    switch (keyword) {
      case '{':
        this.readList({ words: ['}'] });
        return this.expectWord('}');
      case 'if':
        return this.readIfRest();
      case 'while':
      case 'until':
        this.readList({ words: ['do'] });
        return this.readDoGroup();
      case 'for':
        return this.readForRest();
      case 'case':
        return this.readCaseRest();
      default:
        this.fail(`unexpected \`${keyword}\``);
    }
  }

  private readIfRest(): void {
    this.readList({ words: ['then'] });
    this.expectWord('then');
    this.readList({ words: ['elif', 'else', 'fi'] });
    for (;;) {
      const word = this.peekReservedWord();
      if (word === 'elif') {
        this.pos += 4;
        this.readList({ words: ['then'] });
        this.expectWord('then');
        this.readList({ words: ['elif', 'else', 'fi'] });
      } else if (word === 'else') {
        this.pos += 4;
        this.readList({ words: ['fi'] });
      } else {
        return this.expectWord('fi');
      }
    }
  }

  private readDoGroup(): void {
    this.expectWord('do');
    this.readList({ words: ['done'] });
    this.expectWord('done');
  }

  private readForRest(): void {
    this.skipBlanks();
    if (this.src.startsWith('((', this.pos)) this.stop('an arithmetic `for ((...))` loop');
    const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(this.src.slice(this.pos))?.[0];
    if (!name) this.fail('`for` must be followed by a variable name');
    this.pos += name.length;
    this.checkAssignedName(name);
    this.skipLinebreaks();
    if (this.peekReservedWord() === 'in') {
      this.pos += 2;
      // Each word is assigned to the variable in turn: judged like `NAME=word`, so patterns see what is set.
      for (this.skipBlanks(); this.atWordStart(); this.skipBlanks()) {
        const word = this.readWord();
        this.checkGlobReach(word);
        const value = wordText(word);
        this.findings.commands.push({ text: `${name}=${canonicalWord(word, true)}`, argv: [], words: [], assignments: [`${name}=${value}`] });
      }
    }
    this.skipBlanks();
    if (this.src[this.pos] === ';') this.pos += 1;
    this.skipLinebreaks();
    this.readDoGroup();
  }

  private readCaseRest(): void {
    this.skipBlanks();
    this.readWord();
    this.skipLinebreaks();
    this.expectWord('in');
    for (;;) {
      this.skipLinebreaks();
      if (this.peekReservedWord() === 'esac') {
        this.pos += 4;
        return;
      }
      this.readCasePatterns();
      this.readList({ caseItem: true, words: ['esac'] });
      this.skipBlanks();
      const op = this.peekControlOp();
      if (op && CASE_TERMINATORS.has(op)) this.pos += op.length;
    }
  }

  private readCasePatterns(): void {
    if (this.src[this.pos] === '(') this.pos += 1;
    for (;;) {
      this.skipBlanks();
      if (!this.atWordStart()) this.fail('a `case` pattern is missing');
      this.readWord();
      this.skipBlanks();
      const next = this.src[this.pos];
      this.pos += 1;
      if (next === ')') return;
      if (next !== '|') this.fail('a `case` pattern must end with `)`');
    }
  }

  private readTrailingRedirections(): string[] {
    const ops: string[] = [];
    for (this.skipBlanks(); this.atRedirection(); this.skipBlanks()) ops.push(this.readRedirection());
    return ops;
  }

  private readSimpleCommand(): string[] {
    const assignments: Word[] = [];
    const args: Word[] = [];
    const redirectionOps: string[] = [];
    for (;;) {
      this.skipBlanks();
      if (this.atRedirection()) {
        redirectionOps.push(this.readRedirection());
        continue;
      }
      if (!this.atWordStart()) break;
      const word = this.readWord();
      if (args.length === 0 && isAssignment(word)) {
        if (this.src[this.pos] === '(') this.stop('an array assignment');
        this.checkAssignedName(/^[A-Za-z_][A-Za-z0-9_]*/.exec(wordValue(word))![0]);
        assignments.push(word);
        continue;
      }
      if (args.length === 0) this.checkCommandName(word);
      else this.checkArgument(word);
      this.checkGlobReach(word);
      args.push(word);
    }
    if (args.length + assignments.length + redirectionOps.length === 0) {
      this.fail(this.pos < this.src.length ? `unexpected \`${this.src[this.pos]}\`` : 'a command is missing');
    }
    this.findings.commands.push(simpleCommand(assignments, args));
    return redirectionOps;
  }

  private checkAssignedName(name: string): void {
    if (SPECIAL_VARIABLES.has(name) || SPECIAL_VARIABLE_PREFIXES.test(name)) {
      this.noteUncertain(`setting \`${name}\` changes what runs or how the line is read (search path, word splitting, locale, or arithmetic that can run commands)`);
    }
  }

  private checkCommandName(word: Word): void {
    const rest = this.src.slice(this.pos);
    if (/^[ \t]*\(/.test(rest)) this.stop(`a function definition (\`${word.raw}()\`)`);
    if (word.expansions.length === 0 && hasUnquotedGlob(word)) {
      this.noteUncertain(`the command name \`${word.raw}\` is a glob pattern, so the device decides what runs`);
    }
  }

  /**
   * On dash, busybox ash and bash 5.1 and older, a glob in a path segment that starts with `.` matches `.` and `..`
   * (two `.*` segments after `/var/log` climb to `/`), which no lexical `..` check sees. `.??*` and `.[!.]*` can't, and stay.
   */
  private checkGlobReach(word: Word): void {
    const segment = word.expansions.length === 0 ? globSegmentReachingDotDot(word) : undefined;
    if (segment !== undefined) {
      this.noteUncertain(
        `the glob \`${segment}\` in \`${word.raw}\` can match \`.\` and \`..\` on the device's shell (dash, busybox, older bash), which climbs out of the folder; name the entries without a glob right after a leading \`.\` (\`.??*\` or \`.[!.]*\` match hidden names only)`,
      );
    }
  }

  /**
   * A glob at the very start of an argument can expand to a file name that starts with `-`, which the program
   * reads as an option (`find *` next to a file named `-delete`). `./*` expands to the same files and never can.
   */
  private checkArgument(word: Word): void {
    const first = word.chars[0];
    if (word.expansions.length === 0 && first && !first.quoted && '*?['.includes(first.ch)) {
      this.noteUncertain(
        `the argument \`${word.raw}\` starts with a glob, which can expand to a file name starting with \`-\` that the program reads as an option; write \`./${word.raw}\` instead`,
      );
    }
  }

  // --- redirections and here-documents ----------------------------------------------------------

  private atRedirection(): boolean {
    const rest = this.src.slice(this.pos);
    if (/^\{[A-Za-z_][A-Za-z0-9_]*\}[<>]/.test(rest)) this.stop('a named file descriptor (`{fd}>`)');
    const digits = /^[0-9]*/.exec(rest)?.[0] ?? '';
    const op = matchAt(rest, digits.length, REDIRECT_OPS);
    if (op === undefined) return false;
    // `<(` and `>(` start a process substitution, which is a word.
    return !(digits === '' && (op === '<' || op === '>') && rest[1] === '(');
  }

  /** Reads `[n]op target`; returns it in sh-syntax's notation for the cross-check. */
  private readRedirection(): string {
    const fd = /^[0-9]*/.exec(this.src.slice(this.pos))?.[0] ?? '';
    this.pos += fd.length;
    const op = matchAt(this.src, this.pos, REDIRECT_OPS) ?? '';
    this.pos += op.length;
    if (fd.length > 1) this.noteUncertain(`the file descriptor \`${fd}\` has more than one digit, which a POSIX sh reads as an argument \`${fd}\` instead`);
    if (BASH_ONLY_REDIRECTS.has(op)) {
      this.noteUncertain(`\`${op}\` is bash-only: a POSIX sh on the device reads it as \`&\` and runs the rest as a new command. Write \`>${op === '&>>' ? '>' : ''}FILE 2>&1\` instead`);
    }
    this.skipBlanks();
    if (!this.atWordStart()) this.fail(`\`${op}\` must be followed by a word`);
    const word = this.readWord();
    if (op === '<<' || op === '<<-') this.queueHereDoc(word, op === '<<-');
    else if (word.expansions.length === 0 && hasUnquotedGlob(word)) {
      this.noteUncertain(`the redirection target \`${word.raw}\` is a glob pattern, so the device decides which file it is`);
    }
    const target = wordText(word);
    if (/^\/dev\/(tcp|udp)\//.test(target)) this.noteUncertain(`\`${target}\` makes bash open a network connection`);
    const text = `${fd}${op}${canonicalWord(word, true)}`;
    const words = [{ value: `${fd}${op}`, glob: false, expanded: false }, commandWord(word)];
    this.findings.redirections.push({ op, fd: fd || null, target, writes: redirectionWrites(op, word), reads: redirectionReads(op, word), text, words });
    return `${fd}${op}`;
  }

  private queueHereDoc(word: Word, stripTabs: boolean): void {
    if (word.expansions.length > 0) this.stop(`a here-document delimiter with an expansion (\`${word.raw}\`)`);
    const quoted = word.chars.some((c) => c.quoted);
    this.pendingHereDocs.push({ delimiter: wordValue(word), stripTabs, quoted });
  }

  private consumeNewline(): void {
    this.pos += 1;
    const pending = this.pendingHereDocs;
    this.pendingHereDocs = [];
    for (const hereDoc of pending) this.readHereDocBody(hereDoc);
  }

  private readHereDocBody(hereDoc: PendingHereDoc): void {
    const body: string[] = [];
    for (;;) {
      if (this.pos >= this.src.length) this.fail(`the here-document \`${hereDoc.delimiter}\` is not terminated`);
      const newline = this.src.indexOf('\n', this.pos);
      const lineEnd = newline < 0 ? this.src.length : newline;
      const line = this.src.slice(this.pos, lineEnd);
      this.pos = newline < 0 ? this.src.length : newline + 1;
      if ((hereDoc.stripTabs ? line.replace(/^\t+/, '') : line) === hereDoc.delimiter) break;
      body.push(line);
    }
    // An unquoted delimiter makes the shell expand `$...` and backquotes inside the body.
    if (!hereDoc.quoted && /[$`\\]/.test(body.join('\n'))) {
      this.noteUncertain(
        `the here-document \`${hereDoc.delimiter}\` has an unquoted delimiter and its body contains \`$\`, ` +
          `a backquote or \`\\\`, which the shell would expand; quote the delimiter (<<'${hereDoc.delimiter}')`,
      );
    }
  }

  // --- words ------------------------------------------------------------------------------------

  private atWordStart(): boolean {
    if (this.pos >= this.src.length) return false;
    if (this.src.startsWith('<(', this.pos) || this.src.startsWith('>(', this.pos)) return true;
    return !METACHARS.has(this.src[this.pos]!);
  }

  private readWord(): Word {
    const start = this.pos;
    const word: Word = { chars: [], raw: '', expansions: [] };
    while (this.pos < this.src.length) {
      const ch = this.src[this.pos]!;
      const isProcessSubstitution = this.pos === start && (ch === '<' || ch === '>');
      if (METACHARS.has(ch) && !isProcessSubstitution) break;
      this.readWordPart(word, ch);
    }
    word.raw = this.src.slice(start, this.pos);
    this.checkWordShape(word);
    return word;
  }

  private readWordPart(word: Word, ch: string): void {
    switch (ch) {
      case '\\':
        return this.readBackslash(word);
      case "'":
        return this.readSingleQuoted(word);
      case '"':
        return this.readDoubleQuoted(word);
      case '$':
        return this.readDollar(word, false);
      case '`':
        return this.readBackquoted(word, false);
      case '<':
      case '>':
        return this.readProcessSubstitution(word);
      default:
        word.chars.push({ ch, quoted: false });
        this.pos += 1;
    }
  }

  private readBackslash(word: Word): void {
    const next = this.src[this.pos + 1];
    if (next === undefined) this.stop('a trailing backslash');
    if (next !== '\n') word.chars.push({ ch: next, quoted: true });
    this.pos += 2;
  }

  private readSingleQuoted(word: Word): void {
    const end = this.src.indexOf("'", this.pos + 1);
    if (end < 0) this.fail('a single quote is not closed');
    for (const ch of this.src.slice(this.pos + 1, end)) word.chars.push({ ch, quoted: true });
    this.pos = end + 1;
  }

  private readDoubleQuoted(word: Word): void {
    this.pos += 1;
    for (;;) {
      const ch = this.src[this.pos];
      if (ch === undefined) this.fail('a double quote is not closed');
      if (ch === '"') break;
      if (ch === '$') this.readDollar(word, true);
      else if (ch === '`') this.readBackquoted(word, true);
      else if (ch === '\\') this.readBackslashInDoubleQuotes(word);
      else {
        word.chars.push({ ch, quoted: true });
        this.pos += 1;
      }
    }
    this.pos += 1;
  }

  private readBackslashInDoubleQuotes(word: Word): void {
    const next = this.src[this.pos + 1];
    if (next === '\n') {
      this.pos += 2;
    } else if (next !== undefined && '$`"\\'.includes(next)) {
      word.chars.push({ ch: next, quoted: true });
      this.pos += 2;
    } else {
      word.chars.push({ ch: '\\', quoted: true });
      this.pos += 1;
    }
  }

  private readDollar(word: Word, inDoubleQuotes: boolean): void {
    const start = this.pos;
    const next = this.src[this.pos + 1] ?? '';
    if (next === '(' && this.src[this.pos + 2] === '(') this.stop('an arithmetic expansion `$((...))`');
    if (next === '{') this.stop('a parameter expansion `${...}` (its value is only known on the device)');
    if (next === '[') this.stop('an arithmetic expansion `$[...]`');
    if (next === '(') {
      this.pos += 2;
      this.readList({ paren: true });
      this.expectChar(')');
      return this.noteExpansion(word, start, 'a command substitution, whose output only the device knows');
    }
    if (next === "'" && !inDoubleQuotes) {
      this.skipAnsiCQuoted();
      return this.noteExpansion(word, start, 'ANSI-C quoting, which shells decode differently');
    }
    if (next === '"' && !inDoubleQuotes) {
      this.pos += 1;
      this.readDoubleQuoted(word);
      return this.noteExpansion(word, start, 'locale-translated quoting');
    }
    const name = /^(?:[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-])/.exec(this.src.slice(this.pos + 1))?.[0];
    this.pos += 1 + (name?.length ?? 0);
    if (!name) word.chars.push({ ch: '$', quoted: inDoubleQuotes });
    this.noteExpansion(word, start, name ? 'a parameter expansion, whose value only the device knows' : 'a `$` that shells read differently; quote it');
  }

  private skipAnsiCQuoted(): void {
    let i = this.pos + 2;
    while (i < this.src.length && this.src[i] !== "'") i += this.src[i] === '\\' ? 2 : 1;
    if (i >= this.src.length) this.fail("a `$'` quote is not closed");
    this.pos = i + 1;
  }

  private readBackquoted(word: Word, inDoubleQuotes: boolean): void {
    const start = this.pos;
    let inner = '';
    for (this.pos += 1; ; ) {
      const ch = this.src[this.pos];
      if (ch === undefined) this.fail('a backquote is not closed');
      this.pos += 1;
      if (ch === '`') break;
      const next = this.src[this.pos];
      // Inside backquotes a backslash only escapes $ ` \ (and " within double quotes).
      if (ch === '\\' && next !== undefined && ('$`\\'.includes(next) || (inDoubleQuotes && next === '"'))) {
        inner += next;
        this.pos += 1;
      } else {
        inner += ch;
      }
    }
    this.readNestedSource(inner);
    this.noteExpansion(word, start, 'a command substitution, whose output only the device knows');
  }

  private readNestedSource(source: string): void {
    this.enter();
    const nested = new ShellReader(source, this.findings, this.depth);
    const outcome = nested.readTopLevel();
    if (outcome.kind === 'stopped') throw new StopReading(outcome.reason);
    this.leave();
  }

  private readProcessSubstitution(word: Word): void {
    const start = this.pos;
    this.pos += 2;
    this.readList({ paren: true });
    this.expectChar(')');
    this.noteExpansion(word, start, 'a process substitution');
  }

  private noteExpansion(word: Word, start: number, what: string): void {
    const text = this.src.slice(start, this.pos);
    word.expansions.push(text);
    this.noteUncertain(`\`${preview(text)}\` is ${what}`);
  }

  /** Shapes the shell would rewrite before running: `~`, `{a,b}`. */
  private checkWordShape(word: Word): void {
    if (hasTildeExpansion(word)) {
      this.noteUncertain(`the \`~\` in \`${word.raw}\` is expanded by the device to a home directory`);
    }
    if (hasBraceExpansion(word)) {
      this.noteUncertain(`\`${word.raw}\` is a brace expansion, which the shell turns into several words`);
    }
  }

  // --- low-level scanning -------------------------------------------------------------------------

  /** Skips blanks, `\`-newline continuations and a comment (up to, not including, its newline). */
  private skipBlanks(): void {
    for (;;) {
      const ch = this.src[this.pos];
      if (ch !== undefined && BLANKS.has(ch)) this.pos += 1;
      else if (ch === '\\' && this.src[this.pos + 1] === '\n') this.pos += 2;
      else break;
    }
    if (this.src[this.pos] === '#') {
      const newline = this.src.indexOf('\n', this.pos);
      this.pos = newline < 0 ? this.src.length : newline;
    }
  }

  private skipLinebreaks(): void {
    for (this.skipBlanks(); this.src[this.pos] === '\n'; this.skipBlanks()) this.consumeNewline();
  }

  private peekControlOp(): string | undefined {
    if (matchAt(this.src, this.pos, ['&>'])) return undefined; // a redirection, not `&`
    return matchAt(this.src, this.pos, CONTROL_OPS);
  }

  /** The reserved word at the cursor, if the next token is one (`if`, `{`, `!`...), unquoted. */
  private peekReservedWord(): string | undefined {
    let end = this.pos;
    while (end < this.src.length && !METACHARS.has(this.src[end]!) && !'\'"\\$`'.includes(this.src[end]!)) end += 1;
    const next = this.src[end];
    if (next !== undefined && !METACHARS.has(next)) return undefined;
    const word = this.src.slice(this.pos, end);
    return RESERVED.has(word) ? word : undefined;
  }

  private expectWord(word: string): void {
    this.skipBlanks();
    if (this.peekReservedWord() !== word) this.fail(`\`${word}\` is missing`);
    this.pos += word.length;
  }

  private expectChar(ch: string): void {
    if (this.src[this.pos] !== ch) this.fail(`\`${ch}\` is missing`);
    this.pos += 1;
  }

  private enter(): void {
    this.depth += 1;
    if (this.depth > MAX_NESTING) this.stop(`nesting deeper than ${MAX_NESTING} levels`);
  }

  private leave(): void {
    this.depth -= 1;
  }

  private noteUncertain(reason: string): void {
    this.findings.uncertain.push(reason);
  }

  /** Something we can't follow: the line is uncertain as a whole. */
  private stop(what: string): never {
    throw new StopReading(`it contains ${what}, which the policy can't check; write the command plainly`);
  }

  /** sh-syntax accepted the line but our reader can't follow it. */
  private fail(problem: string): never {
    throw new StopReading(`it uses shell syntax the policy can't check (${problem}); write the command plainly`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Word helpers

function matchAt(text: string, index: number, candidates: readonly string[]): string | undefined {
  return candidates.find((candidate) => text.startsWith(candidate, index));
}

function wordValue(word: Word): string {
  return word.chars.map((c) => c.ch).join('');
}

/** The resolved value, or the source text when the value depends on expansions. */
function wordText(word: Word): string {
  return word.expansions.length > 0 ? word.raw : wordValue(word);
}

function isAssignment(word: Word): boolean {
  const prefix = /^[A-Za-z_][A-Za-z0-9_]*\+?=/.exec(wordValue(word))?.[0];
  return prefix !== undefined && word.chars.slice(0, prefix.length).every((c) => !c.quoted);
}

function simpleCommand(assignments: Word[], args: Word[]): SimpleCommand {
  const texts = [...assignments.map(canonicalAssignment), ...args.map((word, i) => (i === 0 ? canonicalCommandName(word) : canonicalWord(word, true)))];
  const words = args.map(commandWord);
  return { text: texts.join(' '), argv: words.map((w) => w.value), words, assignments: assignments.map(wordText) };
}

function commandWord(word: Word): CommandWord {
  return { value: wordText(word), glob: hasUnquotedGlob(word), expanded: word.expansions.length > 0 };
}

// ---------------------------------------------------------------------------------------------------
// The canonical text policy patterns see. Each word is encoded so that a shell reading the text back gets the same
// words with the same globbing: made only of SAFE_CHARS it stands as it is; otherwise its runs between unquoted glob
// characters are POSIX single-quoted. So the encoding is injective: `grep -F "'" -e root` can't read like one quoted
// argument, and `'-exec'` inside a quoted value can't read like an option.

/** Characters a word may be made of to stand unquoted. */
const SAFE_CHARS = /^[A-Za-z0-9_@%+=:,./-]$/;
/** Unquoted, these glob; they stand outside the quotes so a pattern sees which characters the device expands. */
const GLOB_CHARS = '*?[]';

/** The encoding of one word; `globs` false for an assignment value, which the shell never expands. */
export function encodeWordChars(chars: readonly WordChar[], globs: boolean): string {
  if (chars.length === 0) return "''";
  let out = '';
  let run = '';
  let runIsSafe = true;
  const flush = (): void => {
    if (run !== '') out += runIsSafe ? run : shellQuote(run);
    run = '';
    runIsSafe = true;
  };
  for (const c of chars) {
    if (globs && !c.quoted && GLOB_CHARS.includes(c.ch)) {
      flush();
      out += c.ch;
    } else {
      run += c.ch;
      if (!SAFE_CHARS.test(c.ch)) runIsSafe = false;
    }
  }
  flush();
  return out;
}

/** A word with expansions reads as written (such lines are uncertain; deny rules still see them). */
function canonicalWord(word: Word, globs: boolean): string {
  return word.expansions.length > 0 ? word.raw : encodeWordChars(word.chars, globs);
}

/** `NAME=value`, the value encoded: `FOO='a b'`. */
function canonicalAssignment(word: Word): string {
  if (word.expansions.length > 0) return word.raw;
  const name = /^[A-Za-z_][A-Za-z0-9_]*\+?=/.exec(wordValue(word))![0];
  return name + encodeWordChars(word.chars.slice(name.length), false);
}

/** A quoted command name that looks like an assignment (`'A=x' ls` runs a program named `A=x`) stays quoted. */
function canonicalCommandName(word: Word): string {
  const text = canonicalWord(word, true);
  if (word.expansions.length > 0 || !/^[A-Za-z_][A-Za-z0-9_]*\+?=/.test(text)) return text;
  return hasUnquotedGlob(word) ? `''${text}` : shellQuote(wordValue(word));
}

function hasUnquotedGlob(word: Word): boolean {
  return word.chars.some((c) => !c.quoted && '*?['.includes(c.ch));
}

/**
 * The first path segment of `word` whose glob can match `.` or `..`, or undefined. Shells match a leading `.` only
 * when the pattern starts with one; then the segment can match `.`/`..` when every element other than `*` can match
 * a `.` and there are at most two of them.
 */
function globSegmentReachingDotDot(word: Word): string | undefined {
  const segments: WordChar[][] = [[]];
  for (const c of word.chars) {
    if (c.ch === '/') segments.push([]);
    else segments.at(-1)!.push(c);
  }
  return segments.find(segmentCanMatchDotNames)?.map((c) => c.ch).join('');
}

function segmentCanMatchDotNames(segment: WordChar[]): boolean {
  if (segment[0]?.ch !== '.' || !segment.some((c) => !c.quoted && '*?['.includes(c.ch))) return false;
  let fixed = 0;
  for (let i = 0; i < segment.length; i += 1) {
    const c = segment[i]!;
    if (!c.quoted && c.ch === '*') continue;
    fixed += 1;
    if (!c.quoted && c.ch === '[') {
      const close = bracketEnd(segment, i);
      if (close > i) {
        if (!bracketMayMatchDot(segment.slice(i + 1, close))) return false;
        i = close;
        continue;
      }
    }
    if (!(c.ch === '.' || (!c.quoted && c.ch === '?'))) return false;
  }
  return fixed <= 2; // with or without `*`: `.`, `..` (fixed is at least 1, the leading `.`)
}

/** Index of the unquoted `]` closing the bracket expression opened at `open`, or -1 (then `[` is literal). */
function bracketEnd(chars: WordChar[], open: number): number {
  let i = open + 1;
  if (chars[i] && !chars[i]!.quoted && (chars[i]!.ch === '!' || chars[i]!.ch === '^')) i += 1;
  if (chars[i]?.ch === ']') i += 1; // a `]` first in the set is a member
  for (; i < chars.length; i += 1) if (!chars[i]!.quoted && chars[i]!.ch === ']') return i;
  return -1;
}

/** Whether a bracket expression's members (between `[` and `]`) may include `.`; unsure means yes. */
function bracketMayMatchDot(members: WordChar[]): boolean {
  const text = members.map((c) => c.ch).join('');
  const negated = members[0] !== undefined && !members[0].quoted && (text[0] === '!' || text[0] === '^');
  if (negated) return !text.slice(1).includes('.');
  if (text.includes('.') || text.includes('[')) return true;
  for (let i = 1; i + 1 < text.length; i += 1) {
    if (text[i] === '-' && text[i - 1]! <= '.' && text[i + 1]! >= '.') return true;
  }
  return false;
}

/** `~` at the start of a word, or after `=`/`:` (as in assignments), is expanded by the shell. */
function hasTildeExpansion(word: Word): boolean {
  return word.chars.some((c, i) => {
    if (c.quoted || c.ch !== '~') return false;
    const before = word.chars[i - 1];
    return before === undefined || (!before.quoted && (before.ch === '=' || before.ch === ':'));
  });
}

/** An unquoted `{` ... unquoted `}` with a `,` or `..` between them (`{a,b}`, `{1..3}`). */
function hasBraceExpansion(word: Word): boolean {
  const open = word.chars.findIndex((c) => !c.quoted && c.ch === '{');
  if (open < 0) return false;
  let close = word.chars.length - 1;
  while (close > open && (word.chars[close]!.quoted || word.chars[close]!.ch !== '}')) close -= 1;
  if (close <= open) return false;
  const between = word.chars.slice(open + 1, close).map((c) => c.ch).join('');
  return between.includes(',') || between.includes('..');
}

function redirectionReads(op: string, target: Word): boolean {
  return FILE_READ_OPS.has(op) && !(HARMLESS_WRITE_TARGETS.has(wordText(target)) && target.expansions.length === 0);
}

function redirectionWrites(op: string, target: Word): boolean {
  const value = wordText(target);
  if (HARMLESS_WRITE_TARGETS.has(value) && target.expansions.length === 0) return false;
  if (FILE_WRITE_OPS.has(op)) return true;
  // `>&word` writes to a file unless word is a descriptor (`2>&1`, `>&-`, `>&2-`).
  return op === '>&' && !/^(?:[0-9]+-?|-)$/.test(value);
}

function preview(text: string): string {
  const oneLine = text.replace(/\n/g, '\\n');
  return oneLine.length > 80 ? `${oneLine.slice(0, 77)}...` : oneLine;
}
