// SFTP mechanics for the file tools, promise-wrapped over ssh2's client `sftp()`: ranged reads, atomic writes
// (temp file in the same folder, fsync, posix-rename), bounded directory listings, and verified transfers
// (fastPut/fastGet, then sha256 on both sides). No policy and no MCP here: callers pass paths already judged.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link as linkLocal, mkdir, open as openLocal, rename as renameLocal, rm, stat as statLocal, type FileHandle as LocalFileHandle } from 'node:fs/promises';
import { posix } from 'node:path';
import type { FileEntryWithStats, OpenMode, SFTPWrapper, Stats, TransferOptions } from 'ssh2';
import type { Client } from './ssh2.js';
import { ConnectionLostError, execCommand } from './exec.js';
import { shellQuote } from '../util/shell.js';
import { GatewayError } from '../errors.js';
import { deviceText } from '../util/text.js';
import { utf8SafeEnd } from './output.js';

export type Sftp = SFTPWrapper;
export type SftpStats = Stats;

/** SFTP status codes (draft-ietf-secsh-filexfer-02) that ssh2 puts on its errors as `code`. */
const NO_SUCH_FILE = 2;
const PERMISSION_DENIED = 3;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

/** How long a transfer may go without moving a byte before it is given up. */
const TRANSFER_STALL_MS = 60_000;

/** A failure the agent can act on: the path and, when the device said, why. */
export function sftpError(err: unknown, what: string, connection: string): GatewayError {
  if (err instanceof GatewayError) return err;
  const code = (err as { code?: unknown }).code;
  const message = deviceText(err); // the device's sftp-server chose most of these words
  if (code === NO_SUCH_FILE) return new GatewayError('bad_input', `${what} on "${connection}": no such file or directory. Check the path (list_directory shows what is there).`);
  if (code === PERMISSION_DENIED) {
    return new GatewayError('bad_input', `${what} on "${connection}": permission denied for the login user. Use a path that user may access, or ask the operator.`);
  }
  if (err instanceof ConnectionLostError || /No response from server|Not connected|closed|ECONNRESET/i.test(message)) {
    return new GatewayError('connection_lost', `${what} on "${connection}": the SSH connection or SFTP session ended (${message}). Check the device with list_connections, then retry.`);
  }
  return new GatewayError('connect_failed', `${what} on "${connection}" failed: ${message}.`);
}

function call<T>(fn: (cb: (err: Error | undefined | null, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    try {
      fn((err, value) => (err ? reject(err) : resolve(value)));
    } catch (err) {
      reject(err as Error);
    }
  });
}

/** Opens an SFTP session (the device's `sftp` subsystem) on a connected client. */
export function openSftp(client: Client): Promise<Sftp> {
  return call<Sftp>((cb) => client.sftp(cb));
}

/**
 * Runs `work` on its own SFTP session and always ends it. An abort (the MCP request was cancelled) ends the
 * session at once, which fails whatever is in flight.
 */
export async function withSftp<T>(client: Client, work: (sftp: Sftp) => Promise<T>, signal?: AbortSignal): Promise<T> {
  if (signal?.aborted) throw new GatewayError('bad_input', 'the request was cancelled before the transfer started; nothing was changed.');
  const sftp = await openSftp(client);
  const onAbort = (): void => sftp.end();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await work(sftp);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    sftp.end();
  }
}

export const stat = (sftp: Sftp, path: string): Promise<Stats> => call<Stats>((cb) => sftp.stat(path, cb));
export const lstat = (sftp: Sftp, path: string): Promise<Stats> => call<Stats>((cb) => sftp.lstat(path, cb));

/** stat (following symlinks), or null when nothing is there. */
export async function statOrNull(sftp: Sftp, path: string): Promise<Stats | null> {
  try {
    return await stat(sftp, path);
  } catch (err) {
    if ((err as { code?: unknown }).code === NO_SUCH_FILE) return null;
    throw err;
  }
}

export const unlink = (sftp: Sftp, path: string): Promise<void> => call<void>((cb) => sftp.unlink(path, (err) => cb(err, undefined)));

async function unlinkQuietly(sftp: Sftp, path: string): Promise<void> {
  await unlink(sftp, path).catch(() => undefined);
}

export function fileType(mode: number): 'file' | 'directory' | 'symlink' | 'other' {
  const type = mode & S_IFMT;
  return type === S_IFREG ? 'file' : type === S_IFDIR ? 'directory' : type === S_IFLNK ? 'symlink' : 'other';
}

