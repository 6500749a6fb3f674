// The staging folder is the only local folder transfers may touch. Hostile local paths — climbing out with
// "..", absolute paths elsewhere, look-alike prefixes, symlinks in any component, NUL bytes — never resolve
// to anything outside it; and with no staging_dir configured, nothing resolves at all.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, symlink, rm, realpath } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { resolveStagedPath } from '../../src/files/staging.js';
import { GatewayError } from '../../src/errors.js';

let base: string;
let staging: string;
let outside: string;

before(async () => {
  base = await realpath(await mkdtemp(path.join(tmpdir(), 'mcpgw-staging-test-')));
  staging = path.join(base, 'staging');
  outside = path.join(base, 'outside');
  await mkdir(path.join(staging, 'sub'), { recursive: true });
  await mkdir(outside);
  await mkdir(path.join(base, 'staging-evil'));
  await writeFile(path.join(staging, 'fw.bin'), 'firmware');
  await writeFile(path.join(staging, 'sub', 'inner.txt'), 'inner');
  await writeFile(path.join(outside, 'secret'), 'secret');
  await writeFile(path.join(base, 'staging-evil', 'x'), 'x');
  await symlink(outside, path.join(staging, 'out-dir')); // a folder symlink leading out
  await symlink(path.join(outside, 'secret'), path.join(staging, 'out-file')); // a file symlink leading out
  await symlink('/nonexistent/target', path.join(staging, 'dangling'));
  await symlink(path.join(staging, 'sub'), path.join(staging, 'in-dir')); // a symlink that stays inside
  await symlink('fw.bin', path.join(staging, 'in-file'));
  await symlink(staging, path.join(base, 'staging-link')); // the configured folder itself through a symlink
});

after(async () => {
  await rm(base, { recursive: true, force: true });
});

async function refused(localPath: string, intent: 'read' | 'write' = 'read', dir: { staging_dir: string | undefined } = { staging_dir: staging }): Promise<string> {
  let resolved: string;
  try {
    resolved = (await resolveStagedPath(dir.staging_dir, localPath, intent)).path;
  } catch (err) {
    assert.ok(err instanceof GatewayError, `expected a GatewayError, got ${String(err)}`);
    return err.message;
  }
  assert.fail(`${JSON.stringify(localPath)} (${intent}) resolved to ${resolved}`);
}

test('without staging_dir every local transfer is refused, and the message tells the operator what to set', async () => {
  for (const dir of [undefined, '']) {
    const message = await refused('fw.bin', 'read', { staging_dir: dir });
    assert.match(message, /gateway\.staging_dir/);
    assert.match(message, /staging_dir"?: "\/path\/to\/folder"/);
  }
});

test('a staging_dir that does not exist is reported, not created', async () => {
  assert.match(await refused('fw.bin', 'write', { staging_dir: path.join(base, 'missing') }), /not usable.*create it/);
});

test('names inside the staging folder resolve, relative or absolute', async () => {
  const a = await resolveStagedPath(staging, 'fw.bin', 'read');
  assert.equal(a.path, path.join(staging, 'fw.bin'));
  assert.equal(a.exists, true);
  const b = await resolveStagedPath(staging, path.join(staging, 'sub', 'inner.txt'), 'read');
  assert.equal(b.path, path.join(staging, 'sub', 'inner.txt'));
  const c = await resolveStagedPath(staging, './sub//inner.txt', 'read');
  assert.equal(c.path, path.join(staging, 'sub', 'inner.txt'));
  const d = await resolveStagedPath(staging, 'new/deeper/file.bin', 'write');
  assert.equal(d.path, path.join(staging, 'new', 'deeper', 'file.bin'));
  assert.equal(d.exists, false);
  assert.deepEqual(d.missingDirs, [path.join(staging, 'new'), path.join(staging, 'new', 'deeper')]);
});

test('".." is refused wherever it appears, even when it would stay inside', async () => {
  for (const hostile of ['../x', '../outside/secret', 'sub/../../outside/secret', 'sub/../fw.bin', '..', `${staging}/../outside/secret`, 'sub\\..\\..\\x']) {
    assert.match(await refused(hostile, 'read'), /"\.\."/, hostile);
    assert.match(await refused(hostile, 'write'), /"\.\."/, hostile);
  }
});

test('absolute paths elsewhere are refused, including look-alike prefixes of the staging folder', async () => {
  for (const hostile of ['/etc/passwd', path.join(outside, 'secret'), path.join(base, 'staging-evil', 'x'), `${staging}-evil/x`, '/']) {
    assert.match(await refused(hostile, 'read'), /outside the staging folder/, hostile);
    assert.match(await refused(hostile, 'write'), /outside the staging folder/, hostile);
  }
});

test('a symlink in any component that leads outside is refused, for reading and for writing', async () => {
  assert.match(await refused('out-file', 'read'), /symlink to .*outside/);
  assert.match(await refused('out-file', 'write'), /symlink to .*outside/);
  assert.match(await refused('out-dir/secret', 'read'), /symlink to .*outside/);
  assert.match(await refused('out-dir/new-file', 'write'), /symlink to .*outside/);
  assert.match(await refused('out-dir/a/b/new-file', 'write'), /symlink to .*outside/);
  assert.match(await refused(path.join(staging, 'out-dir', 'secret'), 'read'), /symlink/);
});

test('a dangling symlink is refused (it could be made to point anywhere)', async () => {
  assert.match(await refused('dangling', 'read'), /symlink/);
  assert.match(await refused('dangling', 'write'), /symlink/);
  assert.match(await refused('dangling/x', 'write'), /symlink/);
});

test('symlinks that stay inside resolve to their real path', async () => {
  const viaDir = await resolveStagedPath(staging, 'in-dir/inner.txt', 'read');
  assert.equal(viaDir.path, path.join(staging, 'sub', 'inner.txt'));
  const viaFile = await resolveStagedPath(staging, 'in-file', 'write');
  assert.equal(viaFile.path, path.join(staging, 'fw.bin'));
  const newViaDir = await resolveStagedPath(staging, 'in-dir/new.bin', 'write');
  assert.equal(newViaDir.path, path.join(staging, 'sub', 'new.bin'));
});

test('a staging_dir configured through a symlink works, and paths given either way are inside', async () => {
  const link = path.join(base, 'staging-link');
  assert.equal((await resolveStagedPath(link, 'fw.bin', 'read')).path, path.join(staging, 'fw.bin'));
  assert.equal((await resolveStagedPath(link, path.join(link, 'fw.bin'), 'read')).path, path.join(staging, 'fw.bin'));
  assert.equal((await resolveStagedPath(link, path.join(staging, 'fw.bin'), 'read')).path, path.join(staging, 'fw.bin'));
});

test('NUL bytes, control characters and empty names are refused', async () => {
  assert.match(await refused('fw.bin\u0000../../etc/passwd'), /NUL/);
  assert.match(await refused('fw\nbin'), /control/);
  assert.match(await refused(''), /empty/);
  assert.match(await refused('   '), /empty/);
});

test('the staging folder itself, folders and missing files are refused with what to do instead', async () => {
  assert.match(await refused('.', 'write'), /staging folder itself/);
  assert.match(await refused(staging + '/', 'write'), /staging folder itself/);
  assert.match(await refused('sub', 'read'), /directory/);
  assert.match(await refused('sub', 'write'), /directory/);
  assert.match(await refused('nope.bin', 'read'), /does not exist/);
  assert.match(await refused('fw.bin/x', 'write'), /is a file, not a folder/);
});
