// Named actions: operator-written command templates with typed parameters. A parameter's value reaches
// the shell only as one single-quoted word, so `; rm -rf / #` or `$(touch /tmp/x)` are plain text.
// That promise holds only where a placeholder stands outside any quoting or expansion in the template,
// which validateActionTemplate checks at config time (and renderAction again before every run).
import { posix } from 'node:path';
import { z } from 'zod';
import { shellQuote } from './shell.js';

const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DEFAULT_MAX_LENGTH = 1024;
const MAX_PATH_LENGTH = 4096;
const MAX_INTEGER_DIGITS = 15;

const regexSource = z.string().refine(isValidRegex, { message: 'not a valid regular expression' });
const cleanAbsolutePath = z
  .string()
  .startsWith('/')
  .refine((p) => pathProblem(p) === undefined, {
    message: 'expected an absolute, normalized path like "/var/log" (no "..", ".", "//" or trailing "/")',
  });

const stringParamSchema = z.strictObject({
  type: z.literal('string'),
  description: z.string().optional(),
  /** Must match the whole value. */
  pattern: regexSource.optional(),
  max_length: z.number().int().positive().optional(),
  default: z.string().optional(),
});

const integerParamSchema = z.strictObject({
  type: z.literal('integer'),
  description: z.string().optional(),
  min: z.number().int().optional(),
  max: z.number().int().optional(),
  default: z.number().int().optional(),
});

const enumParamSchema = z.strictObject({
  type: z.literal('enum'),
  description: z.string().optional(),
  values: z.array(z.string()).min(1),
  default: z.string().optional(),
});

const pathParamSchema = z.strictObject({
  type: z.literal('path'),
  description: z.string().optional(),
  roots: z.array(cleanAbsolutePath).min(1),
  default: z.string().optional(),
});

export const paramSpecSchema = z.discriminatedUnion('type', [
  stringParamSchema,
  integerParamSchema,
  enumParamSchema,
  pathParamSchema,
]);

const actionShape = z.strictObject({
  description: z.string().min(1),
  /** Template; each {{param}} is replaced by the param's single-quoted value. */
  command: z.string().min(1),
  params: z.record(z.string().regex(PARAM_NAME), paramSpecSchema).optional(),
  /** Ask a human before every run. */
  confirm: z.boolean().optional(),
  timeout_s: z.number().positive().optional(),
});

/** One entry of a connection's `actions`. Template problems are reported as issues on `command`. */
export const actionSchema = actionShape.superRefine((action, ctx) => {
  for (const message of validateActionTemplate(action)) ctx.addIssue({ code: 'custom', message, path: ['command'] });
});

export type ParamSpec = z.infer<typeof paramSpecSchema>;
export type ActionConfig = z.infer<typeof actionShape>;
/** A path parameter's value and the roots it must stay under, for the check against the device's own view. */
export interface ActionPath {
  param: string;
  value: string;
  roots: string[];
}
export type RenderResult = { ok: true; command: string; paths: ActionPath[] } | { ok: false; error: string };

/** Validates `params` against the action and fills the template with single-quoted values. */
export function renderAction(name: string, action: ActionConfig, params: unknown): RenderResult {
  const templateErrors = validateActionTemplate(action);
  if (templateErrors.length > 0) {
    return { ok: false, error: `action "${name}" is misconfigured (${templateErrors.join('; ')}); ask the operator to fix it` };
  }
  const resolved = resolveParams(action, params);
  if ('errors' in resolved) {
    return { ok: false, error: `${resolved.errors.join('; ')}. Action "${name}" takes ${describeParamList(action)}.` };
  }
  const command = action.command.replace(placeholderPattern(), (_match, param: string) => shellQuote(resolved.values[param]!));
  const paths = Object.entries(action.params ?? {}).flatMap(([param, spec]) =>
    spec.type === 'path' ? [{ param, value: resolved.values[param]!, roots: spec.roots }] : [],
  );
  return { ok: true, command, paths };
}

