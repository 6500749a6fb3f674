// Defense in depth: whatever a caller puts into an audit event, no key, token, password, file
// content, command output or environment value reaches the log. Callers should not pass such
// things in the first place; this catches the ones they forget.
//
// What ran and what was touched (command, path, params, ...) is evidence and is never rewritten by text
// patterns: a pattern that matched `token=` or a PEM header in a comment hid the rest of the command. Those
// fields lose only what their own names say is secret (a `password` param) and, past 64 KiB, their tail
// (kept as size + sha256).

import { createHash } from 'node:crypto';
import type { AuditEvent } from './log.js';

export const REDACTED = '[redacted]';

const MAX_DEPTH = 16;

/** Field names whose value is a secret (matched on the lower-cased name without `_`/`-`). */
const SECRET_NAME_PARTS = [
  'password', 'passwd', 'passphrase', 'secret', 'token', 'privatekey', 'authorization',
  'apikey', 'accesskey', 'cookie', 'credential', 'bearer',
];
/** Command output: recorded as byte count + sha256 only. */
const OUTPUT_NAME_PARTS = ['stdout', 'stderr'];
const OUTPUT_NAMES = ['output'];
/** Input and file data: recorded as a byte count only (a digest of a short typed secret could be brute-forced). */
const CONTENT_NAME_PARTS = ['content'];
const CONTENT_NAMES = ['stdin', 'body', 'data'];
/** Environment: variable names are kept, values are not. */
const ENV_NAMES = ['env', 'environment', 'envvars'];

/** What ran or what was touched: kept byte for byte (see the top of this file). */
const VERBATIM_NAMES = [
  'command', 'commands', 'path', 'paths', 'remotepath', 'localpath', 'resolved', 'real', 'realpath', 'cwd', 'file',
  'files', 'dir', 'directory', 'params', 'action', 'source', 'destination', 'target', 'from', 'to',
];

type Mode = 'text' | 'verbatim' | 'output' | 'content';

/** A copy of `event` that is safe to write to the audit log and is plain JSON data. */
export function redactFields(event: AuditEvent): AuditEvent {
  const { event: eventName, ...fields } = event;
  const redacted = redactObject(fields, 'text', new WeakSet(), 0);
  return { event: typeof eventName === 'string' ? redactText(eventName) : String(eventName), ...redacted };
}

function normalizedName(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, '');
}

function fieldMode(name: string, inherited: Mode): Mode | 'secret' | 'env' {
  const key = normalizedName(name);
  if (SECRET_NAME_PARTS.some((part) => key.includes(part))) return 'secret';
  if (ENV_NAMES.includes(key)) return 'env';
  if (OUTPUT_NAMES.includes(key) || OUTPUT_NAME_PARTS.some((part) => key.includes(part))) return 'output';
  if (CONTENT_NAMES.includes(key) || CONTENT_NAME_PARTS.some((part) => key.includes(part))) return 'content';
  if (VERBATIM_NAMES.includes(key)) return 'verbatim';
  return inherited;
}

function redactField(name: string, value: unknown, inherited: Mode, seen: WeakSet<object>, depth: number): unknown {
  const mode = fieldMode(name, inherited);
  if (mode === 'secret') return typeof value === 'boolean' || value === null ? value : REDACTED; // a flag leaks nothing
  if (mode === 'env') return envNamesOnly(value);
  return redactValue(value, mode, seen, depth);
}

function redactValue(value: unknown, mode: Mode, seen: WeakSet<object>, depth: number): unknown {
  if (typeof value === 'string') return redactString(value, mode);
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'boolean' || value === null) return value;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object') return undefined; // undefined, functions, symbols: not JSON, dropped
  if (value instanceof Uint8Array) return mode === 'output' ? digest(value) : { bytes: value.byteLength };
  if (depth >= MAX_DEPTH) return '[too deep]';
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  try {
    return redactComposite(value, mode, seen, depth);
  } finally {
    seen.delete(value);
  }
}

function redactComposite(value: object, mode: Mode, seen: WeakSet<object>, depth: number): unknown {
  if (Array.isArray(value)) return value.map((item) => redactValue(item, mode, seen, depth + 1) ?? null);
  if (value instanceof Error) return redactErrorValue(value, mode, seen, depth);
  if (value instanceof Map) return redactObject(Object.fromEntries(value), mode, seen, depth + 1);
  if (value instanceof Set) return redactValue([...value], mode, seen, depth + 1);
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return redactValue(toJSON.call(value), mode, seen, depth + 1); // Date, URL, ...
  return redactObject(value as Record<string, unknown>, mode, seen, depth + 1);
}

function redactObject(value: Record<string, unknown>, mode: Mode, seen: WeakSet<object>, depth: number): Record<string, unknown> {
  const entries: [string, unknown][] = [];
  for (const [name, item] of Object.entries(value)) {
    const redacted = redactField(name, item, mode, seen, depth);
    if (redacted !== undefined) entries.push([name, redacted]);
  }
  return Object.fromEntries(entries); // fromEntries, not `obj[name] =`, so "__proto__" stays a plain field
}

