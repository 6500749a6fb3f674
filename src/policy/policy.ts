// The policy decision: is this command line allowed to reach the device, does a human have to approve
// it first, or is it refused? Pure logic: no SSH, no MCP. See design.md "Policy".
// File tools are judged by the same lists (evaluateFileAccess, below).
//
// Order (design.md: deny wins, then confirm, then allow):
//   input hygiene → syntax → deny (any part) → uncertain → read_only writes → allow (every part must
//   match an allow or confirm pattern) → confirm (any part) → allow.
// "Not allowed" is checked before "confirm" so a human is never asked to approve a line that would be
// refused anyway (`systemctl restart x; reboot` is refused, not sent for approval).
import { posix } from 'node:path';
import { parseCommandLine, type Redirection, type SimpleCommand } from './shell.js';

export interface Policy {
  /** JS regex sources; with an allow list every simple command must match one (or a confirm pattern). */
  allow?: string[];
  /** A simple command (or redirection) matching any of these is refused. */
  deny?: string[];
  /** A simple command matching any of these needs a human's approval. */
  confirm?: string[];
  /** Refuse redirections that write files (write_file/upload_file are refused by their tools). */
  read_only?: boolean;
}

export interface CompiledRule {
  readonly list: 'allow' | 'deny' | 'confirm';
  readonly index: number;
  readonly source: string;
  readonly regex: RegExp;
  /** How decisions and audit records name the rule: `deny[0]: \brm\b`. */
  readonly label: string;
}

export interface CompiledPolicy {
  readonly compiled: true;
  /** null: no allow list (anything not denied may run). An empty list allows nothing. */
  readonly allow: readonly CompiledRule[] | null;
  readonly deny: readonly CompiledRule[];
  readonly confirm: readonly CompiledRule[];
  readonly readOnly: boolean;
}

export type PolicyDecision =
  | { decision: 'allow' }
  | { decision: 'confirm'; rule: string; reason: string }
  | { decision: 'deny'; rule: string; reason: string };

/** Longest command line (UTF-8 bytes) a policy will consider. */
export const MAX_COMMAND_BYTES = 16 * 1024;

/** Compiles every pattern once; throws an Error naming the list, index and pattern of a bad one. */
export function compilePolicy(policy: Policy): CompiledPolicy {
  return {
    compiled: true,
    allow: policy.allow ? compileList('allow', policy.allow) : null,
    deny: compileList('deny', policy.deny ?? []),
    confirm: compileList('confirm', policy.confirm ?? []),
    readOnly: policy.read_only === true,
  };
}

/**
 * Decides one command line. No policy at all means the original behaviour: everything runs.
 * Never throws: a policy whose patterns don't compile refuses everything, with the reason.
 */
export async function evaluateCommand(
  line: string,
  policy: Policy | CompiledPolicy | null | undefined,
): Promise<PolicyDecision> {
  if (!policy) return { decision: 'allow' };
  const compiled = compiledFrom(policy);
  if (compiled instanceof Error) return deny('policy', `the connection's policy is broken: ${compiled.message}.`);
  const inputProblem = checkCommandInput(line);
  if (inputProblem) return deny('input', inputProblem);

  const parsed = await parseCommandLine(line);
  if (!parsed.ok && parsed.kind === 'syntax') {
    return deny('parse', `the command line is ${parsed.reason}; fix it and retry.`);
  }
  const denied = findDenied(compiled, parsed.commands, parsed.redirections);
  if (denied) return denied;
  if (!parsed.ok) {
    return deny('uncertain', `the command line can't be checked with certainty: ${parsed.reason}. ${PLAIN_HINT}`);
  }
  return decideParts(compiled, parsed.commands, parsed.redirections);
}

/** Input hygiene: why `line` can't be considered at all, or null. */
export function checkCommandInput(line: string): string | null {
  const bytes = Buffer.byteLength(line, 'utf8');
  if (bytes > MAX_COMMAND_BYTES) {
    return `the command is ${bytes} bytes long; the limit is ${MAX_COMMAND_BYTES}. Send shorter commands, one step at a time.`;
  }
  const bad = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]|\p{Cs}/u.exec(line);
  if (bad) {
    return (
      `the command contains ${describeChar(bad[0])} at character ${bad.index}; commands may contain printable ` +
      'text, tabs and newlines only (control and text-direction characters can hide what really runs).'
    );
  }
  if (line.trim() === '') return 'the command is empty.';
  return null;
}

