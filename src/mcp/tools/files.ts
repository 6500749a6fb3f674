// The file tools: read_file, write_file, list_directory, upload_file, download_file — over SFTP on the same warm
// connection (and session slots) as commands. Each: policy (guard.ts: `<tool> <normalized path>`, see policy.ts)
// → connection → SFTP (src/ssh/sftp.ts) → audit (file_read / file_transfer: paths, bytes, sha256, never content).
// Local paths for transfers are proven to be inside gateway.staging_dir first (src/files/staging.ts).
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { McpServer, ServerContext } from '@modelcontextprotocol/server';
import type { CallerIdentity, ToolContext } from '../context.js';
import { toolResult } from '../result.js';
import { authorizeFile, authorizeResolvedFile } from '../guard.js';
import type { Gateway } from '../../gateway/gateway.js';
import type { Client } from '../../ssh/ssh2.js';
import {
  downloadVerified,
  listDirectory,
  modeString,
  readRange,
  resolveRealPath,
  uploadVerified,
  withSftp,
  writeFileAtomic,
  type Sftp,
  type TransferOutcome,
  type TransferProgress,
} from '../../ssh/sftp.js';
import { resolveStagedPath } from '../../files/staging.js';
import { pinStagedFile, type PinnedFile } from '../../files/pinned.js';
import { decodeUtf8, utf8SafeEnd } from '../../ssh/output.js';
import { GatewayError } from '../../errors.js';
import { onDevice } from '../../gateway/device-sftp.js';
import { printable } from '../../util/text.js';
import type { FileOp } from '../../policy/index.js';

const MiB = 1024 * 1024;
export const DEFAULT_READ_BYTES = MiB;
export const MAX_READ_BYTES = 16 * MiB;
export const MAX_WRITE_BYTES = 8 * MiB;
export const MAX_LIST_ENTRIES = 10_000;
/** sha256sum of a large file on a slow device takes a while; this bounds the verification exec. */
const VERIFY_TIMEOUT_MS = 300_000;
const PROGRESS_INTERVAL_MS = 200;

const connectionField = z.string().min(1).describe('Connection name from list_connections.');
const remotePathField = (what: string): z.ZodString =>
  z.string().min(1).max(4096).describe(`${what} Absolute path on the device; ".." is resolved before the policy sees it.`);
const encodingField = z.enum(['utf8', 'base64']);

// ---------------------------------------------------------------------------------------------------
// Schemas

export const readFileInput = z
  .object({
    connection: connectionField,
    path: remotePathField('File to read.'),
    offset: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional().describe('Byte offset to start at (default 0).'),
    length: z.number().int().min(1).max(MAX_READ_BYTES).optional().describe(`Bytes to read (default ${DEFAULT_READ_BYTES}, at most ${MAX_READ_BYTES}).`),
    encoding: encodingField.optional().describe('utf8 (default) or base64 for the exact bytes of binary files.'),
  })
  .strict();

export const readFileResult = z.object({
  connection: z.string(),
  path: z.string().describe('The normalized path that was read.'),
  content: z.string(),
  size: z.number().describe('Size of the whole file.'),
  offset: z.number(),
  bytes: z.number().describe('Bytes returned; the next range starts at offset + bytes.'),
  truncated: z.boolean().describe('More of the file follows the returned range.'),
  sha256: z.string().describe('sha256 of the returned bytes.'),
  encoding: encodingField,
  invalid_utf8: z.boolean().describe('The bytes are not valid UTF-8; invalid sequences show as U+FFFD. Read again with encoding "base64" for the exact bytes.'),
});

export const writeFileInput = z
  .object({
    connection: connectionField,
    path: remotePathField('File to create or replace.'),
    content: z.string().max(Math.ceil((MAX_WRITE_BYTES * 4) / 3) + 4).describe(`The new content (at most ${MAX_WRITE_BYTES} bytes once decoded).`),
    encoding: encodingField.optional().describe('How content is given: utf8 text (default) or base64 bytes.'),
    mode: z
      .string()
      .regex(/^0?[0-7]{3,4}$/, 'an octal mode such as "0644" or "0755"')
      // A setuid or setgid file runs as its owner (often root) for whoever starts it: never set through this tool.
      .refine((mode) => (parseInt(mode, 8) & 0o7000) === 0, 'setuid and setgid bits (4000, 2000) and the sticky bit (1000) are not allowed; use a mode such as "0755"')
      .optional()
      .describe('Permissions, octal ("0644"); default: the existing file\'s permission bits, or 0644 for a new file. Never setuid/setgid/sticky, not even kept from the file replaced.'),
    create_dirs: z.boolean().optional().describe('Create missing parent folders (0755).'),
  })
  .strict();

