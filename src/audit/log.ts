// Append-only, hash-chained JSON-lines audit log.
//
// Each line is one record: { seq, ts, event, ...fields, prev, hash }.
//   seq   1, 2, 3 ... with no gaps, continued across restarts and rotated files
//   ts    ISO 8601 UTC; never goes backwards (a clock step back reuses the last ts)
//   prev  the previous record's hash; the very first record has GENESIS_HASH
//   hash  sha256 (hex) of the canonical JSON of the record without "hash"
// Editing, removing or reordering any record breaks the chain, which `audit verify` reports.

import { createHash } from 'node:crypto';
import { constants as fsConstants, writeSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { redactFields } from './redact.js';
import { WriterLock } from './lock.js';

/** `prev` of the first record ever written: 64 zeros. */
export const GENESIS_HASH = '0'.repeat(64);
export const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
export const DEFAULT_KEEP = 10;

/** Fields the log itself sets; an event may not carry them. */
export const RESERVED_FIELDS = ['seq', 'ts', 'prev', 'hash'] as const;

export type AuditEvent = { event: string; [field: string]: unknown };

export type AuditRecord = {
  seq: number;
  ts: string;
  event: string;
  prev: string;
  hash: string;
  [field: string]: unknown;
};

export interface AuditLogOptions {
  /** 'always' (default): an append resolves only once the record is on disk. */
  fsync?: 'always' | 'never';
  /** Rotate before the active file would grow beyond this many bytes. Default 64 MiB. */
  maxBytes?: number;
  /** How many rotated files (`<path>.1` ... `<path>.<keep>`) to keep. Default 10. */
  keep?: number;
}

/** An audit log problem that a person must look at: corrupt file, failed write, closed log. */
export class AuditLogError extends Error {
  constructor(
    message: string,
    readonly file: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AuditLogError';
  }
}

// ---------------------------------------------------------------------------------------------
// Record format: canonical JSON and hashing (shared with verify.ts)

/** JSON with object keys sorted (recursively), so the hash doesn't depend on key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map((item) => (isJsonOmitted(item) ? 'null' : canonicalJson(item))).join(',')}]`;
  }
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .filter((key) => !isJsonOmitted((value as Record<string, unknown>)[key]))
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function isJsonOmitted(value: unknown): boolean {
  return value === undefined || typeof value === 'function' || typeof value === 'symbol';
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The hash a record must carry: sha256 of its canonical JSON without the "hash" field. */
export function computeRecordHash(record: Record<string, unknown>): string {
  const { hash: _ignored, ...withoutHash } = record;
  return sha256Hex(canonicalJson(withoutHash));
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Checks the fields the chain relies on; returns what is wrong, or undefined if the shape is fine. */
export function describeMalformedRecord(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'not a JSON object';
  const record = value as Record<string, unknown>;
  if (!Number.isSafeInteger(record.seq) || (record.seq as number) < 1) return '"seq" is missing or not a positive integer';
  if (typeof record.ts !== 'string' || !Number.isFinite(Date.parse(record.ts))) return '"ts" is missing or not a timestamp';
  if (typeof record.event !== 'string') return '"event" is missing or not a string';
  if (typeof record.prev !== 'string' || !HEX64.test(record.prev)) return '"prev" is missing or not a sha256 hex digest';
  if (typeof record.hash !== 'string' || !HEX64.test(record.hash)) return '"hash" is missing or not a sha256 hex digest';
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Rotated files: <path>.1 is the newest rotated file, <path>.N the oldest.

export function rotatedPath(activePath: string, n: number): string {
  return `${activePath}.${n}`;
}

/** Existing rotated siblings of `activePath`, sorted by number ascending (newest first). */
export async function listRotatedFiles(activePath: string): Promise<{ n: number; path: string }[]> {
  const dir = dirname(activePath);
  const prefix = `${basename(activePath)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return [];
    throw err;
  }
  return names
    .filter((name) => name.startsWith(prefix))
    .map((name) => ({ suffix: name.slice(prefix.length), name }))
    .filter(({ suffix }) => /^[1-9][0-9]*$/.test(suffix))
    .map(({ suffix, name }) => ({ n: Number(suffix), path: join(dir, name) }))
    .sort((a, b) => a.n - b.n);
}

// ---------------------------------------------------------------------------------------------
// Reading the tail of an existing file to continue its chain

type ChainHead = { seq: number; hash: string; tsMs: number };

const GENESIS_HEAD: ChainHead = { seq: 0, hash: GENESIS_HASH, tsMs: 0 };
const TAIL_CHUNK_BYTES = 64 * 1024;

function corruptTailError(file: string, problem: string, cause?: unknown): AuditLogError {
  return new AuditLogError(
    `audit log ${file}: ${problem}. Refusing to continue its hash chain. ` +
      `Run \`mcp-ssh-gateway audit verify ${file}\` to see the damage, then move the file aside ` +
      `(keep it as evidence) so a new log can start.`,
    file,
    { cause },
  );
}

/** The last record of `file`, read from its end; undefined if the file is missing or empty. */
export async function readLastRecord(file: string): Promise<AuditRecord | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const { size } = await handle.stat();
    if (size === 0) return undefined;
    const line = await readLastLine(handle, size, file);
    return parseTailRecord(line, file);
  } finally {
    await handle.close();
  }
}

