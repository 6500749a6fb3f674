// Checks an audit log's hash chain across its rotated files, and reads records back for history.
//
// What the chain proves: no record was edited, removed, inserted or reordered between the first
// and the last record present. What it cannot prove on its own: that nothing was cut off before
// the first record (the oldest rotated files are dropped by design; see `firstSeq`) or after the
// last one, nor that someone with write access did not rewrite the whole chain (the hashes are not keyed).
// Both are caught by an anchor: the head (seq and hash) noted somewhere else earlier, checked with `anchor`.

import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import {
  GENESIS_HASH,
  computeRecordHash,
  describeMalformedRecord,
  errorCode,
  listRotatedFiles,
  type AuditRecord,
} from './log.js';

export type VerifyResult =
  | { ok: true; records: number; files: number; firstSeq?: number; lastSeq?: number; lastHash?: string }
  | { ok: false; file: string; line: number; seq?: number; reason: string };

type VerifyFailure = Extract<VerifyResult, { ok: false }>;

/** `<path>.N ... <path>.1, <path>`: the log's files that exist, oldest first. */
export async function auditFilesOldestFirst(activePath: string): Promise<string[]> {
  const rotated = (await listRotatedFiles(activePath)).reverse().map(({ path }) => path);
  return (await fileExists(activePath)) ? [...rotated, activePath] : rotated;
}

/**
 * Verifies every record of the given files, in order (oldest first). With a single path, that
 * path is taken as the active file and its rotated siblings are checked before it.
 * Returns the first problem found.
 */