function redactErrorValue(err: Error, mode: Mode, seen: WeakSet<object>, depth: number): unknown {
  const code = (err as { code?: unknown }).code;
  return redactObject({ name: err.name, message: err.message, ...(code === undefined ? {} : { code }) }, mode, seen, depth + 1);
}

function redactString(value: string, mode: Mode): unknown {
  if (mode === 'output') return HEX64.test(value) ? value : digest(Buffer.from(value, 'utf8'));
  if (mode === 'content') return HEX64.test(value) ? value : { bytes: Buffer.byteLength(value, 'utf8') };
  // Longer than any command the gateway runs: keep the start, and prove the rest by its digest.
  const rewrite = mode === 'verbatim' ? (text: string) => text : redactText;
  return abbreviate(value, MAX_TEXT_CHARS, rewrite);
}

/**
 * The first `keepChars` characters of `value` (passed through `rewrite`), then its size and sha256, which prove
 * what the whole was. `value` itself when it is no longer than that.
 */
export function abbreviate(value: string, keepChars: number, rewrite: (text: string) => string = (text) => text): string {
  if (value.length <= keepChars) return rewrite(value);
  const { bytes, sha256 } = digest(Buffer.from(value, 'utf8'));
  return `${rewrite(value.slice(0, keepChars))}… [${bytes} bytes in all, sha256 ${sha256}]`;
}

/** Free text kept in full up to this length (the longest command line is 64 KiB). */
const MAX_TEXT_CHARS = 64 * 1024;

const HEX64 = /^[0-9a-f]{64}$/; // an existing sha256 digest, e.g. in a { bytes, sha256 } summary

function digest(data: Uint8Array): { bytes: number; sha256: string } {
  return { bytes: data.byteLength, sha256: createHash('sha256').update(data).digest('hex') };
}

/** `env` keeps only variable names: from an object's keys or from `NAME=value` strings. */
function envNamesOnly(value: unknown): unknown {
  if (value === null || value === undefined) return undefined;
  if (Array.isArray(value)) return value.map((item) => (typeof item === 'string' ? envName(item) : REDACTED));
  if (typeof value === 'object') return Object.keys(value).sort().map(redactText);
  return REDACTED;
}

function envName(assignment: string): string {
  const name = assignment.split('=', 1)[0] ?? '';
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : REDACTED;
}

// ---------------------------------------------------------------------------------------------
// Secrets inside free text (command lines, error messages, ...)

/** A whole string holding a private key is dropped: no partial key material may remain. */
const PRIVATE_KEY_MARKERS = [/-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----/, /PuTTY-User-Key-File-\d/];

/**
 * A whole name (a run of name characters, matched from its start only) is taken first and tested for a secret
 * word afterwards. Searching for the word inside the pattern made the engine backtrack through long words (a 64
 * KiB base64 blob in a command line) and the scan quadratic.
 */
const NAME = '(?<![A-Za-z0-9_.-])([A-Za-z0-9_.-]+)';
const SECRET_WORD = /password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential/i;

/** Replaces the value after a name only when the name holds a secret word. */
function ifSecretName(match: string, name: string, separator: string): string {
  return SECRET_WORD.test(name) ? `${name}${separator}${REDACTED}` : match;
}

const TEXT_REPLACEMENTS: [RegExp, string | ((match: string, ...groups: string[]) => string)][] = [
  // Authorization: Bearer xxx / Basic xxx
  [/\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]{6,}/gi, `$1$2${REDACTED}`],
  // scheme://user:password@host
  // (the scheme starts only where a run of scheme characters starts: \b inside "a.a.a..." made this quadratic)
  [/((?<![a-z0-9+.-])[a-z][a-z0-9+.-]*:\/\/[^\s:@/]*:)[^\s@/]+@/gi, `$1${REDACTED}@`],
  // PASSWORD=x, api_key: "x", "token": "x"
  [new RegExp(`${NAME}(["']?\\s*[=:]\\s*)(?:"[^"]*"|'[^']*'|[^\\s"'&;|,]+)`, 'g'), (match, name, separator) => ifSecretName(match, name!, separator!)],
  // --password x, --token=x (the = form is covered above)
  [new RegExp(`(?<![A-Za-z0-9_.-])--([A-Za-z0-9_.-]+)(\\s+)(?:"[^"]*"|'[^']*'|[^\\s"'&;|]+)`, 'g'), (match, name, space) => (SECRET_WORD.test(name!) ? `--${name}${space}${REDACTED}` : match)],
  // Well-known token formats
  [/\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g, REDACTED], // JWT
  [/\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})/g, REDACTED],
  [/\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g, REDACTED],
  [/\bxox[abposr]-[A-Za-z0-9-]{10,}/g, REDACTED],
  [/\bsk-[A-Za-z0-9_-]{20,}/g, REDACTED],
  [/\bAIza[0-9A-Za-z_-]{35}/g, REDACTED],
];

/** Removes key material and token-looking substrings from free text. */
export function redactText(text: string): string {
  if (PRIVATE_KEY_MARKERS.some((marker) => marker.test(text))) return REDACTED;
  return TEXT_REPLACEMENTS.reduce(
    (current, [pattern, replacement]) => (typeof replacement === 'string' ? current.replace(pattern, replacement) : current.replace(pattern, replacement)),
    text,
  );
}