/** Reads backwards in chunks until the start of the last line: cheap even for a huge file. */
async function readLastLine(handle: FileHandle, size: number, file: string): Promise<string> {
  const lastByte = Buffer.alloc(1);
  await handle.read(lastByte, 0, 1, size - 1);
  if (lastByte[0] !== 0x0a) {
    throw corruptTailError(file, 'the last line is incomplete (no newline at the end; a write was cut short)');
  }
  const end = size - 1; // exclude the final newline
  let start = end;
  let tail = Buffer.alloc(0);
  while (start > 0) {
    const chunkStart = Math.max(0, start - TAIL_CHUNK_BYTES);
    const chunk = Buffer.alloc(start - chunkStart);
    await handle.read(chunk, 0, chunk.length, chunkStart);
    tail = Buffer.concat([chunk, tail]);
    start = chunkStart;
    const newline = tail.lastIndexOf(0x0a);
    if (newline !== -1) return tail.subarray(newline + 1).toString('utf8');
  }
  return tail.toString('utf8');
}

function parseTailRecord(line: string, file: string): AuditRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (err) {
    throw corruptTailError(file, 'the last line is not valid JSON', err);
  }
  const malformed = describeMalformedRecord(parsed);
  if (malformed) throw corruptTailError(file, `the last line is not an audit record (${malformed})`);
  const record = parsed as AuditRecord;
  if (JSON.stringify(record) !== line) {
    throw corruptTailError(file, `the last line (seq ${record.seq}) is not exactly the record it parses to (a duplicate key or changed spacing: it was edited)`);
  }
  if (computeRecordHash(record) !== record.hash) {
    throw corruptTailError(file, `the last record (seq ${record.seq}) does not match its hash (it was edited)`);
  }
  return record;
}

function headOf(record: AuditRecord | undefined): ChainHead {
  return record ? { seq: record.seq, hash: record.hash, tsMs: Date.parse(record.ts) } : GENESIS_HEAD;
}

// ---------------------------------------------------------------------------------------------
// Building a record

type BuiltRecord = { record: AuditRecord; line: Buffer; head: ChainHead };

function buildRecord(fields: Record<string, unknown>, eventName: string, previous: ChainHead): BuiltRecord {
  const tsMs = Math.max(Date.now(), previous.tsMs); // ts must never go backwards, even if the clock does
  const body = { seq: previous.seq + 1, ts: new Date(tsMs).toISOString(), event: eventName, ...fields, prev: previous.hash };
  const hash = sha256Hex(canonicalJson(body));
  const record: AuditRecord = { ...body, hash };
  return { record, line: Buffer.from(`${JSON.stringify(record)}\n`, 'utf8'), head: { seq: record.seq, hash, tsMs } };
}

/** Validates and redacts an event at append time, so later mutation by the caller can't change it. */
function prepareEvent(event: AuditEvent): { eventName: string; fields: Record<string, unknown> } {
  if (event === null || typeof event !== 'object' || typeof event.event !== 'string' || event.event === '') {
    throw new TypeError('audit event needs a non-empty string "event" field');
  }
  const reserved = RESERVED_FIELDS.find((field) => Object.hasOwn(event, field));
  if (reserved) {
    throw new TypeError(`audit event "${event.event}" may not set "${reserved}": the log assigns it`);
  }
  const { event: eventName, ...fields } = redactFields(event);
  return { eventName, fields };
}

// ---------------------------------------------------------------------------------------------
// The log

type Waiter = {
  eventName: string;
  fields: Record<string, unknown>;
  /** fsync before resolving (with fsync 'always'); otherwise resolve once written to the OS. */
  durable: boolean;
  resolve: (record: AuditRecord) => void;
  reject: (err: unknown) => void;
};

// Group commit: records queued while a write is in flight go out together in one write + fsync.
const MAX_BATCH_RECORDS = 1024;
const MAX_BATCH_BYTES = 1024 * 1024;

export class AuditLog {
  private readonly queue: Waiter[] = [];
  private draining = false;
  private idle: Promise<void> = Promise.resolve();
  private closed = false;
  /** Set when the file may no longer end on a record boundary; every later append fails with it. */
  private failure: AuditLogError | undefined;
  /** Records written but not yet fsynced (only non-durable appends leave this set). */
  private unsynced = false;

