// The one trust decision about the gateway's own disk: may upload_file / download_file touch this local path?
// Only inside `gateway.staging_dir`, judged on real (symlink-free) paths, and nothing at all when the operator
// has not set one. Pure filesystem logic: no SSH, no MCP. Its hostile-input tests are test/unit/staging.test.ts.
import { lstat, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { GatewayError } from '../errors.js';

/** read: the file is sent (upload_file) and must exist; write: the file is received (download_file). */
export type StagingIntent = 'read' | 'write';

export interface StagedPath {
  /** Absolute path to use, under the real staging folder, every existing component's symlinks resolved. */
  path: string;
  /** The real staging folder itself. */
  root: string;
  /** `path` relative to `root`, for messages. */
  relative: string;
  /** A regular file is there now (anything else is refused). */
  exists: boolean;
  /** write: folders under `root` that don't exist yet and must be created (innermost last). */
  missingDirs: string[];
}

const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Resolves `localPath` (relative to staging_dir, or absolute inside it) and proves it stays inside
 * staging_dir: no `..` anywhere, no absolute path elsewhere, no symlink in any component that leads out, no NUL
 * or control characters. Throws a GatewayError that says why and what to use instead.
 */
export async function resolveStagedPath(stagingDir: string | undefined, localPath: string, intent: StagingIntent): Promise<StagedPath> {
  if (stagingDir === undefined || stagingDir === '') {
    throw new GatewayError(
      'policy_denied',
      'local file transfers are turned off: the operator has not set "gateway.staging_dir" in the config, the one local folder upload_file and download_file may read and write. ' +
        'Ask the operator to add "gateway": { "staging_dir": "/path/to/folder" }. Nothing was transferred.',
    );
  }
  const configured = path.resolve(stagingDir);
  let root: string;
  try {
    root = await realpath(configured);
    if (!(await stat(root)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new GatewayError(
      'connect_failed',
      `the staging folder ${configured} (gateway.staging_dir) is not usable (${code}); the operator must create it as a directory. Nothing was transferred.`,
    );
  }

  const relative = lexicalRelative(localPath, configured, root);
  const candidate = path.join(root, relative);
  const shown = JSON.stringify(localPath);
  const outside = (how: string): GatewayError =>
    new GatewayError(
      'policy_denied',
      `refused: local_path ${shown} ${how}, outside the staging folder ${configured} (gateway.staging_dir). ` +
        `Name a file inside it, e.g. "${path.basename(relative) || 'file.bin'}" or "${path.join(configured, path.basename(relative) || 'file.bin')}". Nothing was transferred.`,
    );

  const found = await lstatOrNull(candidate);
  if (found) {
    let real: string;
    try {
      real = await realpath(candidate);
    } catch {
      throw outside('is a symlink (or passes through one) whose target does not exist');
    }
    if (!isInside(real, root)) throw outside(`leads through a symlink to ${real}`);
    const target = await stat(real);
    if (target.isDirectory()) {
      throw new GatewayError('bad_input', `local_path ${shown} is a directory in the staging folder; name a file${intent === 'write' ? ' to create' : ''}. Nothing was transferred.`);
    }
    if (!target.isFile()) throw new GatewayError('bad_input', `local_path ${shown} is not a regular file (a device, FIFO or socket); only regular files are transferred.`);
    return { path: real, root, relative: path.relative(root, real), exists: true, missingDirs: [] };
  }

  if (intent === 'read') {
    throw new GatewayError('bad_input', `local_path ${shown} does not exist in the staging folder ${configured}. Put the file there first (or download_file it), then retry.`);
  }
  // Nothing there yet: the nearest existing folder above it decides where the file would really land.
  const missing: string[] = [];
  let ancestor = path.dirname(candidate);
  while (ancestor !== root && !(await lstatOrNull(ancestor))) {
    missing.unshift(ancestor);
    ancestor = path.dirname(ancestor);
  }
  let realAncestor: string;
  try {
    realAncestor = await realpath(ancestor);
  } catch {
    throw outside('passes through a symlink whose target does not exist');
  }
  if (!isInside(realAncestor, root)) throw outside(`leads through a symlink to ${realAncestor}`);
  if (!(await stat(realAncestor)).isDirectory()) {
    throw new GatewayError('bad_input', `local_path ${shown} passes through ${path.relative(root, ancestor)}, which is a file, not a folder.`);
  }
  const real = path.join(realAncestor, path.relative(ancestor, candidate));
  const missingDirs = missing.map((dir) => path.join(realAncestor, path.relative(ancestor, dir)));
  return { path: real, root, relative: path.relative(root, real), exists: false, missingDirs };
}

/** The path under the staging folder the agent named, checked lexically (no filesystem access). */
function lexicalRelative(localPath: string, configured: string, root: string): string {
  const shown = JSON.stringify(localPath);
  if (typeof localPath !== 'string' || localPath.trim() === '') throw new GatewayError('bad_input', 'local_path is empty; name a file in the staging folder.');
  if (localPath.includes('\u0000')) throw new GatewayError('bad_input', `local_path ${shown} contains a NUL byte.`);
  if (CONTROL.test(localPath)) throw new GatewayError('bad_input', `local_path ${shown} contains control characters; use a plain file name.`);
  if (localPath.split(/[/\\]/).includes('..')) {
    throw new GatewayError('policy_denied', `refused: local_path ${shown} contains "..": name a file inside the staging folder ${configured} directly. Nothing was transferred.`);
  }
  let relative: string;
  if (path.isAbsolute(localPath)) {
    const absolute = path.normalize(localPath);
    const base = [configured, root].find((dir) => isInside(absolute, dir));
    if (base === undefined) {
      throw new GatewayError(
        'policy_denied',
        `refused: local_path ${shown} is outside the staging folder ${configured} (gateway.staging_dir), the only local folder transfers may use. ` +
          `Use a path inside it, e.g. "${path.join(configured, path.basename(absolute) || 'file.bin')}" or just "${path.basename(absolute) || 'file.bin'}". Nothing was transferred.`,
      );
    }
    relative = path.relative(base, absolute);
  } else {
    relative = path.normalize(localPath);
  }
  relative = relative.replace(/\/+$/, '');
  if (relative === '' || relative === '.') {
    throw new GatewayError('bad_input', `local_path ${shown} is the staging folder itself; name a file in it.`);
  }
  return relative;
}

function isInside(child: string, root: string): boolean {
  if (root === path.sep) return child.startsWith(path.sep);
  return child === root || child.startsWith(root + path.sep);
}

async function lstatOrNull(file: string): Promise<Awaited<ReturnType<typeof lstat>> | null> {
  try {
    return await lstat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw err;
  }
}