/**
 * Whether a path parameter still lies under its roots once the device has resolved symlinks (`real`), with the
 * roots resolved the same way (`realRoots`; a root may itself be a link, like /var/run → /run). The text check
 * alone would let /var/log/x → /etc/shadow through.
 */
export function resolvedPathProblem(path: ActionPath, real: string, realRoots: string[]): string | undefined {
  if (realRoots.some((root) => isUnder(real, root))) return undefined;
  return `parameter "${path.param}" is ${path.value}, which the device resolves (symlinks followed) to ${real}, outside ${path.roots.join(' or ')}`;
}

/** Config-time checks of one action; returns human-readable problems (empty when fine). */
export function validateActionTemplate(action: ActionConfig): string[] {
  const specs = action.params ?? {};
  const uses = scanPlaceholders(action.command);
  const errors = [...uses.problems];
  const used = new Set(uses.placeholders.map((p) => p.name));
  for (const use of uses.placeholders) {
    if (!(use.name in specs)) errors.push(`{{${use.name}}} is used in command but not declared in params`);
    if (use.unsafeContext) {
      errors.push(
        `{{${use.name}}} stands ${use.unsafeContext}; placeholders must stand outside quotes and expansions ` +
          '(the value is single-quoted for you, e.g. cat {{file}})',
      );
    }
  }
  for (const [param, spec] of Object.entries(specs)) {
    if (!used.has(param)) errors.push(`param "${param}" is declared but command never uses {{${param}}}`);
    errors.push(...specProblems(param, spec));
  }
  return errors;
}

/** A compact list of actions for a tool description: name, what it does, each param's constraints. */
export function describeActions(actions: Record<string, ActionConfig>): string {
  const entries = Object.entries(actions);
  if (entries.length === 0) return '(no actions)';
  return entries.map(([name, action]) => describeAction(name, action)).join('\n');
}

// ---------------------------------------------------------------------------------------------------
// Parameters

type Resolved = { values: Record<string, string> } | { errors: string[] };
export type Checked = { value: string } | { error: string };

function resolveParams(action: ActionConfig, params: unknown): Resolved {
  const specs = action.params ?? {};
  if (params !== undefined && params !== null && (typeof params !== 'object' || Array.isArray(params))) {
    return { errors: ['params must be an object of parameter name → value'] };
  }
  const given = (params ?? {}) as Record<string, unknown>;
  const errors = Object.keys(given)
    .filter((key) => !Object.hasOwn(specs, key))
    .map((key) => `unknown parameter "${key}"`);
  const values: Record<string, string> = {};
  for (const [param, spec] of Object.entries(specs)) {
    const raw = given[param] ?? spec.default;
    if (raw === undefined || raw === null) {
      errors.push(`missing parameter "${param}" (${describeSpec(spec)})`);
      continue;
    }
    const checked = checkParamValue(param, spec, raw);
    if ('error' in checked) errors.push(checked.error);
    else values[param] = checked.value;
  }
  return errors.length > 0 ? { errors } : { values };
}

/**
 * The typed matcher shared by action parameters and structured policy rules (rules.ts): the value `raw` as the
 * spec admits it, or why not. `param` names the value in the error.
 */
export function checkParamValue(param: string, spec: ParamSpec, raw: unknown): Checked {
  switch (spec.type) {
    case 'string':
      return checkString(param, spec, raw);
    case 'integer':
      return checkInteger(param, spec, raw);
    case 'enum':
      return checkEnum(param, spec, raw);
    case 'path':
      return checkPath(param, spec, raw);
  }
}

/** Numbers and booleans are accepted as their text for string-like params: models send `5` for "5". */
function asText(raw: unknown): string | undefined {
  if (typeof raw === 'string') return raw;
  if ((typeof raw === 'number' && Number.isFinite(raw)) || typeof raw === 'boolean') return String(raw);
  return undefined;
}