  private constructor(
    readonly path: string,
    private readonly fsync: 'always' | 'never',
    private readonly maxBytes: number,
    private readonly keep: number,
    private handle: FileHandle,
    private size: number,
    private head: ChainHead,
    private readonly lock: WriterLock,
  ) {}

  static async open(path: string, opts: AuditLogOptions = {}): Promise<AuditLog> {
    const { fsync = 'always', maxBytes = DEFAULT_MAX_BYTES, keep = DEFAULT_KEEP } = opts;
    if (!(Number.isSafeInteger(maxBytes) && maxBytes > 0)) throw new RangeError(`audit maxBytes must be a positive integer, got ${maxBytes}`);
    if (!(Number.isSafeInteger(keep) && keep >= 1)) throw new RangeError(`audit keep must be an integer >= 1, got ${keep}`);

    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    // Before the chain head is read: another writer could move it on after that.
    const lock = WriterLock.acquire(path);
    let handle: FileHandle | undefined;
    try {
      // An empty or missing active file right after a rotation continues the chain of <path>.1.
      const last = (await readLastRecord(path)) ?? (await readLastRecord(rotatedPath(path, 1)));
      handle = await openActiveFile(path);
      const { size } = await handle.stat();
      if (fsync === 'always') await syncDirectory(dirname(path));
      return new AuditLog(path, fsync, maxBytes, keep, handle, size, headOf(last), lock);
    } catch (err) {
      await handle?.close();
      lock.release();
      throw err;
    }
  }

  /** seq and hash of the last record written (seq 0 and GENESIS_HASH before the first). */
  get lastRecord(): { seq: number; hash: string } {
    return { seq: this.head.seq, hash: this.head.hash };
  }