/** Advice for `check`: patterns that probably don't mean what their author thinks. */
export function policyWarnings(policy: Policy): string[] {
  const warnings: string[] = [];
  for (const list of ['allow', 'confirm'] as const) {
    (policy[list] ?? []).forEach((source, index) => {
      const problem = anchoringProblem(source);
      if (problem) warnings.push(`${list}[${index}] ${JSON.stringify(source)} ${problem}`);
    });
  }
  if (policy.allow && policy.allow.length === 0) {
    warnings.push('allow is an empty list: every command is refused (remove it to allow everything not denied).');
  }
  return warnings;
}

// ---------------------------------------------------------------------------------------------------
// File tools. The same deny / allow / confirm lists decide them, on a subject text made of the tool and the
// normalized remote path, so one regex vocabulary covers commands and files:
//
//   read_file <path>        read_file, and download_file (its remote_path)
//   write_file <path>       write_file, and upload_file (its remote_path)
//   list_directory <path>   list_directory
//
// e.g. allow `^read_file /var/log/`, deny `^(read_file|write_file) /etc/shadow$`, confirm `^write_file /etc/`.
// Order: path hygiene → read_only (refuses every write) → deny (wins) → allow (with an allow list, the subject
// must match an allow or a confirm pattern) → confirm (a human approves) → allow.
// The path is normalized before matching (absolute only, no NUL or control characters, `.`/`..`/`//`
// collapsed), so `/var/log/../../etc/shadow` is judged — and accessed — as `/etc/shadow`. Symlinks on the
// device are the caller's to resolve (the file tools judge the resolved path again before using it).

export type FileOp = 'read' | 'write' | 'list';

/** The tool name a file operation is judged as. */
export const FILE_OP_SUBJECT: Readonly<Record<FileOp, string>> = { read: 'read_file', write: 'write_file', list: 'list_directory' };

/** Longest remote path (UTF-8 bytes) the file tools accept; Linux's PATH_MAX. */
export const MAX_REMOTE_PATH_BYTES = 4096;

export type NormalizedPath = { ok: true; path: string } | { ok: false; reason: string };

/** The absolute, `..`-free form of a remote path, or why it can't be used. */
export function normalizeRemotePath(input: string): NormalizedPath {
  if (input.includes('\u0000')) return { ok: false, reason: `the path ${JSON.stringify(input)} contains a NUL byte.` };
  const bad = /[\u0001-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]|\p{Cs}/u.exec(input);
  if (bad) {
    return { ok: false, reason: `the path contains ${describeChar(bad[0])} at character ${bad.index}; paths may not contain control or text-direction characters.` };
  }
  if (!input.startsWith('/')) {
    return { ok: false, reason: `the path ${JSON.stringify(input)} is relative; give an absolute path such as /var/log/syslog (no ~ expansion).` };
  }
  if (Buffer.byteLength(input, 'utf8') > MAX_REMOTE_PATH_BYTES) {
    return { ok: false, reason: `the path is longer than ${MAX_REMOTE_PATH_BYTES} bytes.` };
  }
  let path = posix.normalize(input);
  if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
  return { ok: true, path };
}

/** What the policy lists see for a file operation: `read_file /var/log/syslog`. */
export function fileAccessSubject(op: FileOp, normalizedPath: string): string {
  return `${FILE_OP_SUBJECT[op]} ${normalizedPath}`;
}

/**
 * Decides one file operation on a remote path (normalized here first). No policy means allowed, as for
 * commands; a path that can't be normalized is refused either way. Never throws.
 */
export function evaluateFileAccess(op: FileOp, path: string, policy: Policy | CompiledPolicy | null | undefined): PolicyDecision {
  const normalized = normalizeRemotePath(path);
  if (!normalized.ok) return deny('input', normalized.reason);
  if (!policy) return { decision: 'allow' };
  const compiled = compiledFrom(policy);
  if (compiled instanceof Error) return deny('policy', `the connection's policy is broken: ${compiled.message}.`);
  const subject = fileAccessSubject(op, normalized.path);
  if (op === 'write' && compiled.readOnly) {
    return deny('read_only', `\`${shown(subject)}\` writes a file and this connection is read_only, so every write_file and upload_file is refused.`);
  }
  const denied = firstMatch(compiled.deny, subject);
  if (denied) {
    return deny(denied.label, `\`${shown(subject)}\` matches the deny rule ${denied.label}, so it is refused.${fileRulesHint(compiled, op)}`);
  }
  if (compiled.allow && !isAllowed(compiled, subject)) {
    return deny('allow (no match)', `\`${shown(subject)}\` matches no allow rule.${fileRulesHint(compiled, op)}`);
  }
  const confirm = firstMatch(compiled.confirm, subject);
  if (confirm) return { decision: 'confirm', rule: confirm.label, reason: `\`${shown(subject)}\` matches a confirm rule` };
  return { decision: 'allow' };
}

