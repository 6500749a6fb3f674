// The file tools against a real OpenSSH sshd (internal-sftp), driven through the real MCP client: what the
// agent reads is what is on the device, writes are atomic and leave no debris, transfers are verified on
// both sides, the policy judges the normalized (and symlink-resolved) path, and local transfers never leave
// the staging folder. The "device" is this machine, so remote paths are checked directly on disk.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync, openSync, readSync, closeSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { CallToolResult } from '@modelcontextprotocol/client';
import { Sshd } from '../helpers/sshd.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startGateway, directConnection, callOk, callError, CLI, type GatewayUnderTest } from '../helpers/gateway.js';

interface ReadResult { path: string; content: string; size: number; offset: number; bytes: number; truncated: boolean; sha256: string; encoding: string; invalid_utf8: boolean }
interface WriteResult { path: string; bytes: number; sha256: string; mode: string; replaced: boolean }
interface ListResult { path: string; truncated: boolean; entries: { name: string; type: string; size: number; mode: string; mtime: string }[] }
interface TransferResult { local_path: string; remote_path: string; bytes: number; sha256: string; duration_ms: number; verified: 'sha256' | 'size' }

let sshd: Sshd;
let oddball: Sshd; // a device whose sha256sum is missing, or lies about files named *corrupt*
let gw: GatewayUnderTest;
let base: string; // everything this file creates lives under here
let work: string; // the device's files
let staging: string; // gateway.staging_dir
const asked: string[] = [];

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const mode = (file: string): string => (statSync(file).mode & 0o7777).toString(8).padStart(4, '0');
/** Leftover temp files (`.NAME.mcpgw-<random>.tmp`) in a folder. */
const debris = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((name) => name.includes('.mcpgw-'));

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'mcpgw-files-'));
  work = path.join(base, 'device');
  staging = path.join(base, 'staging');
  const fakeBin = path.join(base, 'fakebin');
  await Promise.all([mkdir(work), mkdir(staging), mkdir(fakeBin), mkdir(path.join(base, 'outside'))]);
  await writeFile(
    path.join(fakeBin, 'sha256sum'),
    '#!/bin/sh\ncase "$2" in *corrupt*) echo "0000000000000000000000000000000000000000000000000000000000000000  $2"; exit 0;; esac\necho "sha256sum: not found" >&2\nexit 127\n',
    { mode: 0o755 },
  );
  [sshd, oddball] = await Promise.all([Sshd.start(), Sshd.start({ extraConfig: ['PermitUserEnvironment PATH'] })]);
  // The oddball's commands find the fake sha256sum first (the key's environment= option sets their PATH).
  await writeFile(path.join(oddball.dir, 'authorized_keys'), `environment="PATH=${fakeBin}:/usr/bin:/bin" ${oddball.clientKey.publicLine}\n`, { mode: 0o600 });
  const W = esc(work);
  gw = await startGateway(
    {
      gateway: { staging_dir: staging },
      connections: [
        directConnection(sshd, 'dev1'),
        directConnection(sshd, 'ro', { policy: { read_only: true } }),
        directConnection(sshd, 'guarded', {
          policy: {
            allow: [`^read_file ${W}/logs/`, `^list_directory ${W}/logs$`, `^write_file ${W}/allowed/[\\w.-]+$`],
            deny: [`^read_file ${W}/logs/secret`],
            confirm: [`^write_file ${W}/confirm/[\\w.-]+$`],
          },
        }),
        directConnection(oddball, 'odd'),
      ],
    },
    {
      capabilities: { elicitation: { form: {} } },
      setup: (client) =>
        client.setRequestHandler('elicitation/create', async (request) => {
          const message = (request.params as { message: string }).message;
          asked.push(message);
          return { action: 'accept', content: { approve: /approve-me/.test(message) } };
        }),
    },
  );
});