  /**
   * Redacts the event, chains it and writes it as one line. Resolves with the record once it is
   * written (and fsynced with fsync 'always'); rejects if it could not be written.
   */
  append(event: AuditEvent, options: { durable?: boolean } = {}): Promise<AuditRecord> {
    if (this.closed) return Promise.reject(new AuditLogError(`audit log ${this.path} is closed`, this.path));
    let prepared: ReturnType<typeof prepareEvent>;
    try {
      prepared = prepareEvent(event);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<AuditRecord>((resolve, reject) => {
      this.queue.push({ ...prepared, durable: options.durable !== false, resolve, reject });
      this.startDraining();
    });
  }

  /**
   * Makes every record appended so far durable (fsync 'always'). Pairs with `append(e, { durable: false })`:
   * such a record reaches the OS before the caller acts (so it survives a gateway crash) and reaches the disk
   * by the next durable append or sync — in the gateway, before the tool's result is returned.
   */
  async sync(): Promise<void> {
    while (this.draining) await this.idle;
    if (this.fsync === 'never' || !this.unsynced) return;
    if (this.failure) throw this.failure;
    this.unsynced = false;
    try {
      await this.handle.datasync();
    } catch (err) {
      this.failure = this.writeError('could not fsync', err);
      throw this.failure;
    }
  }

  /** Waits for queued appends, then closes the file. Later appends reject. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.draining) await this.idle;
    await this.sync().catch(() => undefined);
    await this.handle.close().finally(() => this.lock.release());
  }

  private startDraining(): void {
    if (this.draining) return;
    this.draining = true;
    this.idle = this.drainQueue();
  }

  // The single writer: batches are written strictly one after another, so records never interleave.
  private async drainQueue(): Promise<void> {
    try {
      while (this.queue.length > 0) await this.commitNextBatch();
    } finally {
      this.draining = false;
    }
  }

  private async commitNextBatch(): Promise<void> {
    if (this.failure) return this.rejectAll(this.queue.splice(0), this.failure);
    const batch = await this.takeBatch();
    if (batch.waiters.length === 0) return;
    try {
      await this.writeDurably(Buffer.concat(batch.lines), batch.records[0]!.seq, batch.waiters.some((w) => w.durable));
    } catch (err) {
      return this.rejectAll(batch.waiters, err);
    }
    this.head = batch.head;
    batch.waiters.forEach((waiter, i) => waiter.resolve(batch.records[i]!));
  }

  /** Builds records for queued events up to a size limit, rotating first when the file is full. */
  private async takeBatch() {
    const batch = { waiters: [] as Waiter[], records: [] as AuditRecord[], lines: [] as Buffer[], head: this.head, bytes: 0 };
    while (this.queue.length > 0 && batch.waiters.length < MAX_BATCH_RECORDS && batch.bytes < MAX_BATCH_BYTES) {
      const next = this.queue[0]!;
      const built = buildRecord(next.fields, next.eventName, batch.head);
      if (this.wouldOverflow(batch.bytes + built.line.length)) {
        if (batch.waiters.length > 0) break; // write what we have; the rest goes to the next file
        try {
          await this.rotate();
        } catch (err) {
          this.queue.shift();
          next.reject(err);
          if (this.failure) break;
          continue;
        }
      }
      this.queue.shift();
      batch.waiters.push(next);
      batch.records.push(built.record);
      batch.lines.push(built.line);
      batch.head = built.head;
      batch.bytes += built.line.length;
    }
    return batch;
  }

  private wouldOverflow(extraBytes: number): boolean {
    // An empty file always takes at least one record, however large, so a huge record can't loop.
    return this.size > 0 && this.size + extraBytes > this.maxBytes;
  }

  private async writeDurably(data: Buffer, firstSeq: number, durable: boolean): Promise<void> {
    const sizeBefore = this.size;
    try {
      await writeAll(this.handle, data);
    } catch (err) {
      await this.rollBackPartialWrite(sizeBefore, err);
      throw this.writeError(`could not write record seq ${firstSeq}`, err);
    }
    this.size += data.length;
    if (this.fsync === 'never') return;
    if (!durable) {
      this.unsynced = true;
      return;
    }
    this.unsynced = false;
    try {
      await this.handle.datasync();
    } catch (err) {
      // After a failed fsync the kernel may have dropped the data: nothing after it can be trusted.
      this.failure = this.writeError(`could not fsync record seq ${firstSeq}; the log is stopped`, err);
      throw this.failure;
    }
  }

  /** Cuts off a half-written line so the file still ends on a record; if that fails, stop the log. */
  private async rollBackPartialWrite(sizeBefore: number, writeErr: unknown): Promise<void> {
    try {
      await this.handle.truncate(sizeBefore);
    } catch (err) {
      this.failure = this.writeError(
        `a write failed (${describeError(writeErr)}) and the partial record could not be removed; the log is stopped`,
        err,
      );
    }
  }

  private writeError(what: string, err: unknown): AuditLogError {
    return new AuditLogError(
      `audit log ${this.path}: ${what}: ${describeError(err)}. The event was NOT recorded; ` +
        `check free disk space and permissions.`,
      this.path,
      { cause: err },
    );
  }

  private rejectAll(waiters: Waiter[], err: unknown): void {
    for (const waiter of waiters) waiter.reject(err);
  }

  /** <path>.k -> <path>.(k+1), dropping beyond `keep`; <path> -> <path>.1; a fresh <path>. */
  private async rotate(): Promise<void> {
    try {
      // Records written without fsync must be on disk before their file is rotated away.
      if (this.unsynced && this.fsync === 'always') {
        await this.handle.datasync();
        this.unsynced = false;
      }
      await this.shiftRotatedFiles();
      await rename(this.path, rotatedPath(this.path, 1));
    } catch (err) {
      // The active file is still in place and intact: this append fails (so the caller knows),
      // and the next one tries to rotate again.
      throw this.writeError('could not rotate the log', err);
    }
    try {
      const fresh = await openActiveFile(this.path);
      const old = this.handle;
      this.handle = fresh;
      this.size = 0;
      await old.close();
      if (this.fsync === 'always') await syncDirectory(dirname(this.path));
    } catch (err) {
      this.failure = this.writeError('could not start a new file after rotation; the log is stopped', err);
      throw this.failure;
    }
  }

  private async shiftRotatedFiles(): Promise<void> {
    const rotated = await listRotatedFiles(this.path);
    for (const { n, path } of rotated.reverse()) {
      // Removes everything numbered >= keep (not just .keep) so a lowered `keep` leaves no stale files.
      if (n >= this.keep) await rm(path, { force: true });
      else await rename(path, rotatedPath(this.path, n + 1));
    }
  }
}

async function openActiveFile(path: string): Promise<FileHandle> {
  // O_APPEND: every write lands at the end even if someone else appended; 0600: only the gateway user reads it.
  return open(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND, 0o600);
}

/**
 * A synchronous write: a batch of audit lines is a few hundred bytes to a local file, which costs the event loop
 * microseconds, while an async write costs a thread-pool round trip (~0.5 ms) on every command. fsync stays async.
 */
async function writeAll(handle: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) offset += writeSync(handle.fd, data, offset, data.length - offset);
}

/** fsync on the directory makes a file creation or rename durable; not every filesystem allows it. */
async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (err) {
    if (!['EISDIR', 'EINVAL', 'ENOTSUP', 'EPERM', 'EBADF', 'EACCES'].includes(errorCode(err) ?? '')) throw err;
  } finally {
    await handle?.close();
  }
}

export function errorCode(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

function describeError(err: unknown): string {
  const code = errorCode(err);
  const message = err instanceof Error ? err.message : String(err);
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}