export async function verifyAuditFiles(paths: string[], options: { anchor?: ChainAnchor } = {}): Promise<VerifyResult> {
  const [only] = paths;
  const files = paths.length === 1 && only !== undefined ? await auditFilesOldestFirst(only) : [...paths];
  if (files.length === 0) {
    return { ok: false, file: only ?? '', line: 0, reason: `no audit log found at ${only ?? '(no path given)'}` };
  }
  const missingRotated = paths.length === 1 && only !== undefined ? await findMissingRotated(only) : new Map();
  const lines = readLines(files);
  try {
    const verdict = await checkChain(lines, files.length, missingRotated, options.anchor);
    if (!verdict.ok) return verdict;
    const { anchoredHash, ...result } = verdict;
    return options.anchor ? checkAnchor(result, anchoredHash, options.anchor, files) : result;
  } catch (err) {
    const file = (err as { path?: string }).path ?? files[0]!;
    return { ok: false, file, line: 0, reason: `cannot read ${file}: ${err instanceof Error ? err.message : String(err)}` };
  } finally {
    await lines.return(undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading lines across files

type AuditLine = { file: string; line: number; text: string; complete: boolean; bytes?: Buffer };
type LineReader = AsyncGenerator<AuditLine, void, undefined>;

/** Lines of each file in turn; a last line without "\n" comes out with complete: false. */
async function* readLines(files: string[]): LineReader {
  for (const file of files) {
    let lineNumber = 0;
    let rest: Buffer = Buffer.alloc(0);
    for await (const chunk of createReadStream(file)) {
      const buffer: Buffer = rest.length > 0 ? Buffer.concat([rest, chunk as Buffer]) : (chunk as Buffer);
      let start = 0;
      for (let newline = buffer.indexOf(0x0a); newline !== -1; newline = buffer.indexOf(0x0a, start)) {
        const bytes = buffer.subarray(start, newline);
        yield { file, line: ++lineNumber, text: bytes.toString('utf8'), complete: true, bytes };
        start = newline + 1;
      }
      rest = buffer.subarray(start);
    }
    if (rest.length > 0) yield { file, line: ++lineNumber, text: rest.toString('utf8'), complete: false };
  }
}

/** The parsed record on `line`, or undefined if the line is not one. */
function parseRecord(line: AuditLine): AuditRecord | undefined {
  try {
    const parsed: unknown = JSON.parse(line.text);
    return describeMalformedRecord(parsed) === undefined ? (parsed as AuditRecord) : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The chain check

type Link = { seq: number; hash: string; ts: string; tsMs: number; file: string; line: number };

/** A chain head noted elsewhere earlier (`audit verify` and a stopping gateway print it). */
export type ChainAnchor = { seq: number; hash: string };

type ChainVerdict = Extract<VerifyResult, { ok: true }> & { anchoredHash?: string };

async function checkChain(
  lines: LineReader,
  fileCount: number,
  missingRotated: Map<string, string[]>,
  anchor?: ChainAnchor,
): Promise<ChainVerdict | VerifyFailure> {
  let previous: Link | undefined;
  let firstSeq: number | undefined;
  let anchoredHash: string | undefined;
  let records = 0;
  for (let next = await lines.next(); !next.done; next = await lines.next()) {
    const line = next.value;
    const parsed = parseLine(line);
    if ('reason' in parsed) return parsed;
    const record = parsed.record;
    const failure = await checkRecord(record, line, previous, lines, missingRotated);
    if (failure) return failure;
    firstSeq ??= record.seq;
    if (record.seq === anchor?.seq) anchoredHash = record.hash;
    previous = { seq: record.seq, hash: record.hash, ts: record.ts, tsMs: Date.parse(record.ts), file: line.file, line: line.line };
    records += 1;
  }
  return { ok: true, records, files: fileCount, firstSeq, lastSeq: previous?.seq, lastHash: previous?.hash, anchoredHash };
}

/** An intact chain must still hold the anchored record unchanged: otherwise its end was cut or it was rewritten. */
function checkAnchor(result: VerifyResult & { ok: true }, anchoredHash: string | undefined, anchor: ChainAnchor, files: string[]): VerifyResult {
  const file = files.at(-1)!;
  const fail = (reason: string): VerifyFailure => ({ ok: false, file, line: 0, seq: anchor.seq, reason });
  if (anchoredHash === anchor.hash) return result;
  if (anchoredHash !== undefined) {
    return fail(`record seq ${anchor.seq} has hash ${anchoredHash}, but the anchor says ${anchor.hash}: the chain was rewritten at or before seq ${anchor.seq}`);
  }
  if (result.lastSeq === undefined || anchor.seq > result.lastSeq) {
    return fail(`the log ends at seq ${result.lastSeq ?? 0}, but the anchor names seq ${anchor.seq}: records were cut from the end`);
  }
  return fail(`seq ${anchor.seq} is older than the oldest record kept (seq ${result.firstSeq}); this anchor can't be checked against these files`);
}

function parseLine(line: AuditLine): { record: AuditRecord } | VerifyFailure {
  const at = `line ${line.line} of ${basename(line.file)}`;
  const fail = (reason: string): VerifyFailure => ({ ok: false, file: line.file, line: line.line, reason });
  if (!line.complete) return fail(`${at} is cut short (no newline at the end) — the file was truncated or a write was interrupted`);
  if (line.text.trim() === '') return fail(`${at} is empty — the file was edited`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(line.text);
  } catch {
    return fail(`${at} is not valid JSON — the record is corrupt or was edited`);
  }
  const malformed = describeMalformedRecord(parsed);
  if (malformed) return fail(`${at} is not an audit record: ${malformed} — the record is corrupt or was edited`);
  if (line.bytes && !isExactSerialization(parsed, line.bytes)) {
    return fail(
      `${at} (seq ${(parsed as AuditRecord).seq}) is not byte for byte the record it parses to (a duplicate key, changed spacing ` +
        `or escaping): the line was edited, and what it shows (e.g. to grep) may differ from what its hash covers`,
    );
  }
  return { record: parsed as AuditRecord };
}

/**
 * The writer writes each record as JSON.stringify of it, so a genuine line is exactly that serialization of what
 * it parses to. JSON.parse keeps the last of two equal keys: `"command":"rm -rf /",` planted before the real one
 * leaves the parsed record and its hash unchanged, but not this. (Key order is the line's own: moving a key
 * changes neither what the line shows nor what it means.)
 */
function isExactSerialization(parsed: unknown, bytes: Buffer): boolean {
  return Buffer.from(JSON.stringify(parsed), 'utf8').equals(bytes);
}

/** Runs the checks in an order that names the most likely tampering first. */
async function checkRecord(
  record: AuditRecord,
  line: AuditLine,
  previous: Link | undefined,
  rest: LineReader,
  missingRotated: Map<string, string[]>,
): Promise<VerifyFailure | undefined> {
  const where = `record seq ${record.seq} (line ${line.line} of ${basename(line.file)})`;
  const fail = (problem: string): VerifyFailure => ({ ok: false, file: line.file, line: line.line, seq: record.seq, reason: `${where}: ${problem}` });

  const computed = computeRecordHash(record);
  if (computed !== record.hash) return fail(`hash mismatch — ${await explainHashMismatch(computed, rest)}`);

  if (previous === undefined) return checkChainStart(record, fail);

  const removedFile = line.line === 1 ? missingRotatedNote(missingRotated.get(line.file)) : '';
  const expected = previous.seq + 1;
  if (record.seq > expected) return fail(await explainSeqJump(previous.seq, record.seq, rest) + removedFile);
  if (record.seq < expected) return fail(`seq goes back from ${previous.seq} to ${record.seq} — records were reordered or duplicated`);

  if (record.prev !== previous.hash) {
    return fail(
      `"prev" does not match the hash of record seq ${previous.seq} (line ${previous.line} of ${basename(previous.file)}) — ` +
        `that record was rewritten and re-hashed, or records from another log were put in its place${removedFile}`,
    );
  }
  if (Date.parse(record.ts) < previous.tsMs) {
    return fail(`timestamp ${record.ts} is earlier than that of record seq ${previous.seq} (${previous.ts}) — records were reordered or rewritten`);
  }
  return undefined;
}

/** The first record present: seq 1 must start from the genesis hash; a later seq means older files were rotated away. */
function checkChainStart(record: AuditRecord, fail: (problem: string) => VerifyFailure): VerifyFailure | undefined {
  if (record.seq === 1 && record.prev !== GENESIS_HASH) return fail(`the first record does not start from the genesis hash — the start of the log was replaced`);
  if (record.seq > 1 && record.prev === GENESIS_HASH) return fail(`starts a new chain (prev is the genesis hash) in the middle of the log — the log was rewritten`);
  return undefined;
}

/** If the next record links to the recomputed hash, only the "hash" field was altered. */
async function explainHashMismatch(computed: string, rest: LineReader): Promise<string> {
  const next = await nextRecord(rest);
  if (next?.prev === computed) return 'its "hash" field was changed after it was written';
  return 'the record was edited after it was written';
}

/** Tells a removal from a reordering by looking for the expected seq further on. */
async function explainSeqJump(previousSeq: number, seq: number, rest: LineReader): Promise<string> {
  const expected = previousSeq + 1;
  const later = await findLaterSeq(rest, expected);
  if (later) {
    return `out of order — record seq ${expected} should come here but appears later (line ${later.line} of ${basename(later.file)}); records were reordered`;
  }
  const missing = expected === seq - 1 ? `record seq ${expected} was removed` : `records seq ${expected}–${seq - 1} were removed`;
  return `seq jumps from ${previousSeq} to ${seq} — ${missing}`;
}

async function nextRecord(rest: LineReader): Promise<AuditRecord | undefined> {
  const next = await rest.next();
  return next.done ? undefined : parseRecord(next.value);
}

async function findLaterSeq(rest: LineReader, seq: number): Promise<AuditLine | undefined> {
  for (let next = await rest.next(); !next.done; next = await rest.next()) {
    if (parseRecord(next.value)?.seq === seq) return next.value;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Rotated-file numbering gaps, named in the reason when the chain breaks at such a gap

/** For each rotated file, the rotated files missing just before it (older side), e.g. .1 -> [.2]. */
async function findMissingRotated(activePath: string): Promise<Map<string, string[]>> {
  const rotated = await listRotatedFiles(activePath);
  const gaps = new Map<string, string[]>();
  const numbers = [0, ...rotated.map(({ n }) => n)]; // 0 stands for the active file
  const paths = [activePath, ...rotated.map(({ path }) => path)];
  for (let i = 0; i + 1 < numbers.length; i += 1) {
    const missing: string[] = [];
    for (let n = numbers[i]! + 1; n < numbers[i + 1]!; n += 1) missing.push(`${basename(activePath)}.${n}`);
    if (missing.length > 0) gaps.set(paths[i]!, missing);
  }
  return gaps;
}

function missingRotatedNote(missing: string[] | undefined): string {
  if (!missing || missing.length === 0) return '';
  return `; rotated file ${missing.join(', ')} is missing (a rotated file was removed)`;
}

// ---------------------------------------------------------------------------------------------
// History

export interface AuditHistoryFilter {
  /** Only records about this connection (`connection` field, or listed in `connections`). */
  connection?: string;
  /** Only these event names. */
  events?: string[];
  /** Only the N most recent matching records. */
  limit?: number;
}

/**
 * Matching records, oldest first (newest last), read from the active file and its rotated files.
 * Lines that are not valid records are skipped: this is for reading, `verifyAuditFiles` is for checking.
 */
export async function readAuditRecords(path: string, filter: AuditHistoryFilter = {}): Promise<AuditRecord[]> {
  const limit = filter.limit ?? Number.POSITIVE_INFINITY;
  if (!(limit >= 0)) throw new RangeError(`history limit must be >= 0, got ${filter.limit}`);
  let result: AuditRecord[] = [];
  const newestFirst = (await auditFilesOldestFirst(path)).reverse();
  for (const file of newestFirst) {
    if (result.length >= limit) break;
    result = (await readMatching(file, filter, limit - result.length)).concat(result);
  }
  return result;
}

/**
 * The last `room` matching records of one file, oldest first. Read from the end, so the usual question (the
 * last few events) costs a few chunks, not a parse of the whole file (64 MiB by default) on the event loop.
 */
async function readMatching(file: string, filter: AuditHistoryFilter, room: number): Promise<AuditRecord[]> {
  const newestFirst: AuditRecord[] = [];
  // A record about the connection names it as a JSON string: lines without it need no parsing.
  const mention = filter.connection === undefined ? undefined : JSON.stringify(filter.connection);
  try {
    for await (const text of readLinesBackward(file)) {
      if (newestFirst.length >= room) break;
      if (mention !== undefined && !text.includes(mention)) continue;
      const record = parseRecord({ file, line: 0, text, complete: true });
      if (record && matchesFilter(record, filter)) newestFirst.push(record);
    }
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw err; // rotated away while we listed: nothing to read
  }
  return newestFirst.reverse();
}

const BACKWARD_CHUNK_BYTES = 64 * 1024;

/** The lines of one file, last first, read in chunks from its end. */
async function* readLinesBackward(file: string): AsyncGenerator<string, void, undefined> {
  const handle = await open(file, 'r');
  try {
    let position = (await handle.stat()).size;
    let carry: Buffer = Buffer.alloc(0); // a line whose start lies in the part not read yet
    while (position > 0) {
      const size = Math.min(BACKWARD_CHUNK_BYTES, position);
      position -= size;
      const chunk = Buffer.alloc(size);
      await handle.read(chunk, 0, size, position);
      const buffer = carry.length > 0 ? Buffer.concat([chunk, carry]) : chunk;
      let end = buffer.length;
      while (end > 0) {
        const newline = buffer.lastIndexOf(0x0a, end - 1);
        if (newline === -1) break;
        if (newline + 1 < end) yield buffer.toString('utf8', newline + 1, end);
        end = newline;
      }
      carry = buffer.subarray(0, end);
    }
    if (carry.length > 0) yield carry.toString('utf8');
  } finally {
    await handle.close();
  }
}

function matchesFilter(record: AuditRecord, filter: AuditHistoryFilter): boolean {
  if (filter.events && !filter.events.includes(record.event)) return false;
  if (filter.connection === undefined) return true;
  return record.connection === filter.connection || (Array.isArray(record.connections) && record.connections.includes(filter.connection));
}

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return false;
    throw err;
  }
}