after(async () => {
  await gw?.close();
  await Promise.all([sshd?.stop(), oddball?.stop()]);
  await rm(base, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------
// read_file

test('read_file returns a small text file exactly, with its size and sha256', async () => {
  const file = path.join(work, 'hello.txt');
  await writeFile(file, 'héllo, device\n');
  const r = await callOk<ReadResult>(gw, 'read_file', { connection: 'dev1', path: file });
  assert.equal(r.content, 'héllo, device\n');
  assert.equal(r.size, Buffer.byteLength('héllo, device\n'));
  assert.equal(r.bytes, r.size);
  assert.equal(r.truncated, false);
  assert.equal(r.sha256, sha256('héllo, device\n'));
  assert.equal(r.invalid_utf8, false);
});

test('read_file reads a range and says that more follows', async () => {
  const file = path.join(work, 'alphabet.txt');
  await writeFile(file, 'abcdefghijklmnopqrstuvwxyz');
  const r = await callOk<ReadResult>(gw, 'read_file', { connection: 'dev1', path: file, offset: 3, length: 4 });
  assert.deepEqual([r.content, r.offset, r.bytes, r.size, r.truncated], ['defg', 3, 4, 26, true]);
  assert.equal(r.sha256, sha256('defg'));
  const tail = await callOk<ReadResult>(gw, 'read_file', { connection: 'dev1', path: file, offset: 20, length: 100 });
  assert.deepEqual([tail.content, tail.truncated], ['uvwxyz', false]);
  // a range that would end inside a multi-byte character leaves the whole character to the next range
  await writeFile(file, 'aé');
  const cut = await callOk<ReadResult>(gw, 'read_file', { connection: 'dev1', path: file, length: 2 });
  assert.deepEqual([cut.content, cut.bytes, cut.truncated, cut.invalid_utf8], ['a', 1, true, false]);
});

test('binary files: base64 gives the exact bytes, utf8 flags invalid UTF-8 instead of mangling silently', async () => {
  const file = path.join(work, 'blob.bin');
  const bytes = Buffer.concat([Buffer.from([0xff, 0xfe, 0x00, 0xc3]), randomBytes(4092)]);
  await writeFile(file, bytes);
  const b64 = await callOk<ReadResult>(gw, 'read_file', { connection: 'dev1', path: file, encoding: 'base64' });
  assert.equal(b64.encoding, 'base64');
  assert.ok(Buffer.from(b64.content, 'base64').equals(bytes));
  assert.equal(b64.sha256, sha256(bytes));
  const utf8 = await callOk<ReadResult>(gw, 'read_file', { connection: 'dev1', path: file });
  assert.equal(utf8.invalid_utf8, true);
  assert.equal(utf8.sha256, sha256(bytes), 'sha256 is of the bytes, whatever the encoding');
});

test('read_file reads pseudo-files that report size 0, such as /proc/version', async () => {
  const r = await callOk<ReadResult>(gw, 'read_file', { connection: 'dev1', path: '/proc/version' });
  assert.equal(r.content, readFileSync('/proc/version', 'utf8'));
  assert.equal(r.truncated, false);
  assert.equal(r.size, r.bytes);
});

test('read_file of a missing file or a directory is an error that says so', async () => {
  assert.match(await callError(gw, 'read_file', { connection: 'dev1', path: path.join(work, 'nope.txt') }), /no such file/);
  assert.match(await callError(gw, 'read_file', { connection: 'dev1', path: work }), /is a directory; use list_directory/);
  assert.match(await callError(gw, 'read_file', { connection: 'dev1', path: 'relative.txt' }), /relative/);
  assert.match(await callError(gw, 'read_file', { connection: 'nowhere', path: '/etc/hostname' }), /unknown connection "nowhere"/);
});

// ---------------------------------------------------------------------------------------------------
// write_file

test('write_file creates a file atomically: right content, default mode 0644, no temp file left behind', async () => {
  const dir = path.join(work, 'w1');
  await mkdir(dir);
  const file = path.join(dir, 'new.conf');
  const r = await callOk<WriteResult>(gw, 'write_file', { connection: 'dev1', path: file, content: 'key=value\n' });
  assert.equal(await readFile(file, 'utf8'), 'key=value\n');
  assert.deepEqual([r.bytes, r.sha256, r.mode, r.replaced], [10, sha256('key=value\n'), '0644', false]);
  assert.equal(mode(file), '0644');
  assert.deepEqual(await debris(dir), []);
});

test('overwriting replaces the file whole (a reader of the old one is undisturbed) and keeps its mode', async () => {
  const dir = path.join(work, 'w2');
  await mkdir(dir);
  const file = path.join(dir, 'run.sh');
  await writeFile(file, 'old content\n');
  await chmod(file, 0o750);
  const reader = openSync(file, 'r'); // opened before the write: an in-place write would change what it reads
  try {
    const r = await callOk<WriteResult>(gw, 'write_file', { connection: 'dev1', path: file, content: '#!/bin/sh\necho new\n' });
    assert.deepEqual([r.mode, r.replaced], ['0750', true]);
    assert.equal(await readFile(file, 'utf8'), '#!/bin/sh\necho new\n');
    assert.equal(mode(file), '0750');
    const old = Buffer.alloc(64);
    assert.equal(old.subarray(0, readSync(reader, old, 0, 64, 0)).toString(), 'old content\n');
  } finally {
    closeSync(reader);
  }
  // an explicit mode wins; base64 content is written as bytes
  const bytes = randomBytes(1000);
  await callOk(gw, 'write_file', { connection: 'dev1', path: file, content: bytes.toString('base64'), encoding: 'base64', mode: '0600' });
  assert.ok((await readFile(file)).equals(bytes));
  assert.equal(mode(file), '0600');
  assert.deepEqual(await debris(dir), []);
});

test('write_file creates missing folders only when asked, and refuses to replace a directory', async () => {
  const file = path.join(work, 'deep', 'er', 'file.txt');
  assert.match(await callError(gw, 'write_file', { connection: 'dev1', path: file, content: 'x' }), /does not exist; pass create_dirs: true/);
  assert.equal(existsSync(path.join(work, 'deep')), false);
  await callOk(gw, 'write_file', { connection: 'dev1', path: file, content: 'x', create_dirs: true });
  assert.equal(await readFile(file, 'utf8'), 'x');
  assert.match(await callError(gw, 'write_file', { connection: 'dev1', path: path.join(work, 'deep'), content: 'x' }), /is a directory/);
  assert.match(await callError(gw, 'write_file', { connection: 'dev1', path: file, content: '%%%', encoding: 'base64' }), /not valid base64/);
});

test('read_only refuses write_file and upload_file, naming read_only; reads still work', async () => {
  const file = path.join(work, 'ro-target.txt');
  const refusal = await callError(gw, 'write_file', { connection: 'ro', path: file, content: 'x' });
  assert.match(refusal, /read_only/);
  assert.equal(existsSync(file), false);
  await writeFile(path.join(staging, 'ro-up.txt'), 'upload me');
  assert.match(await callError(gw, 'upload_file', { connection: 'ro', local_path: 'ro-up.txt', remote_path: file }), /read_only/);
  assert.equal(existsSync(file), false);
  await writeFile(file, 'readable');
  assert.equal((await callOk<ReadResult>(gw, 'read_file', { connection: 'ro', path: file })).content, 'readable');
});

test('under an allow list a write needs a matching ^write_file rule', async () => {
  await mkdir(path.join(work, 'allowed'), { recursive: true });
  const outsideRule = path.join(work, 'elsewhere.txt');
  const refusal = await callError(gw, 'write_file', { connection: 'guarded', path: outsideRule, content: 'x' });
  assert.match(refusal, /matches no allow rule/);
  assert.match(refusal, /\^write_file/);
  assert.equal(existsSync(outsideRule), false);
  const inside = path.join(work, 'allowed', 'ok.txt');
  await callOk(gw, 'write_file', { connection: 'guarded', path: inside, content: 'allowed' });
  assert.equal(await readFile(inside, 'utf8'), 'allowed');
});

test('".." is collapsed before the policy sees the path, so it cannot climb out of an allowed folder', async () => {
  await mkdir(path.join(work, 'logs'), { recursive: true });
  await mkdir(path.join(work, 'private'), { recursive: true });
  await writeFile(path.join(work, 'private', 'data'), 'private data');
  await writeFile(path.join(work, 'logs', 'app.log'), 'log line\n');
  const escapeWrite = path.join(work, 'escaped.txt');
  assert.match(await callError(gw, 'write_file', { connection: 'guarded', path: `${work}/allowed/../escaped.txt`, content: 'x' }), new RegExp(`write_file ${esc(escapeWrite)}\` matches no allow rule`));
  assert.equal(existsSync(escapeWrite), false);
  const refusal = await callError(gw, 'read_file', { connection: 'guarded', path: `${work}/logs/../private/data` });
  assert.match(refusal, new RegExp(`read_file ${esc(path.join(work, 'private', 'data'))}`));
  assert.doesNotMatch(refusal, /private data/);
  // inside the allowed folder it reads; a deny rule still wins there
  assert.equal((await callOk<ReadResult>(gw, 'read_file', { connection: 'guarded', path: `${work}/logs/./app.log` })).content, 'log line\n');
  await writeFile(path.join(work, 'logs', 'secret.key'), 'k');
  assert.match(await callError(gw, 'read_file', { connection: 'guarded', path: `${work}/logs/secret.key` }), /deny rule/);
});

test('a symlink inside an allowed folder cannot lend its permission to the file it points at', async () => {
  await mkdir(path.join(work, 'logs'), { recursive: true });
  await mkdir(path.join(work, 'private'), { recursive: true });
  await writeFile(path.join(work, 'private', 'data'), 'private data');
  await symlink(path.join(work, 'private'), path.join(work, 'logs', 'link'));
  const refusal = await callError(gw, 'read_file', { connection: 'guarded', path: `${work}/logs/link/data` });
  assert.match(refusal, /resolves through a symlink/);
  assert.doesNotMatch(refusal, /private data/);
});

test('a confirm rule asks the human, and the write happens only on yes', async () => {
  await mkdir(path.join(work, 'confirm'), { recursive: true });
  const yes = path.join(work, 'confirm', 'approve-me.conf');
  await callOk(gw, 'write_file', { connection: 'guarded', path: yes, content: 'approved' });
  assert.equal(await readFile(yes, 'utf8'), 'approved');
  assert.ok(asked.some((m) => m.includes(`write_file ${yes}`)), 'the human saw the path');
  assert.ok(asked.some((m) => m.includes(`write_file: 8 bytes, sha256 ${sha256('approved')}, mode kept without setuid/setgid (0644 if new)`)), 'and what would be written');
  const no = path.join(work, 'confirm', 'other.conf');
  assert.match(await callError(gw, 'write_file', { connection: 'guarded', path: no, content: 'x' }), /declined/);
  assert.equal(existsSync(no), false);
});

// ---------------------------------------------------------------------------------------------------
// list_directory

test('list_directory lists names, types, sizes, modes and mtimes, sorted by name', async () => {
  const dir = path.join(work, 'listing');
  await mkdir(path.join(dir, 'sub'), { recursive: true });
  await writeFile(path.join(dir, 'b.txt'), '12345');
  await chmod(path.join(dir, 'b.txt'), 0o640);
  await writeFile(path.join(dir, 'a.txt'), '');
  await symlink('b.txt', path.join(dir, 'c-link'));
  const r = await callOk<ListResult>(gw, 'list_directory', { connection: 'dev1', path: `${dir}/` });
  assert.equal(r.path, dir);
  assert.equal(r.truncated, false);
  assert.deepEqual(r.entries.map((e) => [e.name, e.type]), [['a.txt', 'file'], ['b.txt', 'file'], ['c-link', 'symlink'], ['sub', 'directory']]);
  const b = r.entries.find((e) => e.name === 'b.txt')!;
  assert.deepEqual([b.size, b.mode], [5, '0640']);
  assert.ok(Math.abs(Date.parse(b.mtime) - statSync(path.join(dir, 'b.txt')).mtimeMs) < 2000, b.mtime);
  assert.match(await callError(gw, 'list_directory', { connection: 'dev1', path: path.join(dir, 'b.txt') }), /not a directory/);
  assert.match(await callError(gw, 'list_directory', { connection: 'guarded', path: dir }), /matches no allow rule/);
});

// ---------------------------------------------------------------------------------------------------
// upload_file / download_file

test('a 20 MB file goes up and comes back identical, sha256 verified on both sides, with progress', async () => {
  const original = randomBytes(20 * 1024 * 1024 + 123);
  const digest = sha256(original);
  await writeFile(path.join(staging, 'big.bin'), original);
  const remoteDir = path.join(work, 'transfers');
  await mkdir(remoteDir);
  const remote = path.join(remoteDir, 'big.bin');

  const upProgress: { progress: number; total?: number }[] = [];
  const up = (await gw.client.callTool(
    { name: 'upload_file', arguments: { connection: 'dev1', local_path: 'big.bin', remote_path: remote } },
    { onprogress: (p) => upProgress.push({ progress: p.progress, total: p.total }) },
  )) as CallToolResult;
  assert.notEqual(up.isError, true, JSON.stringify(up.content));
  const upResult = up.structuredContent as unknown as TransferResult;
  assert.deepEqual([upResult.bytes, upResult.sha256, upResult.verified], [original.length, digest, 'sha256']);
  assert.equal(upResult.local_path, path.join(await realpath(staging), 'big.bin'));
  assert.equal(sha256(await readFile(remote)), digest, 'the device has the same bytes');
  assert.deepEqual(await debris(remoteDir), []);
  assert.ok(upProgress.length >= 2, `${upProgress.length} upload progress notification(s)`);
  for (let i = 1; i < upProgress.length; i++) assert.ok(upProgress[i].progress > upProgress[i - 1].progress);
  assert.deepEqual(upProgress.at(-1), { progress: original.length, total: original.length });

  const downProgress: number[] = [];
  const down = (await gw.client.callTool(
    { name: 'download_file', arguments: { connection: 'dev1', local_path: 'back/big.bin', remote_path: remote } },
    { onprogress: (p) => downProgress.push(p.progress) },
  )) as CallToolResult;
  assert.notEqual(down.isError, true, JSON.stringify(down.content));
  const downResult = down.structuredContent as unknown as TransferResult;
  assert.deepEqual([downResult.bytes, downResult.sha256, downResult.verified], [original.length, digest, 'sha256']);
  assert.ok((await readFile(path.join(staging, 'back', 'big.bin'))).equals(original));
  assert.deepEqual(await debris(path.join(staging, 'back')), []);
  assert.ok(downProgress.length >= 2, `${downProgress.length} download progress notification(s)`);
  assert.equal(downProgress.at(-1), original.length);
});

test('uploading over an existing file keeps its mode; an empty file transfers too', async () => {
  const remote = path.join(work, 'transfers-mode.sh');
  await writeFile(remote, 'old');
  await chmod(remote, 0o755);
  await writeFile(path.join(staging, 'script.sh'), '#!/bin/sh\ntrue\n');
  await chmod(path.join(staging, 'script.sh'), 0o600);
  await callOk(gw, 'upload_file', { connection: 'dev1', local_path: path.join(staging, 'script.sh'), remote_path: remote });
  assert.equal(await readFile(remote, 'utf8'), '#!/bin/sh\ntrue\n');
  assert.equal(mode(remote), '0755');
  await writeFile(path.join(work, 'empty'), '');
  const r = await callOk<TransferResult>(gw, 'download_file', { connection: 'dev1', local_path: 'empty.out', remote_path: path.join(work, 'empty') });
  assert.deepEqual([r.bytes, r.sha256], [0, sha256('')]);
  assert.equal((await readFile(path.join(staging, 'empty.out'))).length, 0);
});

test('without sha256sum on the device, transfers are verified by size and say so', async () => {
  await writeFile(path.join(staging, 'plain.bin'), randomBytes(100_000));
  const remote = path.join(work, 'odd-plain.bin');
  const up = await callOk<TransferResult>(gw, 'upload_file', { connection: 'odd', local_path: 'plain.bin', remote_path: remote });
  assert.equal(up.verified, 'size');
  assert.equal(sha256(await readFile(remote)), up.sha256);
  const down = await callOk<TransferResult>(gw, 'download_file', { connection: 'odd', local_path: 'plain-back.bin', remote_path: remote });
  assert.equal(down.verified, 'size');
});

test('a transfer that fails verification is an error and leaves no bad file on either side', async () => {
  await writeFile(path.join(staging, 'corrupt.bin'), randomBytes(50_000));
  const remote = path.join(work, 'odd', 'corrupt.bin');
  await mkdir(path.dirname(remote), { recursive: true });
  const upError = await callError(gw, 'upload_file', { connection: 'odd', local_path: 'corrupt.bin', remote_path: remote });
  assert.match(upError, /failed verification \(sha256/);
  assert.equal(existsSync(remote), false);
  assert.deepEqual(await debris(path.dirname(remote)), []);

  await writeFile(remote, randomBytes(50_000));
  const downError = await callError(gw, 'download_file', { connection: 'odd', local_path: 'corrupt-back.bin', remote_path: remote });
  assert.match(downError, /failed verification \(sha256/);
  assert.equal(existsSync(path.join(staging, 'corrupt-back.bin')), false);
  assert.deepEqual(await debris(staging), []);
});

test('local_path outside the staging folder is refused, for uploads and downloads', async () => {
  const outside = path.join(base, 'outside');
  await writeFile(path.join(outside, 'secret'), 'gateway secret');
  await symlink(outside, path.join(staging, 'sneaky')).catch(() => undefined);
  const remote = path.join(work, 'should-not-exist');
  await writeFile(path.join(work, 'device-file'), 'device');
  for (const local of ['../outside/secret', path.join(outside, 'secret'), '/etc/passwd', 'sneaky/secret']) {
    const up = await callError(gw, 'upload_file', { connection: 'dev1', local_path: local, remote_path: remote });
    assert.match(up, /refused: local_path .*(outside the staging folder|"\.\.")/, local);
    assert.equal(existsSync(remote), false);
  }
  for (const local of ['../outside/pulled', path.join(outside, 'pulled'), 'sneaky/pulled']) {
    const down = await callError(gw, 'download_file', { connection: 'dev1', local_path: local, remote_path: path.join(work, 'device-file') });
    assert.match(down, /refused: local_path .*(outside the staging folder|"\.\.")/, local);
  }
  assert.deepEqual((await readdir(outside)).sort(), ['secret']);
});

test('the audit log records every write and transfer with paths, bytes and sha256, and never the content', async () => {
  const marker = `CONTENT-MARKER-${randomBytes(8).toString('hex')}`;
  const file = path.join(work, 'audited.txt');
  await callOk(gw, 'write_file', { connection: 'dev1', path: file, content: marker });
  await callOk(gw, 'read_file', { connection: 'dev1', path: file });
  await writeFile(path.join(staging, 'audited-up.txt'), marker);
  await callOk(gw, 'upload_file', { connection: 'dev1', local_path: 'audited-up.txt', remote_path: path.join(work, 'audited-up.txt') });
  await callOk(gw, 'download_file', { connection: 'dev1', local_path: 'audited-down.txt', remote_path: file });

  const text = await readFile(gw.auditPath, 'utf8');
  assert.equal(text.includes(marker), false, 'file content leaked into the audit log');
  assert.equal(text.includes(Buffer.from(marker).toString('base64')), false, 'base64 content leaked into the audit log');
  const records = text.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
  const transfers = records.filter((r) => r.event === 'file_transfer' && !r.error);
  const digest = sha256(marker);
  const find = (op: string, key: string, value: string): Record<string, unknown> | undefined => transfers.find((r) => r.op === op && r[key] === value);
  const write = find('write', 'path', file);
  assert.ok(write, 'a file_transfer record for the write');
  assert.deepEqual([write.connection, write.bytes, write.sha256], ['dev1', marker.length, digest]);
  const up = find('upload', 'remote_path', path.join(work, 'audited-up.txt'));
  assert.ok(up && up.local_path && up.sha256 === digest && up.bytes === marker.length && up.verified === 'sha256');
  const down = find('download', 'remote_path', file);
  assert.ok(down && String(down.local_path).endsWith('audited-down.txt') && down.sha256 === digest);
  const read = records.find((r) => r.event === 'file_read' && r.path === file);
  assert.ok(read && read.sha256 === digest && read.bytes === marker.length);
  // the tool_call record keeps the size of write_file's content, not the content
  const call = records.find((r) => r.event === 'tool_call' && r.tool === 'write_file' && r.path === file);
  assert.equal(call?.content_bytes, marker.length);
  // refusals are audited as policy denials
  assert.ok(records.some((r) => r.event === 'policy_denial' && r.connection === 'ro' && r.rule === 'read_only'));
  // and the hash chain still holds
  const verified = await promisify(execFile)(process.execPath, [CLI, 'audit', 'verify', gw.auditPath]);
  assert.match(verified.stdout + verified.stderr, /ok|verified/i);
});

test('hostile names, modes and overwrites: names are escaped in the summary, setuid is refused, downloads never clobber', async () => {
  const odd = path.join(work, 'odd-names');
  await mkdir(odd, { recursive: true });
  await writeFile(path.join(odd, 'a\n- 0644 0 2026 INJECTED-LINE'), '');
  await writeFile(path.join(odd, 'b\x1b[31mRED\x07'), '');
  const listed = await gw.client.callTool({ name: 'list_directory', arguments: { connection: 'dev1', path: odd } });
  const text = (listed.content as { text: string }[])[0]!.text;
  assert.equal(text.split('\n').length, 3, `one line per entry plus the header: ${JSON.stringify(text)}`);
  assert.ok(text.includes('a\\x0a- 0644 0 2026 INJECTED-LINE') && text.includes('b\\x1b[31mRED\\x07'), text);
  assert.ok(!/[\u0000-\u0009\u000b-\u001f]/.test(text), 'no raw control characters');
  const names = (listed.structuredContent as ListResult).entries.map((e) => e.name);
  assert.deepEqual(names, ['a\n- 0644 0 2026 INJECTED-LINE', 'b\x1b[31mRED\x07'], 'structuredContent keeps the exact names');

  assert.match(await callError(gw, 'write_file', { connection: 'dev1', path: `${path.join(work, 'trail.txt')}/`, content: 'x' }), /ends with "\/", so it names a folder/);
  assert.equal(existsSync(path.join(work, 'trail.txt')), false);

  const suid = path.join(work, 'suid.sh');
  assert.match(await callError(gw, 'write_file', { connection: 'dev1', path: suid, content: '#!/bin/sh\n', mode: '4755' }), /setuid and setgid bits/);
  assert.equal(existsSync(suid), false);

  // A name as long as the filesystem allows is written (its temp name is shortened to fit).
  const longName = path.join(work, 'n'.repeat(250));
  await callOk(gw, 'write_file', { connection: 'dev1', path: longName, content: 'long' });
  assert.equal(await readFile(longName, 'utf8'), 'long');
  assert.deepEqual(await debris(work), []);

  const remote = path.join(work, 'fresh.txt');
  await writeFile(remote, 'REMOTE');
  await writeFile(path.join(staging, 'keep.txt'), 'PRECIOUS');
  assert.match(await callError(gw, 'download_file', { connection: 'dev1', local_path: 'keep.txt', remote_path: remote }), /already exists in the staging folder; pass overwrite: true/);
  assert.equal(await readFile(path.join(staging, 'keep.txt'), 'utf8'), 'PRECIOUS');
  await callOk(gw, 'download_file', { connection: 'dev1', local_path: 'keep.txt', remote_path: remote, overwrite: true });
  assert.equal(await readFile(path.join(staging, 'keep.txt'), 'utf8'), 'REMOTE');
  assert.deepEqual(await debris(staging), []);
});

test('the file tools are listed with schemas and honest annotations', async () => {
  const { tools } = await gw.client.listTools();
  const byName = new Map(tools.map((t) => [t.name, t]));
  for (const name of ['read_file', 'write_file', 'list_directory', 'upload_file', 'download_file']) {
    const tool = byName.get(name);
    assert.ok(tool?.outputSchema, `${name} has an outputSchema`);
  }
  assert.equal(byName.get('read_file')?.annotations?.readOnlyHint, true);
  assert.equal(byName.get('list_directory')?.annotations?.readOnlyHint, true);
  assert.equal(byName.get('write_file')?.annotations?.destructiveHint, true);
  assert.equal(byName.get('upload_file')?.annotations?.destructiveHint, true);
  // inputs are strict: an unknown field is refused rather than ignored
  const result = (await gw.client.callTool({ name: 'read_file', arguments: { connection: 'dev1', path: '/etc/hostname', follow: true } })) as CallToolResult;
  assert.equal(result.isError, true);
});
