// The staged file an upload sends, opened once: its size and sha256 are what the policy and a human judge, and
// the upload reads from this same descriptor. Swapping the file by name afterwards (download_file with
// overwrite: true renames a new file over it) changes nothing here; changing its bytes in place is caught by
// the upload, which hashes what it sends and compares it with `sha256` (see uploadVerified in src/ssh/sftp.ts).
import { createHash } from 'node:crypto';
import { constants, type promises as fsPromises } from 'node:fs';
import { open } from 'node:fs/promises';
import { GatewayError } from '../errors.js';
import type { UploadSource } from '../ssh/sftp.js';

/** What upload_file sends; its mode is the staged file's permission bits (no setuid/setgid/sticky). */
export type PinnedFile = UploadSource;

const READ_CHUNK = 1024 * 1024;

/** sha256 and length of everything `handle` holds, read by position from byte 0. */
export async function hashHandle(handle: fsPromises.FileHandle): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(READ_CHUNK);
  let bytes = 0;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, READ_CHUNK, bytes);
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    bytes += bytesRead;
  }
  return { bytes, sha256: hash.digest('hex') };
}

/**
 * Opens `realPath` (already proven to be inside the staging folder, symlinks resolved) without following a
 * symlink planted there since, and hashes it. The caller closes `handle`.
 */
export async function pinStagedFile(realPath: string): Promise<PinnedFile> {
  let handle: fsPromises.FileHandle;
  try {
    handle = await open(realPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new GatewayError('bad_input', `the staged file ${realPath} could not be opened (${code}); it may have been replaced by a symlink or removed. Put the file in the staging folder again, then retry.`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new GatewayError('bad_input', `${realPath} in the staging folder is no longer a regular file; only regular files are uploaded.`);
    const { bytes, sha256 } = await hashHandle(handle);
    return { path: realPath, handle, bytes, sha256, mode: info.mode & 0o777 };
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw err;
  }
}