function checkString(param: string, spec: z.infer<typeof stringParamSchema>, raw: unknown): Checked {
  const value = asText(raw);
  if (value === undefined) return { error: `parameter "${param}" must be a string` };
  const maxLength = spec.max_length ?? DEFAULT_MAX_LENGTH;
  if ([...value].length > maxLength) return { error: `parameter "${param}" is longer than ${maxLength} characters` };
  if (CONTROL_CHARS.test(value)) return { error: `parameter "${param}" contains control characters (only tab and newline are allowed)` };
  if (spec.pattern !== undefined) {
    if (!wholeMatch(spec.pattern).test(value)) return { error: `parameter "${param}" must match ${spec.pattern}` };
  } else if (value.startsWith('-')) {
    // Quoting stops the shell, not the program: `-rf` would still be read as options.
    return { error: `parameter "${param}" may not start with "-" (the command would read it as an option)` };
  }
  return { value };
}

function checkInteger(param: string, spec: z.infer<typeof integerParamSchema>, raw: unknown): Checked {
  const text = typeof raw === 'string' ? raw.trim() : undefined;
  const digits = new RegExp(`^-?[0-9]{1,${MAX_INTEGER_DIGITS}}$`);
  const value = typeof raw === 'number' ? raw : text !== undefined && digits.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value)) return { error: `parameter "${param}" must be an integer` };
  if ((spec.min !== undefined && value < spec.min) || (spec.max !== undefined && value > spec.max)) {
    return { error: `parameter "${param}" must be ${describeRange(spec)}, not ${value}` };
  }
  return { value: String(value) };
}

function checkEnum(param: string, spec: z.infer<typeof enumParamSchema>, raw: unknown): Checked {
  const value = asText(raw);
  if (value === undefined || !spec.values.includes(value)) {
    return { error: `parameter "${param}" must be one of ${spec.values.map((v) => JSON.stringify(v)).join(', ')}` };
  }
  return { value };
}

function checkPath(param: string, spec: z.infer<typeof pathParamSchema>, raw: unknown): Checked {
  if (typeof raw !== 'string') return { error: `parameter "${param}" must be a path string` };
  const problem = pathProblem(raw);
  if (problem) return { error: `parameter "${param}" ${problem}` };
  if (!spec.roots.some((root) => isUnder(raw, root))) {
    return { error: `parameter "${param}" must be under ${spec.roots.join(' or ')}` };
  }
  return { value: raw };
}

// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u0008\u000b-\u001f\u007f]/;

/** Why `p` is not an absolute, normalized path, or undefined. */
function pathProblem(p: string): string | undefined {
  if (!p.startsWith('/')) return 'must be an absolute path (starting with "/")';
  if (p.length > MAX_PATH_LENGTH) return `is longer than ${MAX_PATH_LENGTH} characters`;
  if (/[\u0000-\u001f\u007f]/.test(p)) return 'contains control characters';
  if (p !== '/' && p.endsWith('/')) return 'must not end with "/"';
  if (posix.normalize(p) !== p || p.split('/').some((segment) => segment === '.' || segment === '..')) {
    return 'must be normalized (no "..", "." or "//" segments)';
  }
  return undefined;
}

function isUnder(p: string, root: string): boolean {
  return root === '/' || p === root || p.startsWith(`${root}/`);
}

function isValidRegex(source: string): boolean {
  try {
    new RegExp(source);
    return true;
  } catch {
    return false;
  }
}

function wholeMatch(source: string): RegExp {
  return new RegExp(`^(?:${source})$`);
}