export const writeFileResult = z.object({
  connection: z.string(),
  path: z.string(),
  bytes: z.number(),
  sha256: z.string(),
  mode: z.string(),
  replaced: z.boolean().describe('An existing file was replaced (atomically).'),
});

export const listDirectoryInput = z.object({ connection: connectionField, path: remotePathField('Folder to list.') }).strict();

const entrySchema = z.object({
  name: z.string(),
  type: z.enum(['file', 'directory', 'symlink', 'other']),
  size: z.number(),
  mode: z.string().describe('Permission bits, octal ("0755").'),
  mtime: z.string().describe('Last modification, ISO 8601.'),
});

export const listDirectoryResult = z.object({
  connection: z.string(),
  path: z.string(),
  entries: z.array(entrySchema),
  truncated: z.boolean().describe(`The folder has more than ${MAX_LIST_ENTRIES} entries; only that many are listed.`),
});

export const transferInput = z
  .object({
    connection: connectionField,
    local_path: z.string().min(1).max(4096).describe('File in the gateway\'s staging folder (gateway.staging_dir): a name relative to it, or an absolute path inside it.'),
    remote_path: remotePathField('File on the device.'),
    overwrite: z
      .boolean()
      .optional()
      .describe('download_file: replace a file already at local_path (default false: refused). upload_file always replaces the device file atomically, as write_file does.'),
  })
  .strict();

export const transferResult = z.object({
  connection: z.string(),
  local_path: z.string().describe('Absolute path of the file in the staging folder.'),
  remote_path: z.string(),
  bytes: z.number(),
  sha256: z.string(),
  duration_ms: z.number(),
  verified: z.enum(['sha256', 'size']).describe('sha256: both sides hashed and equal; size: the device has no sha256sum, sizes were compared.'),
});

// ---------------------------------------------------------------------------------------------------
// Helpers

