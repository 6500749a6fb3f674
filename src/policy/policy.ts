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
import type { ActionPath } from './actions.js';
import { optionArgumentProblem } from './regex-lint.js';
import { describeStructuredRule, matchStructuredRule, structuredRuleWarnings, type RuleSubject, type StructuredRule } from './rules.js';

/** A regex source (matched against the canonical text), or a structured rule (argv with typed slots, rules.ts). */
export type PolicyRule = string | StructuredRule;

export interface Policy {
  /** With an allow list every simple command must match one of these (or a confirm rule). */
  allow?: PolicyRule[];
  /** A simple command (or redirection) matching any of these is refused. */
  deny?: PolicyRule[];
  /** A simple command matching any of these needs a human's approval. */
  confirm?: PolicyRule[];
  /** Refuse redirections that write files (write_file/upload_file are refused by their tools). */
  read_only?: boolean;
}

export interface CompiledRule {
  readonly list: 'allow' | 'deny' | 'confirm';
  readonly index: number;
  /** The regex source, or how a structured rule reads (`tail -n <integer from 1 to 500> <absolute path under /var/log>`). */
  readonly source: string;
  readonly regex?: RegExp;
  readonly structured?: StructuredRule;
  /** How decisions and audit records name the rule: `deny[0]: \brm\b`. */
  readonly label: string;
}

/** What a rule is matched against: the canonical text (regexes) and the words (structured rules). */
export interface PolicySubject extends RuleSubject {
  readonly text: string;
}

export interface CompiledPolicy {
  readonly compiled: true;
  /** null: no allow list (anything not denied may run). An empty list allows nothing. */
  readonly allow: readonly CompiledRule[] | null;
  readonly deny: readonly CompiledRule[];
  readonly confirm: readonly CompiledRule[];
  readonly readOnly: boolean;
}

/**
 * `paths`, when present: path slots of the structured rules that admitted the line. The caller must have the device
 * resolve each (symlinks followed) and refuse the line if one leaves its roots, before asking anyone or running it.
 */