/** The rules that speak about this file tool, so a refusal says where the agent may go instead. */
function fileRulesHint(policy: CompiledPolicy, op: FileOp): string {
  if (!policy.allow) return '';
  const tool = FILE_OP_SUBJECT[op];
  const rules = [...policy.allow, ...policy.confirm].filter((r) => r.source.includes(tool));
  if (rules.length === 0) return ` No allow rule mentions ${tool}; the operator allows paths with rules like ^${tool} /var/log/.`;
  const listed = rules.slice(0, MAX_LISTED_RULES).map((r) => (r.list === 'confirm' ? `${r.source} (with approval)` : r.source));
  const more = rules.length > MAX_LISTED_RULES ? ` and ${rules.length - MAX_LISTED_RULES} more` : '';
  return ` Allowed ${tool} paths match: ${listed.join('  |  ')}${more}.`;
}

// ---------------------------------------------------------------------------------------------------

const PLAIN_HINT =
  'Write every value literally (no $VAR, ${...}, $(...), backquotes, ~, {a,b}, or globs in a command name), ' +
  'or use run_action if the operator configured an action for this.';

const compiledCache = new WeakMap<Policy, CompiledPolicy | Error>();

function compiledFrom(policy: Policy | CompiledPolicy): CompiledPolicy | Error {
  if ('compiled' in policy && policy.compiled === true) return policy;
  const raw = policy as Policy;
  let compiled = compiledCache.get(raw);
  if (!compiled) {
    try {
      compiled = compilePolicy(raw);
    } catch (error) {
      compiled = error instanceof Error ? error : new Error(String(error));
    }
    compiledCache.set(raw, compiled);
  }
  return compiled;
}

function compileList(list: CompiledRule['list'], sources: readonly string[]): CompiledRule[] {
  return sources.map((source, index) => {
    let regex: RegExp;
    try {
      // No flags: the same syntax config validation accepts with `new RegExp(pattern)`.
      regex = new RegExp(source);
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      throw new Error(`${list}[${index}] ${JSON.stringify(source)} is not a valid regular expression (${why})`);
    }
    return { list, index, source, regex, label: `${list}[${index}]: ${source}` };
  });
}

function deny(rule: string, reason: string): PolicyDecision {
  return { decision: 'deny', rule, reason };
}

function firstMatch(rules: readonly CompiledRule[], text: string): CompiledRule | undefined {
  return rules.find((rule) => rule.regex.test(text));
}

/** Deny patterns see every command and every redirection (`>/etc/passwd`), even on uncertain lines. */
function findDenied(
  policy: CompiledPolicy,
  commands: readonly SimpleCommand[],
  redirections: readonly Redirection[],
): PolicyDecision | undefined {
  const subjects = [...commands.map((c) => c.text), ...redirections.map(redirectionText)];
  for (const subject of subjects) {
    const rule = firstMatch(policy.deny, subject);
    if (rule) {
      return deny(rule.label, `\`${shown(subject)}\` matches the deny rule ${rule.label}, so the line is refused.${allowedHint(policy)}`);
    }
  }
  return undefined;
}

function decideParts(
  policy: CompiledPolicy,
  commands: readonly SimpleCommand[],
  redirections: readonly Redirection[],
): PolicyDecision {
  if (commands.length === 0) return deny('parse', 'the command line has nothing to run (only comments?).');
  const write = policy.readOnly ? redirections.find((r) => r.writes) : undefined;
  if (write) {
    return deny(
      'read_only',
      `\`${redirectionText(write)}\` writes to a file and this connection is read-only. ` +
        'Drop the redirection (the output comes back to you anyway), or redirect to /dev/null.',
    );
  }
  const traversal = policy.allow ? commands.flatMap((c) => c.argv).find(hasParentSegment) : undefined;
  if (traversal !== undefined) {
    return deny(
      'allow (no match)',
      `\`${shown(traversal)}\` climbs out of a folder with "..", which an allow pattern for that folder would still match. Write the path without "..".` +
        allowedHint(policy),
    );
  }
  const notAllowed = policy.allow ? commands.find((c) => !isAllowed(policy, c.text)) : undefined;
  if (notAllowed) return refuseNotAllowed(policy, notAllowed, commands.length);
  // A file read into stdin gets past a pattern that limits which paths a command may name (`head < /etc/shadow`).
  const unallowedRead = policy.allow ? redirections.find((r) => r.reads && !r.writes && !isAllowed(policy, redirectionText(r))) : undefined;
  if (unallowedRead) {
    return deny(
      'allow (no match)',
      `\`${redirectionText(unallowedRead)}\` reads a file, and no allow rule matches that read. ` +
        'Name the file as an argument the allow rules permit, or ask the operator to allow reading it.' +
        allowedHint(policy),
    );
  }
  // Under an allow list a file write is a part of the line like any command: it must be allowed as `>target`.
  const unallowedWrite = policy.allow ? redirections.find((r) => r.writes && !isAllowed(policy, redirectionText(r))) : undefined;
  if (unallowedWrite) {
    return deny(
      'allow (no match)',
      `\`${redirectionText(unallowedWrite)}\` writes to a file, and no allow rule matches that write. ` +
        'Drop the redirection (the output comes back to you anyway), or ask the operator to allow writing there.' +
        allowedHint(policy),
    );
  }
  return askIfConfirm(policy, commands) ?? { decision: 'allow' };
}