function decodeContent(content: string, encoding: 'utf8' | 'base64'): Buffer {
  if (encoding === 'utf8') return Buffer.from(content, 'utf8');
  const compact = content.replace(/\s+/g, '');
  if (compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) {
    throw new GatewayError('bad_input', 'content is not valid base64 (A-Z, a-z, 0-9, +, /, padded with = to a multiple of 4). Nothing was written.');
  }
  return Buffer.from(compact, 'base64');
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/**
 * The path the device will really touch: symlinks resolved by the device and judged again under a policy.
 * Writes always follow an existing symlink (the link stays, its target gets the new content), so they always
 * resolve; reads and listings only need to when a policy could care.
 */
async function resolvedPath(
  gateway: Gateway,
  sftp: Sftp,
  request: { connection: string; op: FileOp; path: string; who: CallerIdentity },
): Promise<string> {
  if (!mustResolve(gateway, request.connection, request.op)) return request.path;
  const resolved = await resolveRealPath(sftp, request.path);
  await authorizeResolvedFile(gateway, { ...request, resolved });
  return resolved;
}

function mustResolve(gateway: Gateway, connection: string, op: FileOp): boolean {
  return op === 'write' || gateway.connection(connection).config.effectivePolicy !== undefined;
}

/** Transfer progress as MCP progress notifications (bytes done of total), at most one per interval. */
function progressFor(ctx: ServerContext): { report: TransferProgress; finish(): void } | undefined {
  const token = ctx.mcpReq._meta?.progressToken as string | number | undefined;
  if (token === undefined) return undefined;
  let lastSentAt = 0;
  let sent = -1;
  let latest: [number, number] | undefined;
  const send = (done: number, total: number): void => {
    if (done <= sent) return; // progress must increase
    sent = done;
    lastSentAt = Date.now();
    void ctx.mcpReq
      .notify({ method: 'notifications/progress', params: { progressToken: token, progress: done, total, message: `${done} of ${total} bytes` } })
      .catch(() => undefined); // A client that went away must not fail the transfer.
  };
  return {
    report: (done, total) => {
      latest = [done, total];
      if (done === total || Date.now() - lastSentAt >= PROGRESS_INTERVAL_MS) send(done, total);
    },
    finish: () => {
      if (latest) send(...latest);
    },
  };
}

/** What a human approves for an upload, besides the device path: the staged file's name, size, sha256 and mode. */
function uploadDetail(pinned: PinnedFile): string {
  return `upload_file: from ${pinned.path} in the staging folder, ${pinned.bytes} bytes, sha256 ${pinned.sha256}, mode kept without setuid/setgid (${modeString(pinned.mode)} if new)`;
}

function transferText(op: 'upload' | 'download', connection: string, local: string, remote: string, outcome: TransferOutcome): string {
  const arrow = op === 'upload' ? `${local} → ${connection}:${remote}` : `${connection}:${remote} → ${local}`;
  const mbps = outcome.duration_ms > 0 ? ` (${(outcome.bytes / MiB / (outcome.duration_ms / 1000)).toFixed(1)} MiB/s)` : '';
  const check = outcome.verified === 'sha256' ? 'sha256 verified on both sides' : 'sizes match (the device has no sha256sum)';
  return `${op === 'upload' ? 'uploaded' : 'downloaded'} ${arrow}: ${outcome.bytes} bytes in ${outcome.duration_ms} ms${mbps}, ${check}; sha256 ${outcome.sha256}`;
}

// ---------------------------------------------------------------------------------------------------
// Tools

export function registerReadFile(server: McpServer, { gateway, audited, authorize }: ToolContext): void {
  server.registerTool(
    'read_file',
    {
      title: 'Read a file on a device',
      description:
        `Reads a file on one device over SFTP: up to ${DEFAULT_READ_BYTES} bytes by default (length up to ${MAX_READ_BYTES}) from offset, with the file's size, whether more follows, and the sha256 of the returned bytes. ` +
        'Use encoding "base64" for binary files; invalid UTF-8 is flagged, never silently altered.',
      inputSchema: readFileInput,
      outputSchema: readFileResult,
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    },
    audited('read_file', async (args, ctx, who) => {
      const { connection } = args;
      const path = await authorizeFile(authorize, gateway, { connection, op: 'read', path: args.path, ctx, who, detail: 'read_file' });
      const offset = args.offset ?? 0;
      const length = args.length ?? DEFAULT_READ_BYTES;
      const encoding = args.encoding ?? 'utf8';
      let read;
      try {
        read = await onDevice(
          gateway,
          connection,
          `reading ${path}`,
          (client) => withSftp(client, async (sftp) => readRange(sftp, await resolvedPath(gateway, sftp, { connection, op: 'read', path, who }), offset, length), ctx.mcpReq.signal),
          ctx.mcpReq.signal,
        );
      } catch (err) {
        await gateway.record({ event: 'file_read', connection, path, offset, error: (err as Error).message, client: who });
        throw err;
      }
      let data = read.data;
      // A range that ends inside a multi-byte character gives that character to the next range instead.
      if (encoding === 'utf8' && read.more) data = data.subarray(0, utf8SafeEnd(data));
      const decoded = encoding === 'base64' ? { text: data.toString('base64'), valid: true } : decodeUtf8(data);
      const content = decoded.text;
      const invalidUtf8 = !decoded.valid;
      const truncated = read.more || data.length < read.data.length;
      const digest = sha256(data);
      await gateway.record({ event: 'file_read', connection, path, offset, bytes: data.length, size: read.size, sha256: digest, client: who });
      const result = { connection, path, content, size: read.size, offset, bytes: data.length, truncated, sha256: digest, encoding, invalid_utf8: invalidUtf8 };
      const head =
        `${connection}:${path}: ${data.length} bytes from offset ${offset} of ${read.size}` +
        (truncated ? ` (more follows: read again with offset ${offset + data.length})` : '') +
        (invalidUtf8 ? ' (not valid UTF-8: read again with encoding "base64" for the exact bytes)' : '');
      return toolResult(result, `${head}\n---\n${content}`);
    }),
  );
}

export function registerWriteFile(server: McpServer, { gateway, audited, authorize }: ToolContext): void {
  server.registerTool(
    'write_file',
    {
      title: 'Write a file on a device',
      description:
        `Creates or replaces a file on one device atomically (temp file in the same folder, fsync, rename): readers see the old file or the new one, never a mix. At most ${MAX_WRITE_BYTES} bytes. ` +
        'Keeps the existing file\'s permission bits (and owner, where the login may) unless mode is given, but never setuid/setgid/sticky; follows an existing symlink to its target. Refused on read_only connections.',
      inputSchema: writeFileInput,
      outputSchema: writeFileResult,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: true },
    },
    audited('write_file', async (args, ctx, who) => {
      const { connection } = args;
      const data = decodeContent(args.content, args.encoding ?? 'utf8');
      if (data.length > MAX_WRITE_BYTES) {
        throw new GatewayError('bad_input', `content is ${data.length} bytes; write_file takes at most ${MAX_WRITE_BYTES}. Use upload_file for larger files. Nothing was written.`);
      }
      const requestedMode = args.mode !== undefined ? parseInt(args.mode, 8) : undefined;
      const digest = sha256(data);
      const detail = `write_file: ${data.length} bytes, sha256 ${digest}, mode ${args.mode ?? 'kept without setuid/setgid (0644 if new)'}`;
      const path = await authorizeFile(authorize, gateway, { connection, op: 'write', path: args.path, ctx, who, detail });
      const audit = { event: 'file_transfer', op: 'write', connection, path, bytes: data.length, sha256: digest, client: who };
      let written;
      try {
        written = await onDevice(gateway, connection, `writing ${path}`, (client) =>
          withSftp(
            client,
            async (sftp) => {
              const real = await resolvedPath(gateway, sftp, { connection, op: 'write', path, who });
              return { ...(await writeFileAtomic(sftp, real, data, { mode: requestedMode, createDirs: args.create_dirs })), real };
            },
            ctx.mcpReq.signal,
          ),
          ctx.mcpReq.signal,
        );
      } catch (err) {
        await gateway.record({ ...audit, error: (err as Error).message });
        throw err;
      }
      const mode = written.mode.toString(8).padStart(4, '0');
      await gateway.record({ ...audit, resolved: written.real !== path ? written.real : undefined, mode, replaced: written.replaced, fsynced: written.fsynced });
      const result = { connection, path, bytes: data.length, sha256: digest, mode, replaced: written.replaced };
      const where = written.real !== path ? ` (through a symlink: ${written.real})` : '';
      return toolResult(result, `${written.replaced ? 'replaced' : 'created'} ${connection}:${path}${where}: ${data.length} bytes, mode ${mode}, sha256 ${digest}`);
    }),
  );
}