export type PolicyDecision =
  | { decision: 'allow'; paths?: ActionPath[] }
  | { decision: 'confirm'; rule: string; reason: string; paths?: ActionPath[] }
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
    (policy[list] ?? []).forEach((rule, index) => {
      if (typeof rule !== 'string') {
        for (const problem of structuredRuleWarnings(rule)) warnings.push(`${list}[${index}] ${describeStructuredRule(rule)}: ${problem}`);
        return;
      }
      for (const problem of [anchoringProblem(rule), optionArgumentProblem(rule)]) {
        if (problem) warnings.push(`${list}[${index}] ${JSON.stringify(rule)} ${problem}`);
      }
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
  const text = fileAccessSubject(op, normalized.path);
  const subject: PolicySubject = { text, words: [plainWord(FILE_OP_SUBJECT[op]), plainWord(normalized.path)], assignments: [] };
  if (op === 'write' && compiled.readOnly) {
    return deny('read_only', `\`${shown(text)}\` writes a file and this connection is read_only, so every write_file and upload_file is refused.`);
  }
  const denied = firstMatch(compiled.deny, subject);
  if (denied) {
    return deny(denied.rule.label, `\`${shown(text)}\` matches the deny rule ${denied.rule.label}, so it is refused.${fileRulesHint(compiled, op)}`);
  }
  if (compiled.allow && !allowedBy(compiled, subject)) {
    return deny('allow (no match)', `\`${shown(text)}\` matches no allow rule.${fileRulesHint(compiled, op)}`);
  }
  // Path slots need no device check here: the file tools judge the resolved path again (authorizeResolvedFile).
  const confirm = firstMatch(compiled.confirm, subject);
  if (confirm) return { decision: 'confirm', rule: confirm.rule.label, reason: `\`${shown(text)}\` matches a confirm rule` };
  return { decision: 'allow' };
}

function plainWord(value: string): PolicySubject['words'][number] {
  return { value, glob: false };
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

function compileList(list: CompiledRule['list'], rules: readonly PolicyRule[]): CompiledRule[] {
  return rules.map((source, index) => {
    if (typeof source !== 'string') {
      const described = describeStructuredRule(source);
      return { list, index, source: described, structured: source, label: `${list}[${index}]: ${described}` };
    }
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

interface RuleMatch {
  rule: CompiledRule;
  /** Path slots the device must confirm (structured rules only). */
  paths: ActionPath[];
}

function matchRule(rule: CompiledRule, subject: PolicySubject): RuleMatch | undefined {
  if (rule.structured) {
    const match = matchStructuredRule(rule.structured, subject);
    return match.matched ? { rule, paths: match.paths } : undefined;
  }
  return rule.regex!.test(subject.text) ? { rule, paths: [] } : undefined;
}

function firstMatch(rules: readonly CompiledRule[], subject: PolicySubject): RuleMatch | undefined {
  for (const rule of rules) {
    const match = matchRule(rule, subject);
    if (match) return match;
  }
  return undefined;
}

/** Deny rules see every command and every redirection (`>/etc/passwd`), even on uncertain lines. */
function findDenied(
  policy: CompiledPolicy,
  commands: readonly SimpleCommand[],
  redirections: readonly Redirection[],
): PolicyDecision | undefined {
  for (const subject of [...commands, ...redirections.map(redirectionSubject)]) {
    const match = firstMatch(policy.deny, subject);
    if (match) {
      const label = match.rule.label;
      return deny(label, `\`${shown(subject.text)}\` matches the deny rule ${label}, so the line is refused.${allowedHint(policy)}`);
    }
  }
  return undefined;
}

function redirectionSubject(redirection: Redirection): PolicySubject {
  return { text: redirection.text, words: redirection.words, assignments: [] };
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
      `\`${write.text}\` writes to a file and this connection is read-only. ` +
        'Drop the redirection (the output comes back to you anyway), or redirect to /dev/null.',
    );
  }
  if (!policy.allow) return askIfConfirm(policy, commands, []) ?? { decision: 'allow' };

  const traversal = findTraversal(commands, redirections);
  if (traversal !== undefined) {
    return deny(
      'allow (no match)',
      `\`${shown(traversal)}\` climbs out of a folder with "..", which a rule for that folder would still match. Write the path without "..".` +
        allowedHint(policy),
    );
  }
  const paths: ActionPath[] = [];
  for (const command of commands) {
    const match = allowedBy(policy, command);
    if (!match) return refuseNotAllowed(policy, command, commands.length);
    paths.push(...match.paths);
  }
  for (const redirection of redirections.filter((r) => r.reads || r.writes)) {
    const match = allowedBy(policy, redirectionSubject(redirection));
    if (!match) return refuseRedirection(policy, redirection);
    paths.push(...match.paths);
  }
  return askIfConfirm(policy, commands, paths) ?? (paths.length > 0 ? { decision: 'allow', paths } : { decision: 'allow' });
}

/**
 * Under an allow list every file a redirection opens is a part of the line like any command: a file read into stdin
 * gets past a rule that limits which paths a command may name (`head < /etc/shadow`), and a write must be allowed as
 * `>target`.
 */
function refuseRedirection(policy: CompiledPolicy, redirection: Redirection): PolicyDecision {
  const what = redirection.writes
    ? `writes to a file, and no allow rule matches that write. Drop the redirection (the output comes back to you anyway), or ask the operator to allow writing there.`
    : `reads a file, and no allow rule matches that read. Name the file as an argument the allow rules permit, or ask the operator to allow reading it.`;
  return deny('allow (no match)', `\`${shown(redirection.text)}\` ${what}${allowedHint(policy)}`);
}

const HERE_DOCUMENT_OPS = new Set(['<<', '<<-', '<<<']);

/**
 * The first word that climbs with `..`, wherever a path can stand: an argument, an assignment's value, a
 * redirection's target (`cat </var/log/../../etc/shadow` would pass a rule for `</var/log/`).
 */
function findTraversal(commands: readonly SimpleCommand[], redirections: readonly Redirection[]): string | undefined {
  for (const command of commands) {
    const found = command.argv.find(hasParentSegment) ?? command.assignments.find((a) => hasParentSegment(a.slice(a.indexOf('=') + 1)));
    if (found !== undefined) return found;
  }
  return redirections.find((r) => !HERE_DOCUMENT_OPS.has(r.op) && hasParentSegment(r.target))?.text;
}

/** A `..` path segment: `..`, `../x`, `x/..`, `x/../y`, also after `=` or `:` (`if=../x`, `a:..`), or `../` anywhere (`-f../x`). */
function hasParentSegment(word: string): boolean {
  return word.includes('../') || /(?:^|[/=:])\.\.(?:$|[/:])/.test(word);
}

function allowedBy(policy: CompiledPolicy, subject: PolicySubject): RuleMatch | undefined {
  return firstMatch(policy.allow ?? [], subject) ?? firstMatch(policy.confirm, subject);
}

function refuseNotAllowed(policy: CompiledPolicy, command: SimpleCommand, partCount: number): PolicyDecision {
  const what = command.text === '' ? 'a redirection without a command' : `\`${shown(command.text)}\``;
  const partNote = partCount > 1 ? ' Every part of a line (each command in a list, pipeline or substitution) must be allowed.' : '';
  return deny('allow (no match)', `${what} matches no allow rule.${partNote}${allowedHint(policy)}`);
}

function askIfConfirm(policy: CompiledPolicy, commands: readonly SimpleCommand[], paths: ActionPath[]): PolicyDecision | undefined {
  const hits = commands
    .map((command) => ({ command, match: firstMatch(policy.confirm, command) }))
    .filter((hit): hit is { command: SimpleCommand; match: RuleMatch } => hit.match !== undefined);
  const first = hits[0];
  if (!first) return undefined;
  const listed = hits.map((hit) => `\`${shown(hit.command.text)}\``).join(', ');
  const verb = hits.length > 1 ? 'match confirm rules' : 'matches a confirm rule';
  const decision = { decision: 'confirm' as const, rule: first.match.rule.label, reason: `${listed} ${verb}` };
  const allPaths = uniquePaths([...paths, ...hits.flatMap((hit) => hit.match.paths)]);
  return allPaths.length > 0 ? { ...decision, paths: allPaths } : decision;
}

function uniquePaths(paths: ActionPath[]): ActionPath[] {
  const seen = new Map(paths.map((p) => [JSON.stringify([p.value, p.roots]), p]));
  return [...seen.values()];
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