/** `0644`-style permission bits (with setuid/setgid/sticky). */
export function modeString(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/**
 * Where `path` really is on the device, symlinks resolved by the device (SFTP realpath). A last component that
 * doesn't exist (a file about to be written) is kept as is; missing folders above it likewise.
 */
export async function resolveRealPath(sftp: Sftp, path: string): Promise<string> {
  const tail: string[] = [];
  let current = path;
  for (;;) {
    try {
      const real = await call<string>((cb) => sftp.realpath(current, cb));
      return tail.length === 0 ? real : posix.join(real, ...tail);
    } catch (err) {
      if ((err as { code?: unknown }).code !== NO_SUCH_FILE || current === '/') throw err;
      tail.unshift(posix.basename(current));
      current = posix.dirname(current);
    }
  }
}

/** Whether the server speaks an OpenSSH extension (ssh2 throws synchronously when it does not). */
function extension<T>(run: (cb: (err: Error | undefined | null, value: T) => void) => void): Promise<{ supported: boolean; value?: T }> {
  return new Promise((resolve, reject) => {
    try {
      run((err, value) => (err ? reject(err) : resolve({ supported: true, value })));
    } catch (err) {
      if (/does not support/i.test((err as Error).message)) resolve({ supported: false });
      else reject(err as Error);
    }
  });
}

/** fsync@openssh.com on an open handle; false when the server lacks it. */
async function fsyncHandle(sftp: Sftp, handle: Buffer): Promise<boolean> {
  return (await extension<unknown>((cb) => sftp.ext_openssh_fsync(handle, cb))).supported;
}

/**
 * Moves `from` over `to` atomically with posix-rename@openssh.com. Without it a plain SFTP rename is used, but
 * only when nothing was at `to` (OpenSSH's plain rename refuses to overwrite), so no target is ever half-replaced.
 */
export async function renameIntoPlace(sftp: Sftp, from: string, to: string, targetExisted: boolean): Promise<void> {
  const posixRename = await extension<void>((cb) => sftp.ext_openssh_rename(from, to, (err) => cb(err, undefined)));
  if (posixRename.supported) return;
  if (targetExisted) {
    throw new GatewayError('connect_failed', `the device's SFTP server has no posix-rename extension, so ${to} cannot be replaced atomically; nothing was changed. Write to a new path instead.`);
  }
  await call<void>((cb) => sftp.rename(from, to, (err) => cb(err, undefined)));
}

/** The longest file name most filesystems take (NAME_MAX), in bytes. */
const NAME_MAX_BYTES = 255;
const TEMP_NAME_EXTRA_BYTES = '..mcpgw-000000000000.tmp'.length;

/**
 * `.NAME.mcpgw-<random>.tmp` beside `path`: same folder, same filesystem, so the final rename is atomic. A long
 * NAME is shortened (at a character boundary) so the temp name still fits in NAME_MAX.
 */
export function tempPathFor(path: string): string {
  let base = Buffer.from(posix.basename(path));
  const room = NAME_MAX_BYTES - TEMP_NAME_EXTRA_BYTES;
  if (base.length > room) base = base.subarray(0, utf8SafeEnd(base.subarray(0, room)));
  return posix.join(posix.dirname(path), `.${base.toString()}.mcpgw-${randomBytes(6).toString('hex')}.tmp`);
}

function openHandle(sftp: Sftp, path: string, flags: OpenMode, mode?: number): Promise<Buffer> {
  return call<Buffer>((cb) => (mode === undefined ? sftp.open(path, flags, cb) : sftp.open(path, flags, { mode }, cb)));
}

function closeHandle(sftp: Sftp, handle: Buffer): Promise<void> {
  return call<void>((cb) => sftp.close(handle, (err) => cb(err, undefined)));
}

// ---------------------------------------------------------------------------------------------------
// Reading

export interface RangeRead {
  data: Buffer;
  /** The file's size as the device reports it, or the bytes seen when that is larger (/proc files report 0). */
  size: number;
  /** More bytes follow the returned range. */
  more: boolean;
}

/** Reads up to `length` bytes at `offset`. Refuses folders, FIFOs and sockets (a FIFO would block the session). */
export async function readRange(sftp: Sftp, path: string, offset: number, length: number): Promise<RangeRead> {
  const info = await stat(sftp, path);
  if (info.isDirectory()) throw new GatewayError('bad_input', `${path} is a directory; use list_directory to see what is in it.`);
  if (info.isFIFO() || info.isSocket()) throw new GatewayError('bad_input', `${path} is a ${info.isFIFO() ? 'FIFO' : 'socket'}, not a file; it can't be read with read_file.`);
  const handle = await openHandle(sftp, path, 'r');
  try {
    // One byte beyond the range tells whether more follows, also for files whose reported size is 0 (/proc).
    const expected = info.isFile() && info.size > 0 ? Math.min(length, Math.max(0, info.size - offset)) : length;
    const want = expected + 1;
    const buffer = Buffer.alloc(want);
    let got = 0;
    while (got < want) {
      const n = await call<number>((cb) => sftp.read(handle, buffer, got, want - got, offset + got, (err, bytes) => cb(err, bytes)));
      if (n === 0) break;
      got += n;
    }
    const more = got > expected;
    const data = Buffer.from(buffer.subarray(0, Math.min(got, expected)));
    return { data, size: Math.max(info.size, offset + data.length), more };
  } finally {
    await closeHandle(sftp, handle).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------------
// Listing

export interface RemoteDirEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  size: number;
  mode: string;
  mtime: string;
}

/** Names in one listing, in bytes: 10,000 entries of NAME_MAX would be 2.5 MiB. */
const MAX_LISTED_NAME_BYTES = 4 * 1024 * 1024;

/** The entries of a folder (symlinks shown as symlinks), sorted by name, at most `limit` of them. */
export async function listDirectory(sftp: Sftp, path: string, limit: number): Promise<{ entries: RemoteDirEntry[]; truncated: boolean }> {
  const info = await stat(sftp, path);
  if (!info.isDirectory()) throw new GatewayError('bad_input', `${path} is not a directory; use read_file to read it.`);
  const handle = await call<Buffer>((cb) => sftp.opendir(path, cb));
  const entries: RemoteDirEntry[] = [];
  let truncated = false;
  let namesBytes = 0;
  try {
    for (;;) {
      let batch: FileEntryWithStats[];
      try {
        batch = await call<FileEntryWithStats[]>((cb) => sftp.readdir(handle, cb));
      } catch (err) {
        if ((err as { code?: unknown }).code === 1 /* EOF */) break;
        throw err;
      }
      if (!batch || batch.length === 0) break;
      for (const { filename, attrs } of batch) {
        if (filename === '.' || filename === '..') continue;
        namesBytes += Buffer.byteLength(filename);
        // A real folder can't hold a name over NAME_MAX; a hostile SFTP server could send gigabytes of them.
        if (entries.length >= limit || namesBytes > MAX_LISTED_NAME_BYTES) {
          truncated = true;
          break;
        }
        entries.push({
          name: filename,
          type: fileType(attrs.mode),
          size: attrs.size,
          mode: modeString(attrs.mode),
          mtime: new Date(attrs.mtime * 1000).toISOString(),
        });
      }
      if (truncated) break;
    }
  } finally {
    await closeHandle(sftp, handle).catch(() => undefined);
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { entries, truncated };
}

// ---------------------------------------------------------------------------------------------------
// Writing

export interface AtomicWriteOptions {
  /** Permission bits (no setuid/setgid/sticky); default: the existing file's permission bits, else 0644. */
  mode?: number;
  /** Create missing parent folders (0755). */
  createDirs?: boolean;
}

export interface AtomicWriteResult {
  mode: number;
  replaced: boolean;
  fsynced: boolean;
}

/** The bits a written file may carry: read, write and execute for owner, group and others. */
const PERMISSION_BITS = 0o777;
/** setuid, setgid, sticky: never on a file these tools write, whatever the file they replace carried. */
const SPECIAL_BITS = 0o7000;

/**
 * The final mode of a written file: the mode asked for, else the replaced file's permission bits, else
 * `fallback`, always without setuid/setgid/sticky. A setuid root program replaced by the agent's content must
 * not stay one. An explicit mode with those bits is refused (the tools' schemas refuse it first).
 */
export function finalMode(requested: number | undefined, existing: Stats | null, fallback: number): number {
  if (requested !== undefined && (requested & ~PERMISSION_BITS) !== 0) {
    throw new GatewayError('bad_input', `mode ${modeString(requested)} has setuid, setgid or sticky bits (4000, 2000, 1000), which are not allowed; use a mode such as "0755". Nothing was written.`);
  }
  return (requested ?? (existing ? existing.mode : fallback)) & PERMISSION_BITS;
}

/** What is at `path` before it is replaced: refuses folders and special files, which a rename would clobber. */
async function replaceableTarget(sftp: Sftp, path: string): Promise<Stats | null> {
  const existing = await statOrNull(sftp, path);
  if (existing?.isDirectory()) throw new GatewayError('bad_input', `${path} is a directory; give the path of a file.`);
  if (existing && !existing.isFile()) {
    throw new GatewayError('bad_input', `${path} is not a regular file (a device, FIFO or socket); replacing it atomically would swap it for a plain file. Use run_command for device files.`);
  }
  return existing;
}

/** The target's folder exists (or is created, 0755, with `createDirs`); `hint` says how to get it created. */
async function ensureParent(sftp: Sftp, path: string, createDirs: boolean, hint: string): Promise<void> {
  const parent = posix.dirname(path);
  const info = await statOrNull(sftp, parent);
  if (info?.isDirectory()) return;
  if (info) throw new GatewayError('bad_input', `${parent} is not a directory.`);
  if (!createDirs) throw new GatewayError('bad_input', `the folder ${parent} does not exist; ${hint}.`);
  await ensureParent(sftp, parent, true, hint);
  await call<void>((cb) => sftp.mkdir(parent, { mode: 0o755 }, (err) => cb(err, undefined))).catch(async (err: unknown) => {
    if (!(await statOrNull(sftp, parent))?.isDirectory()) throw err; // lost a race to another writer: fine
  });
}

const fstatHandle = (sftp: Sftp, handle: Buffer): Promise<Stats> => call<Stats>((cb) => sftp.fstat(handle, cb));

/** Gives the new file the old one's owner where the login may do that (root); best effort otherwise. */
async function keepOwner(sftp: Sftp, handle: Buffer, existing: Stats | null): Promise<void> {
  if (!existing) return;
  const now = await fstatHandle(sftp, handle).catch(() => null);
  if (!now || (now.uid === existing.uid && now.gid === existing.gid)) return;
  await call<void>((cb) => sftp.fchown(handle, existing.uid, existing.gid, (err) => cb(err, undefined))).catch(() => undefined);
}

/**
 * A temp file beside the target, created exclusively (a planted file or symlink fails it) with mode 0600: a
 * fresh inode that carries no setuid/setgid bit, and no one else may read or run it while it is written.
 */
function createTemp(sftp: Sftp, temp: string): Promise<Buffer> {
  return openHandle(sftp, temp, 'wx', 0o600);
}

/**
 * Settles a fully written temp file before it is renamed into place: owner first (chown may clear or keep mode
 * bits depending on the system), then `mode`, then a check through fstat that no setuid/setgid/sticky bit is
 * there, then fsync. Returns whether fsync was done.
 */
async function settleTemp(sftp: Sftp, handle: Buffer, path: string, existing: Stats | null, mode: number): Promise<boolean> {
  await keepOwner(sftp, handle, existing);
  await call<void>((cb) => sftp.fchmod(handle, mode, (err) => cb(err, undefined)));
  const settled = await fstatHandle(sftp, handle);
  if ((settled.mode & SPECIAL_BITS) !== 0) {
    throw new GatewayError('connect_failed', `the new copy of ${path} came out with mode ${modeString(settled.mode)} (setuid, setgid or sticky) although ${modeString(mode)} was set; it was removed and ${path} left as it was.`);
  }
  return fsyncHandle(sftp, handle);
}

/**
 * Writes `data` to `path` so that readers see the old file or the new one, never a mix: a temp file beside it
 * (see createTemp), every byte written, the owner and final mode (see finalMode, settleTemp), fsync, then
 * posix-rename over the target. Any failure removes the temp file.
 */
export async function writeFileAtomic(sftp: Sftp, path: string, data: Buffer, options: AtomicWriteOptions = {}): Promise<AtomicWriteResult> {
  await ensureParent(sftp, path, options.createDirs === true, 'pass create_dirs: true to create it');
  const existing = await replaceableTarget(sftp, path);
  const mode = finalMode(options.mode, existing, 0o644);
  const temp = tempPathFor(path);
  let handle: Buffer | undefined;
  try {
    handle = await createTemp(sftp, temp);
    let written = 0;
    while (written < data.length) {
      const chunk = Math.min(data.length - written, 256 * 1024);
      const h = handle;
      await call<void>((cb) => sftp.write(h, data, written, chunk, written, (err) => cb(err, undefined)));
      written += chunk;
    }
    const fsynced = await settleTemp(sftp, handle, path, existing, mode);
    const closing = handle;
    handle = undefined;
    await closeHandle(sftp, closing);
    await renameIntoPlace(sftp, temp, path, existing !== null);
    return { mode, replaced: existing !== null, fsynced };
  } catch (err) {
    if (handle) await closeHandle(sftp, handle).catch(() => undefined);
    await unlinkQuietly(sftp, temp);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------
// Transfers

export interface TransferProgress {
  (done: number, total: number): void;
}

export interface TransferOutcome {
  bytes: number;
  sha256: string;
  verified: 'sha256' | 'size';
  duration_ms: number;
  /** The target existed before and was replaced. */
  replaced: boolean;
}

/** sha256 of a local file, streamed. */
export async function sha256OfLocalFile(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/**
 * The device's own sha256 of `path` (`sha256sum -- PATH`, a gateway-internal exec on the same connection), or
 * null when the device has no sha256sum.
 */
export async function remoteSha256(client: Client, path: string, timeoutMs: number): Promise<string | null> {
  const result = await execCommand(client, { command: `sha256sum -- ${shellQuote(path)}`, timeoutMs, maxOutputBytes: 8192 });
  const found = /^\\?([0-9a-f]{64})\s/.exec(result.stdout.text);
  if (result.exit_code === 0 && found) return found[1];
  if (result.exit_code === 127 || /not found/i.test(result.stderr.text)) return null;
  const why = result.timed_out ? `it took longer than ${Math.round(timeoutMs / 1000)} s` : `exit ${result.exit_code}: ${result.stderr.text.trim().slice(0, 300)}`;
  throw new GatewayError('connect_failed', `could not verify ${path} on the device: sha256sum failed (${why}).`);
}

/**
 * A watchdog for a transfer: one that moves no byte for a minute (e.g. a file truncated while it is read) is
 * ended (its SFTP session too) instead of spinning forever. `moved()` on every byte moved; `stop()` when done.
 */
function watchStall(sftp: Sftp, from: string, fail: (err: GatewayError) => void): { moved(): void; stop(): void } {
  let lastMove = Date.now();
  const watchdog = setInterval(() => {
    if (Date.now() - lastMove > TRANSFER_STALL_MS) {
      clearInterval(watchdog);
      fail(new GatewayError('timeout', `the transfer of ${from} stalled: no data moved for ${TRANSFER_STALL_MS / 1000} s (did the file shrink while it was read?). Nothing was kept; retry.`));
      sftp.end();
    }
  }, 1000);
  watchdog.unref();
  return { moved: () => (lastMove = Date.now()), stop: () => clearInterval(watchdog) };
}

/** ssh2's fastGet with progress and the stall watchdog. */
function fastGet(sftp: Sftp, from: string, to: string, onProgress?: TransferProgress): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let done = 0;
    const stall = watchStall(sftp, from, reject);
    const opts: TransferOptions = {
      step: (total, nb, size) => {
        if (nb > 0) stall.moved();
        done = total;
        onProgress?.(total, size);
      },
    };
    const finished = (err?: Error | null): void => {
      stall.stop();
      if (err) reject(err);
      else resolve(done);
    };
    try {
      sftp.fastGet(from, to, opts, finished);
    } catch (err) {
      finished(err as Error);
    }
  });
}

/** Bytes per SFTP write request, and how many may be in flight at once (as ssh2's fastPut does). */
const PUT_CHUNK = 32 * 1024;
const PUT_WINDOW = 64;

/**
 * Sends everything `source` holds, read by position from byte 0 of that one descriptor, to the open remote
 * `handle`, with up to PUT_WINDOW writes in flight; hashes exactly the bytes it sends, so the caller can prove
 * they are the bytes that were approved. `total` is the expected size, for progress.
 */
async function streamToHandle(
  sftp: Sftp,
  handle: Buffer,
  source: LocalFileHandle,
  total: number,
  onProgress: TransferProgress | undefined,
  stall: { moved(): void },
): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  const inFlight = new Set<Promise<void>>();
  let failure: Error | undefined;
  let offset = 0;
  let acked = 0;
  while (failure === undefined) {
    const buffer = Buffer.allocUnsafe(PUT_CHUNK);
    const { bytesRead } = await source.read(buffer, 0, PUT_CHUNK, offset);
    if (bytesRead === 0) break;
    const data = buffer.subarray(0, bytesRead);
    hash.update(data);
    const at = offset;
    offset += bytesRead;
    const write = call<void>((cb) => sftp.write(handle, data, 0, data.length, at, (err) => cb(err, undefined))).then(
      () => {
        acked += data.length;
        stall.moved();
        onProgress?.(acked, Math.max(total, acked));
      },
      (err: Error) => {
        failure ??= err;
      },
    );
    inFlight.add(write);
    void write.finally(() => inFlight.delete(write));
    if (inFlight.size >= PUT_WINDOW) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failure !== undefined) throw failure;
  return { bytes: offset, sha256: hash.digest('hex') };
}

/** The staged file to send, opened once and judged by its size and sha256 (see src/files/pinned.ts). */
export interface UploadSource {
  /** Its real path in the staging folder, for messages. */
  path: string;
  handle: LocalFileHandle;
  /** What was judged (and shown to a human, if one was asked): exactly these bytes are uploaded, or nothing. */
  bytes: number;
  sha256: string;
  /** Permission bits for a file the upload creates. */
  mode: number;
}

export interface UploadRequest {
  source: UploadSource;
  /** The device path to create or replace (already judged, symlinks resolved). */
  remotePath: string;
  signal?: AbortSignal;
  onProgress?: TransferProgress;
  verifyTimeoutMs: number;
  /** Label for errors. */
  connection: string;
}

/**
 * Uploads to a temp name beside the target (see createTemp), streamed from the source's one descriptor and
 * hashed on the way; settles owner and mode (see finalMode: never setuid/setgid), fsyncs, and renames it into
 * place only when the bytes sent and the device's sha256 of the temp file (or its size, without sha256sum)
 * both equal the approved size and sha256. A mismatch or any failure removes the temp file, the target stays.
 * The SFTP session is closed while sha256sum runs, so a transfer never holds two of the device's sessions.
 */
export async function uploadVerified(client: Client, request: UploadRequest): Promise<TransferOutcome> {
  const started = performance.now();
  const { source, remotePath, connection } = request;
  const approved = { bytes: source.bytes, sha256: source.sha256 };
  const temp = tempPathFor(remotePath);
  let uploaded = false;
  try {
    const existing = await withSftp(
      client,
      async (sftp) => {
        await ensureParent(sftp, remotePath, false, 'create it first (write_file with create_dirs: true can)');
        const existing = await replaceableTarget(sftp, remotePath);
        const mode = finalMode(undefined, existing, source.mode);
        const handle = await createTemp(sftp, temp);
        uploaded = true;
        try {
          let stalled: (err: GatewayError) => void = () => undefined;
          const stall = watchStall(sftp, source.path, (err) => stalled(err));
          try {
            const sent = await Promise.race([
              streamToHandle(sftp, handle, source.handle, approved.bytes, request.onProgress, stall),
              new Promise<never>((_, reject) => (stalled = reject)),
            ]);
            if (sent.bytes !== approved.bytes || sent.sha256 !== approved.sha256) throw changedSinceApproval(sent);
          } finally {
            stall.stop();
          }
          await settleTemp(sftp, handle, remotePath, existing, mode);
        } finally {
          await closeHandle(sftp, handle).catch(() => undefined);
        }
        return existing;
      },
      request.signal,
    );
    const remote = await remoteSha256(client, temp, request.verifyTimeoutMs);
    return await withSftp(
      client,
      async (sftp) => {
        let verified: TransferOutcome['verified'] = 'sha256';
        if (remote === null) {
          verified = 'size';
          const size = (await stat(sftp, temp)).size;
          if (size !== approved.bytes) throw mismatch('size', `${approved.bytes} bytes approved and sent, ${size} on the device`);
        } else if (remote !== approved.sha256) {
          throw mismatch('sha256', `approved and sent ${approved.sha256}, device ${remote}`);
        }
        await renameIntoPlace(sftp, temp, remotePath, existing !== null);
        uploaded = false;
        return { ...approved, verified, duration_ms: Math.round(performance.now() - started), replaced: existing !== null };
      },
      request.signal,
    );
  } catch (err) {
    if (uploaded) await withSftp(client, (sftp) => unlinkQuietly(sftp, temp)).catch(() => undefined);
    throw err;
  }

  function changedSinceApproval(sent: { bytes: number; sha256: string }): GatewayError {
    return new GatewayError(
      'bad_input',
      `the staged file ${source.path} changed after it was judged for this upload (judged: ${approved.bytes} bytes, sha256 ${approved.sha256}; read for sending: ${sent.bytes} bytes, sha256 ${sent.sha256}); ` +
        `nothing was replaced on "${connection}" and the partial copy was removed. Leave the file alone and call upload_file again, so its new content is judged.`,
    );
  }

  function mismatch(how: string, detail: string): GatewayError {
    return new GatewayError('connect_failed', `upload to ${remotePath} on "${connection}" failed verification (${how}: ${detail}); the uploaded copy was removed and the target left as it was. Retry.`);
  }
}

export interface DownloadRequest {
  /** The device file (already judged, symlinks resolved). */
  remotePath: string;
  /** Where the file lands, inside the staging folder (already proven). */
  localPath: string;
  /** Folders to create first (inside the staging folder). */
  createLocalDirs?: string[];
  /** Replace a file already at localPath; without it an existing file is never touched. */
  overwrite?: boolean;
  signal?: AbortSignal;
  onProgress?: TransferProgress;
  verifyTimeoutMs: number;
  connection: string;
}

function localFileExists(localPath: string): GatewayError {
  return new GatewayError('bad_input', `${localPath} already exists in the staging folder; pass overwrite: true to replace it, or choose another local_path. Nothing was transferred.`);
}

/** Moves `temp` to `target` unless something appeared there meanwhile (a hard link fails with EEXIST; rename would replace). */
async function placeWithoutReplacing(temp: string, target: string): Promise<void> {
  try {
    await linkLocal(temp, target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw localFileExists(target);
    throw err;
  }
  await rm(temp, { force: true });
}

/**
 * Downloads into a temp file beside the local target (created exclusively, so a planted symlink is never
 * followed), hashes it, checks it against the device's sha256 (or size), and only then renames it into place.
 */
export async function downloadVerified(client: Client, request: DownloadRequest): Promise<TransferOutcome> {
  const started = performance.now();
  const { remotePath, localPath, connection } = request;
  for (const dir of request.createLocalDirs ?? []) await mkdir(dir, { mode: 0o755 }).catch(async (err: unknown) => {
    if (!(await statLocal(dir).catch(() => null))?.isDirectory()) throw err;
  });
  const replaced = (await statLocal(localPath).catch(() => null)) !== null;
  if (replaced && !request.overwrite) throw localFileExists(localPath);
  const temp = tempPathFor(localPath);
  await (await openLocal(temp, 'wx', 0o600)).close();
  try {
    const remoteSize = await withSftp(
      client,
      async (sftp) => {
        const info = await stat(sftp, remotePath);
        if (info.isDirectory()) throw new GatewayError('bad_input', `${remotePath} is a directory; download_file copies one file (list_directory shows what is in it).`);
        if (!info.isFile()) throw new GatewayError('bad_input', `${remotePath} is not a regular file (a device, FIFO or socket); it can't be downloaded.`);
        await fastGet(sftp, remotePath, temp, request.onProgress);
        return info.size;
      },
      request.signal,
    );
    // Both sides hash at once: the device's sha256sum and ours don't compete for anything.
    const [local, remote] = await Promise.all([sha256OfLocalFile(temp), remoteSha256(client, remotePath, request.verifyTimeoutMs)]);
    let verified: TransferOutcome['verified'] = 'sha256';
    if (remote === null) {
      verified = 'size';
      if (local.bytes !== remoteSize) throw mismatch('size', `${remoteSize} bytes on the device, ${local.bytes} received`);
    } else if (remote !== local.sha256) {
      throw mismatch('sha256', `device ${remote}, received ${local.sha256}`);
    }
    if (request.overwrite) await renameLocal(temp, localPath);
    else await placeWithoutReplacing(temp, localPath);
    return { bytes: local.bytes, sha256: local.sha256, verified, duration_ms: Math.round(performance.now() - started), replaced };
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw err;
  }

  function mismatch(how: string, detail: string): GatewayError {
    return new GatewayError(
      'connect_failed',
      `download of ${remotePath} from "${connection}" failed verification (${how}: ${detail}); the file may have changed during the transfer. The received copy was removed. Retry.`,
    );
  }
}