export function registerListDirectory(server: McpServer, { gateway, audited, authorize }: ToolContext): void {
  server.registerTool(
    'list_directory',
    {
      title: 'List a folder on a device',
      description: `Lists a folder on one device: each entry's name, type (file, directory, symlink, other), size, mode and mtime, sorted by name, at most ${MAX_LIST_ENTRIES} entries.`,
      inputSchema: listDirectoryInput,
      outputSchema: listDirectoryResult,
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    },
    audited('list_directory', async (args, ctx, who) => {
      const { connection } = args;
      const path = await authorizeFile(authorize, gateway, { connection, op: 'list', path: args.path, ctx, who });
      const listing = await onDevice(
        gateway,
        connection,
        `listing ${path}`,
        (client) => withSftp(client, async (sftp) => listDirectory(sftp, await resolvedPath(gateway, sftp, { connection, op: 'list', path, who }), MAX_LIST_ENTRIES), ctx.mcpReq.signal),
        ctx.mcpReq.signal,
      );
      const result = { connection, path, ...listing };
      // Names are the device's words: a newline or an escape sequence in one must not forge lines in the summary.
      const shown = listing.entries.slice(0, 200).map((e) => `${e.type === 'directory' ? 'd' : e.type === 'symlink' ? 'l' : e.type === 'file' ? '-' : '?'} ${e.mode} ${String(e.size).padStart(10)} ${e.mtime} ${printable(e.name, 255)}`);
      const more = listing.entries.length > shown.length ? `\n... ${listing.entries.length - shown.length} more in structuredContent` : '';
      const note = listing.truncated ? ` (truncated at ${MAX_LIST_ENTRIES})` : '';
      return toolResult(result, `${connection}:${path}: ${listing.entries.length} entries${note}\n${shown.join('\n')}${more}`);
    }),
  );
}

/** What differs between the two directions of a transfer; everything else (checks, audit, progress) is shared. */
interface TransferDirection {
  tool: 'upload_file' | 'download_file';
  op: 'upload' | 'download';
  title: string;
  description: string;
  /** How the staging folder is used, and how the device path is judged by policy. */
  local: 'read' | 'write';
  remote: 'write' | 'read';
  verb: (remotePath: string) => string;
  move: (
    client: Client,
    paths: { local: Awaited<ReturnType<typeof resolveStagedPath>>; remote: string; pinned?: PinnedFile },
    options: { signal: AbortSignal; onProgress?: (done: number, total: number) => void; connection: string; overwrite?: boolean },
  ) => Promise<TransferOutcome>;
}