/** Config-time problems of one param's own spec (bad default, min above max...). */
function specProblems(param: string, spec: ParamSpec): string[] {
  if (spec.type === 'string' && spec.pattern !== undefined && !isValidRegex(spec.pattern)) {
    return [`param "${param}": pattern ${JSON.stringify(spec.pattern)} is not a valid regular expression`];
  }
  if (spec.type === 'integer' && spec.min !== undefined && spec.max !== undefined && spec.min > spec.max) {
    return [`param "${param}": min ${spec.min} is above max ${spec.max}`];
  }
  if (spec.type === 'path') {
    const bad = spec.roots.filter((root) => pathProblem(root) !== undefined);
    if (bad.length > 0) return [`param "${param}": roots must be absolute, normalized paths (${bad.join(', ')})`];
  }
  if (spec.default === undefined) return [];
  const checked = checkParamValue(param, spec, spec.default);
  return 'error' in checked ? [`param "${param}": its default is invalid: ${checked.error}`] : [];
}

// ---------------------------------------------------------------------------------------------------
// Descriptions

function describeAction(name: string, action: ActionConfig): string {
  const flags = [action.confirm ? 'asks a human first' : '', action.timeout_s ? `timeout ${action.timeout_s}s` : '']
    .filter(Boolean)
    .join(', ');
  const head = `- ${name}: ${action.description}${flags ? ` (${flags})` : ''}`;
  const params = Object.entries(action.params ?? {}).map(([param, spec]) => `    ${describeParam(param, spec)}`);
  return [head, ...(params.length > 0 ? params : ['    (no params)'])].join('\n');
}

function describeParam(param: string, spec: ParamSpec): string {
  const required = spec.default === undefined ? 'required' : `default ${JSON.stringify(spec.default)}`;
  const note = spec.description ? ` — ${spec.description}` : '';
  return `${param} (${required}): ${describeSpec(spec)}${note}`;
}