/** A `..` path segment: `..`, `../x`, `x/..`, `x/../y`. */
function hasParentSegment(word: string): boolean {
  return word.split('/').includes('..');
}

function isAllowed(policy: CompiledPolicy, text: string): boolean {
  return firstMatch(policy.allow ?? [], text) !== undefined || firstMatch(policy.confirm, text) !== undefined;
}

function refuseNotAllowed(policy: CompiledPolicy, command: SimpleCommand, partCount: number): PolicyDecision {
  const what = command.text === '' ? 'a redirection without a command' : `\`${shown(command.text)}\``;
  const partNote = partCount > 1 ? ' Every part of a line (each command in a list, pipeline or substitution) must be allowed.' : '';
  return deny('allow (no match)', `${what} matches no allow rule.${partNote}${allowedHint(policy)}`);
}

function askIfConfirm(policy: CompiledPolicy, commands: readonly SimpleCommand[]): PolicyDecision | undefined {
  const hits = commands
    .map((command) => ({ command, rule: firstMatch(policy.confirm, command.text) }))
    .filter((hit): hit is { command: SimpleCommand; rule: CompiledRule } => hit.rule !== undefined);
  const first = hits[0];
  if (!first) return undefined;
  const listed = hits.map((hit) => `\`${shown(hit.command.text)}\``).join(', ');
  const verb = hits.length > 1 ? 'match confirm rules' : 'matches a confirm rule';
  return { decision: 'confirm', rule: first.rule.label, reason: `${listed} ${verb}` };
}

const MAX_LISTED_RULES = 12;

function allowedHint(policy: CompiledPolicy): string {
  if (!policy.allow) return '';
  const rules = [...policy.allow, ...policy.confirm];
  if (rules.length === 0) return ' This connection allows no commands.';
  const listed = rules.slice(0, MAX_LISTED_RULES).map((r) => (r.list === 'confirm' ? `${r.source} (with approval)` : r.source));
  const more = rules.length > MAX_LISTED_RULES ? ` and ${rules.length - MAX_LISTED_RULES} more` : '';
  return ` Allowed commands match: ${listed.join('  |  ')}${more}.`;
}

function redirectionText(redirection: Redirection): string {
  return `${redirection.fd ?? ''}${redirection.op}${redirection.target}`;
}

function shown(text: string): string {
  const oneLine = text.replace(/\n/g, '\\n');
  return oneLine.length > 120 ? `${oneLine.slice(0, 117)}...` : oneLine;
}

function describeChar(ch: string): string {
  if (ch === '\u0000') return 'a NUL byte';
  const code = ch.codePointAt(0) ?? 0;
  return `the character U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** Why an allow/confirm pattern isn't fully anchored, or undefined. */
function anchoringProblem(source: string): string | undefined {
  if (!source.startsWith('^') || !endsWithAnchor(source)) {
    return 'is not anchored with ^ and $: it also matches commands that merely contain it (`ls` matches `rm -rf / --ls`). Write ^...$.';
  }
  if (hasTopLevelAlternation(source)) {
    return 'has a top-level `|`, so ^ and $ bind only to the first and last alternatives. Wrap them: ^(?:a|b)$.';
  }
  return undefined;
}

function endsWithAnchor(source: string): boolean {
  if (!source.endsWith('$')) return false;
  let backslashes = 0;
  for (let i = source.length - 2; i >= 0 && source[i] === '\\'; i -= 1) backslashes += 1;
  return backslashes % 2 === 0;
}

function hasTopLevelAlternation(source: string): boolean {
  let depth = 0;
  let inClass = false;
  for (let i = 0; i < source.length; i += 1) {
    const ch = source[i];
    if (ch === '\\') i += 1;
    else if (inClass) inClass = ch !== ']';
    else if (ch === '[') inClass = true;
    else if (ch === '(') depth += 1;
    else if (ch === ')') depth -= 1;
    else if (ch === '|' && depth === 0) return true;
  }
  return false;
}