const UPLOAD: TransferDirection = {
  tool: 'upload_file',
  op: 'upload',
  title: 'Upload a file from the staging folder to a device',
  description:
    'Copies a file from the gateway\'s staging folder (gateway.staging_dir) to a device over SFTP, streamed with progress notifications, then verifies it (sha256 on both sides, or size if the device has no sha256sum) before renaming it into place atomically. ' +
    'The approval (under a confirm rule) is for the staged file\'s size and sha256: exactly those bytes are uploaded, or nothing is replaced. ' +
    'Keeps the replaced file\'s permission bits (and owner, where the login may), a new file gets the staged file\'s; never setuid/setgid/sticky. ' +
    'A failed verification leaves the target untouched. Refused on read_only connections.',
  local: 'read',
  remote: 'write',
  verb: (remotePath) => `uploading to ${remotePath}`,
  move: (client, paths, { signal, onProgress, connection }) => {
    if (!paths.pinned) throw new Error('upload_file without its pinned staged file'); // registerTransfer always pins uploads
    return uploadVerified(client, { source: paths.pinned, remotePath: paths.remote, verifyTimeoutMs: VERIFY_TIMEOUT_MS, signal, onProgress, connection });
  },
};

const DOWNLOAD: TransferDirection = {
  tool: 'download_file',
  op: 'download',
  title: 'Download a file from a device to the staging folder',
  description:
    'Copies a file from a device into the gateway\'s staging folder (gateway.staging_dir) over SFTP, streamed with progress notifications, verified (sha256 on both sides, or size if the device has no sha256sum) before it appears under local_path. ' +
    'A failed verification leaves nothing behind.',
  local: 'write',
  remote: 'read',
  verb: (remotePath) => `downloading ${remotePath}`,
  move: (client, paths, options) =>
    downloadVerified(client, {
      remotePath: paths.remote,
      localPath: paths.local.path,
      createLocalDirs: paths.local.missingDirs,
      overwrite: options.overwrite,
      verifyTimeoutMs: VERIFY_TIMEOUT_MS,
      ...options,
    }),
};

function registerTransfer(server: McpServer, { gateway, audited, authorize }: ToolContext, direction: TransferDirection): void {
  server.registerTool(
    direction.tool,
    {
      title: direction.title,
      description: direction.description,
      inputSchema: transferInput,
      outputSchema: transferResult,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: true },
    },
    audited(direction.tool, async (args, ctx, who) => {
      const { connection } = args;
      gateway.connection(connection); // unknown connection: say so before judging local paths
      const staged = await resolveStagedPath(gateway.config.gateway.staging_dir, args.local_path, direction.local);
      // An upload is judged (and approved) by the bytes it sends, read from this one descriptor: see pinned.ts.
      const pinned = direction.op === 'upload' ? await pinStagedFile(staged.path) : undefined;
      try {
        const detail = pinned ? uploadDetail(pinned) : `${direction.tool}: to ${staged.path} in the staging folder`;
        const remotePath = await authorizeFile(authorize, gateway, { connection, op: direction.remote, path: args.remote_path, ctx, who, detail });
        const judged = pinned ? { bytes: pinned.bytes, sha256: pinned.sha256 } : {};
        const audit = { event: 'file_transfer', op: direction.op, connection, local_path: staged.path, remote_path: remotePath, ...judged, client: who };
        const progress = progressFor(ctx);
        let outcome: TransferOutcome & { real: string };
        try {
          outcome = await onDevice(gateway, connection, direction.verb(remotePath), async (client) => {
            const request = { connection, op: direction.remote, path: remotePath, who };
            const real = mustResolve(gateway, connection, direction.remote) ? await withSftp(client, (sftp) => resolvedPath(gateway, sftp, request)) : remotePath;
            const paths = { local: staged, remote: real, pinned };
            const done = await direction.move(client, paths, { signal: ctx.mcpReq.signal, onProgress: progress?.report, connection, overwrite: args.overwrite });
            return { ...done, real };
          }, ctx.mcpReq.signal);
        } catch (err) {
          await gateway.record({ ...audit, error: (err as Error).message });
          throw err;
        } finally {
          progress?.finish();
        }
        const { real, ...transfer } = outcome;
        await gateway.record({ ...audit, resolved: real !== remotePath ? real : undefined, ...transfer });
        const result = { connection, local_path: staged.path, remote_path: remotePath, bytes: transfer.bytes, sha256: transfer.sha256, duration_ms: transfer.duration_ms, verified: transfer.verified };
        return toolResult(result, transferText(direction.op, connection, staged.path, remotePath, transfer));
      } finally {
        await pinned?.handle.close().catch(() => undefined);
      }
    }),
  );
}

export function registerUploadFile(server: McpServer, context: ToolContext): void {
  registerTransfer(server, context, UPLOAD);
}

export function registerDownloadFile(server: McpServer, context: ToolContext): void {
  registerTransfer(server, context, DOWNLOAD);
}