export function describeSpec(spec: ParamSpec): string {
  switch (spec.type) {
    case 'string': {
      const shape = spec.pattern !== undefined ? `matching ${spec.pattern}` : 'not starting with "-"';
      return `string ${shape}, at most ${spec.max_length ?? DEFAULT_MAX_LENGTH} characters`;
    }
    case 'integer':
      return spec.min === undefined && spec.max === undefined ? 'integer' : `integer ${describeRange(spec)}`;
    case 'enum':
      return `one of ${spec.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'path':
      return `absolute path under ${spec.roots.join(' or ')}`;
  }
}

function describeRange(spec: { min?: number; max?: number }): string {
  if (spec.min !== undefined && spec.max !== undefined) return `from ${spec.min} to ${spec.max}`;
  return spec.min !== undefined ? `at least ${spec.min}` : `at most ${spec.max}`;
}

function describeParamList(action: ActionConfig): string {
  const entries = Object.entries(action.params ?? {});
  if (entries.length === 0) return 'no parameters';
  return entries.map(([param, spec]) => describeParam(param, spec)).join('; ');
}

// ---------------------------------------------------------------------------------------------------
// Placeholders and the quoting context they stand in

function placeholderPattern(): RegExp {
  return /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;
}

interface PlaceholderUse {
  name: string;
  /** Where it stands when that is unsafe ("inside double quotes"), else undefined. */
  unsafeContext?: string;
}

interface ScanResult {
  placeholders: PlaceholderUse[];
  problems: string[];
}

type FrameKind =
  | 'single-quote'
  | 'double-quote'
  | 'backquote'
  | 'ansi-c'
  | 'parameter'
  | 'arithmetic'
  | 'old-arithmetic'
  | 'test'
  | 'comment'
  | 'command-substitution'
  | 'subshell'
  | 'case';

interface Frame {
  kind: FrameKind;
  /** Open parentheses inside an arithmetic frame. */
  parens: number;
}

/** Frames whose contents the shell parses as ordinary commands, so a quoted value stays one word. */
const PLAIN_FRAMES = new Set<FrameKind>(['command-substitution', 'subshell', 'case']);
const UNSAFE_WHERE: Record<FrameKind, string> = {
  'single-quote': 'inside single quotes',
  'double-quote': 'inside double quotes',
  backquote: 'inside backquotes',
  'ansi-c': "inside $'...' quoting",
  parameter: 'inside a ${...} expansion',
  arithmetic: 'inside arithmetic',
  'old-arithmetic': 'inside $[...] arithmetic',
  test: 'inside [[ ... ]], where bash evaluates operands as arithmetic',
  comment: 'in a comment (a newline in the value would end it)',
  'command-substitution': '',
  subshell: '',
  case: '',
};
const WORD_BREAK = new Set([' ', '\t', '\n', ';', '&', '|', '(', ')', '<', '>']);

/**
 * Lexical scan of a template, tracking quoting and expansion nesting, to find where each
 * placeholder stands. Conservative: anything it can't follow to the end is a problem.
 */
function scanPlaceholders(template: string): ScanResult {
  const scanner = new TemplateScanner(template);
  scanner.run();
  return { placeholders: scanner.placeholders, problems: scanner.problems };
}

class TemplateScanner {
  readonly placeholders: PlaceholderUse[] = [];
  readonly problems: string[] = [];
  private readonly stack: Frame[] = [];
  private i = 0;
  private escaped = false;
  private hereDocPending = false;
  private inHereDoc = false;

  constructor(private readonly t: string) {}

  run(): void {
    while (this.i < this.t.length) {
      if (this.takePlaceholder()) continue;
      if (this.inHereDoc) {
        // Past a here-document every placeholder is unsafe; the body's text needn't be followed.
        this.i += 1;
        continue;
      }
      if (this.escaped) {
        this.escaped = false;
        this.i += 1;
        continue;
      }
      this.step();
    }
    const open = this.stack.filter((f) => f.kind !== 'comment');
    if (open.length > 0 && !this.inHereDoc) {
      this.problems.push(`command has an unclosed ${open.map((f) => f.kind).join(' > ')} (the template's quoting could not be followed)`);
    }
    const malformed = this.t.match(/\{\{[^{}]*\}\}/g)?.filter((m) => !placeholderPattern().test(m)) ?? [];
    for (const m of malformed) this.problems.push(`${m} is not a valid placeholder (use {{name}} with letters, digits and _)`);
  }

  private takePlaceholder(): boolean {
    const match = /^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/.exec(this.t.slice(this.i, this.i + 200));
    if (!match) return false;
    this.placeholders.push({ name: match[1]!, unsafeContext: this.unsafeContext() });
    this.i += match[0].length;
    this.escaped = false;
    return true;
  }

  private unsafeContext(): string | undefined {
    if (this.escaped) return 'right after a backslash';
    if (this.inHereDoc) return 'after a here-document (<<), whose body the shell expands';
    const top = this.stack.at(-1);
    return top && !PLAIN_FRAMES.has(top.kind) ? UNSAFE_WHERE[top.kind] : undefined;
  }

  private step(): void {
    const top = this.stack.at(-1);
    switch (top?.kind) {
      case undefined:
      case 'command-substitution':
      case 'subshell':
      case 'case':
        return this.stepPlain(top);
      case 'single-quote':
        return this.stepUntil("'", false);
      case 'ansi-c':
        return this.stepUntil("'", true);
      case 'backquote':
        return this.stepUntil('`', true);
      case 'comment':
        return this.stepComment();
      case 'double-quote':
        return this.stepDoubleQuoted();
      case 'parameter':
        return this.stepParameter();
      case 'arithmetic':
        return this.stepArithmetic(top);
      case 'old-arithmetic':
        return this.stepUntil(']', false);
      case 'test':
        return this.stepTest();
    }
  }

  private stepPlain(top: Frame | undefined): void {
    if (this.at('\\')) return this.escapeNext();
    if (this.at('\n') && this.hereDocPending) this.inHereDoc = true;
    if (this.at('<<<')) return this.advance(3);
    if (this.at('<<')) {
      this.hereDocPending = true;
      return this.advance(2);
    }
    if (this.atWordStart() && this.atWord('case')) return this.open('case', 4);
    if (top?.kind === 'case' && this.atWordStart() && this.atWord('esac')) return this.close(4);
    if (this.atWordStart() && this.atWord('[[')) return this.open('test', 2);
    if (this.atWordStart() && this.at('#')) return this.open('comment', 1);
    if (this.atWordStart() && this.at('((')) return this.open('arithmetic', 2);
    if (this.at('(')) return this.open('subshell', 1);
    if (this.at(')')) {
      // In a `case`, `pattern)` closes a pattern, not a subshell.
      if (top?.kind === 'command-substitution' || top?.kind === 'subshell') return this.close(1);
      return this.advance(1);
    }
    if (this.stepQuoteOrExpansion()) return;
    this.advance(1);
  }

  /** Quotes and `$` forms, shared by plain and double-quoted text. */
  private stepQuoteOrExpansion(): boolean {
    const inDoubleQuotes = this.stack.at(-1)?.kind === 'double-quote';
    if (this.at("'") && !inDoubleQuotes) this.open('single-quote', 1);
    else if (this.at('"')) this.open('double-quote', 1);
    else if (this.at('`')) this.open('backquote', 1);
    else if (this.at("$'") && !inDoubleQuotes) this.open('ansi-c', 2);
    else if (this.at('$((')) this.open('arithmetic', 3);
    else if (this.at('$(')) this.open('command-substitution', 2);
    else if (this.at('${')) this.open('parameter', 2);
    else if (this.at('$[')) this.open('old-arithmetic', 2);
    else return false;
    return true;
  }

  private stepDoubleQuoted(): void {
    if (this.at('\\')) return this.escapeNext();
    if (this.at('"')) return this.close(1);
    if (!this.stepQuoteOrExpansion()) this.advance(1);
  }

  private stepParameter(): void {
    if (this.at('\\')) return this.escapeNext();
    if (this.at('}')) return this.close(1);
    if (!this.stepQuoteOrExpansion()) this.advance(1);
  }

  private stepArithmetic(frame: Frame): void {
    if (this.at('(')) {
      frame.parens += 1;
      return this.advance(1);
    }
    if (this.at(')') && frame.parens > 0) {
      frame.parens -= 1;
      return this.advance(1);
    }
    if (this.at('))')) return this.close(2);
    if (!this.stepQuoteOrExpansion()) this.advance(1);
  }

  private stepTest(): void {
    if (this.at('\\')) return this.escapeNext();
    if (this.at(']]')) return this.close(2);
    if (!this.stepQuoteOrExpansion()) this.advance(1);
  }

  /** A comment ends before its newline, which plain text then sees (it may start a here-document). */
  private stepComment(): void {
    if (this.at('\n')) this.stack.pop();
    else this.advance(1);
  }

  /** Inside a frame closed by `end`; with `backslashEscapes`, `\x` never closes it. */
  private stepUntil(end: string, backslashEscapes: boolean): void {
    if (backslashEscapes && this.at('\\')) return this.escapeNext();
    if (this.at(end)) return this.close(end.length);
    this.advance(1);
  }

  private at(text: string): boolean {
    return this.t.startsWith(text, this.i);
  }

  private atWordStart(): boolean {
    return this.i === 0 || WORD_BREAK.has(this.t[this.i - 1]!);
  }

  private atWord(word: string): boolean {
    const next = this.t[this.i + word.length];
    return this.at(word) && (next === undefined || WORD_BREAK.has(next));
  }

  private escapeNext(): void {
    this.escaped = true;
    this.i += 1;
  }

  private advance(n: number): void {
    this.i += n;
  }

  private open(kind: FrameKind, length: number): void {
    this.stack.push({ kind, parens: 0 });
    this.i += length;
  }

  private close(length: number): void {
    this.stack.pop();
    this.i += length;
  }
}
