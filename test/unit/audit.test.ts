import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AuditLog,
  GENESIS_HASH,
  canonicalJson,
  computeRecordHash,
  readAuditRecords,
  readLastRecord,
  redactFields,
  redactText,
  verifyAuditFiles,
  type AuditLogOptions,
  type AuditRecord,
} from '../../src/audit/index.js';

// ---------------------------------------------------------------------------------------------
// helpers

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'audit-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A closed log at <dir>/audit.log holding `count` command_end records. */
async function writeLog(dir: string, count: number, opts: AuditLogOptions = {}): Promise<string> {
  const path = join(dir, 'audit.log');
  const log = await AuditLog.open(path, opts);
  for (let i = 1; i <= count; i += 1) {
    await log.append({ event: 'command_end', connection: i % 2 ? 'edge-a' : 'edge-b', exit: 0, duration_ms: i });
  }
  await log.close();
  return path;
}

async function readLines(path: string): Promise<string[]> {
  const text = await readFile(path, 'utf8');
  return text.split('\n').filter((line) => line !== '');
}

async function writeLines(path: string, lines: string[]): Promise<void> {
  await writeFile(path, lines.map((line) => `${line}\n`).join(''));
}

async function readRecords(path: string): Promise<AuditRecord[]> {
  return (await readLines(path)).map((line) => JSON.parse(line) as AuditRecord);
}

/** Re-links a record list the way someone who knows the format (but can't hide it) would. */
function rehashChain(records: AuditRecord[]): AuditRecord[] {
  let prev = GENESIS_HASH;
  return records.map((record) => {
    const relinked = { ...record, prev };
    relinked.hash = computeRecordHash(relinked);
    prev = relinked.hash;
    return relinked;
  });
}

function assertBroken(result: Awaited<ReturnType<typeof verifyAuditFiles>>, expected: { line: number; seq?: number; reason: RegExp; file?: string }) {
  assert.equal(result.ok, false, 'verify should have found the tampering');
  if (result.ok) return;
  assert.equal(result.line, expected.line, result.reason);
  if (expected.seq !== undefined) assert.equal(result.seq, expected.seq, result.reason);
  if (expected.file !== undefined) assert.equal(result.file, expected.file, result.reason);
  assert.match(result.reason, expected.reason);
}

// ---------------------------------------------------------------------------------------------
// the chain

test('every record links to the one before it, and verify accepts the chain', async (t) => {
  const path = await writeLog(await tempDir(t), 5);
  const records = await readRecords(path);

  assert.deepEqual(records.map((r) => r.seq), [1, 2, 3, 4, 5]);
  assert.equal(records[0]!.prev, GENESIS_HASH);
  for (let i = 1; i < records.length; i += 1) assert.equal(records[i]!.prev, records[i - 1]!.hash);
  for (const record of records) {
    assert.match(record.hash, /^[0-9a-f]{64}$/);
    assert.equal(computeRecordHash(record), record.hash);
    assert.ok(!Number.isNaN(Date.parse(record.ts)));
  }
  // Field order on disk: seq, ts, event, ...fields, prev, hash
  assert.deepEqual(Object.keys(records[0]!), ['seq', 'ts', 'event', 'connection', 'exit', 'duration_ms', 'prev', 'hash']);
  assert.deepEqual(await verifyAuditFiles([path]), { ok: true, records: 5, files: 1, firstSeq: 1, lastSeq: 5, lastHash: (await readLastRecord(path))!.hash });

  // An anchor (a head noted earlier) must still be in the chain with the same hash.
  const third = records[2]!;
  assert.equal((await verifyAuditFiles([path], { anchor: { seq: 3, hash: third.hash } })).ok, true);
  const rewritten = await verifyAuditFiles([path], { anchor: { seq: 3, hash: 'f'.repeat(64) } });
  assert.ok(!rewritten.ok && /record seq 3 has hash [0-9a-f]{64}, but the anchor says f{64}: the chain was rewritten/.test(rewritten.reason), JSON.stringify(rewritten));
  const cut = await verifyAuditFiles([path], { anchor: { seq: 9, hash: third.hash } });
  assert.ok(!cut.ok && /ends at seq 5, but the anchor names seq 9: records were cut from the end/.test(cut.reason), JSON.stringify(cut));
});

test('append resolves with the record that is on disk', async (t) => {
  const path = join(await tempDir(t), 'audit.log');
  const log = await AuditLog.open(path);
  const record = await log.append({ event: 'gateway_start', version: '0.1.0' });
  assert.deepEqual(await readRecords(path), [record]);
  assert.deepEqual(log.lastRecord, { seq: 1, hash: record.hash });
  await log.close();
});

test('the hash does not depend on key order (canonical JSON)', () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: null } }), '{"a":{"c":null,"d":[1,{"y":2,"z":1}]},"b":1}');
  assert.equal(canonicalJson({ a: 1, b: 2 }), canonicalJson({ b: 2, a: 1 }));
  assert.equal(canonicalJson({ a: undefined, b: 'x' }), '{"b":"x"}');
});

test('a restarted gateway continues the same chain', async (t) => {
  const dir = await tempDir(t);
  const path = await writeLog(dir, 3);
  const log = await AuditLog.open(path);
  const next = await log.append({ event: 'gateway_start' });
  await log.close();

  const records = await readRecords(path);
  assert.equal(next.seq, 4);
  assert.equal(next.prev, records[2]!.hash);
  assert.ok(next.ts >= records[2]!.ts);
  assert.deepEqual(await verifyAuditFiles([path]), { ok: true, records: 4, files: 1, firstSeq: 1, lastSeq: 4, lastHash: (await readLastRecord(path))!.hash });
});

test('200 concurrent appends get seq 1..200 exactly once each, in file order', async (t) => {
  const path = join(await tempDir(t), 'audit.log');
  const log = await AuditLog.open(path);
  const appended = await Promise.all(
    Array.from({ length: 200 }, (_, i) => log.append({ event: 'command_start', connection: `edge-${i}`, n: i })),
  );
  await log.close();

  assert.deepEqual(appended.map((r) => r.seq).sort((a, b) => a - b), Array.from({ length: 200 }, (_, i) => i + 1));
  // Appends called in order are written in order.
  assert.deepEqual(appended.map((r) => r.n), Array.from({ length: 200 }, (_, i) => i));
  const onDisk = await readRecords(path);
  assert.deepEqual(onDisk.map((r) => r.seq), Array.from({ length: 200 }, (_, i) => i + 1));
  assert.deepEqual(await verifyAuditFiles([path]), { ok: true, records: 200, files: 1, firstSeq: 1, lastSeq: 200, lastHash: (await readLastRecord(path))!.hash });
});

test('parent folders are created and the file is readable by its owner only', async (t) => {
  const path = join(await tempDir(t), 'deep', 'er', 'audit.log');
  const log = await AuditLog.open(path, { fsync: 'never' });
  await log.append({ event: 'gateway_start' });
  await log.close();
  assert.equal((await stat(path)).mode & 0o777, 0o600);
});

test('a closed log refuses appends, and the log owns seq/ts/prev/hash', async (t) => {
  const path = join(await tempDir(t), 'audit.log');
  const log = await AuditLog.open(path);
  await assert.rejects(log.append({ event: 'x', seq: 99 }), /may not set "seq"/);
  await assert.rejects(log.append({ event: '' }), /non-empty string "event"/);
  await log.close();
  await assert.rejects(log.append({ event: 'gateway_stop' }), /audit log .*audit\.log is closed/);
});

// ---------------------------------------------------------------------------------------------
// rotation and history

test('rotation keeps one chain across files, and history reads across them', async (t) => {
  const dir = await tempDir(t);
  const path = await writeLog(dir, 40, { maxBytes: 1200 });

  const files = (await readdir(dir)).sort();
  assert.ok(files.length >= 3, `expected at least 3 files, got ${files.join(', ')}`);
  for (const file of files) assert.ok((await stat(join(dir, file))).size <= 1200, `${file} is over maxBytes`);
  // The first record of the newer file continues from the last record of the older one.
  const older = await readRecords(`${path}.1`);
  const newer = await readRecords(path);
  assert.equal(newer[0]!.prev, older.at(-1)!.hash);
  assert.equal(newer[0]!.seq, older.at(-1)!.seq + 1);

  assert.deepEqual(await verifyAuditFiles([path]), { ok: true, records: 40, files: files.length, firstSeq: 1, lastSeq: 40, lastHash: (await readLastRecord(path))!.hash });
  // Given explicitly, files are checked in the order given (oldest first).
  assert.equal((await verifyAuditFiles([`${path}.2`, `${path}.1`, path])).ok, true);
  assert.equal((await verifyAuditFiles([`${path}.1`, `${path}.2`, path])).ok, false);

  const all = await readAuditRecords(path);
  assert.deepEqual(all.map((r) => r.seq), Array.from({ length: 40 }, (_, i) => i + 1));
  const lastFiveOfA = await readAuditRecords(path, { connection: 'edge-a', limit: 5 });
  assert.deepEqual(lastFiveOfA.map((r) => r.seq), [31, 33, 35, 37, 39]);
  const earlyOfB = await readAuditRecords(path, { connection: 'edge-b', limit: 100 });
  assert.equal(earlyOfB.length, 20);
  assert.equal(earlyOfB[0]!.seq, 2, 'history reaches into the oldest rotated file');
  assert.deepEqual(await readAuditRecords(path, { events: ['gateway_start'] }), []);
  assert.deepEqual(await readAuditRecords(path, { limit: 0 }), []);
});

test('history is read from the end of the file: same records as a full read, across chunk boundaries', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'audit.log');
  const log = await AuditLog.open(path, { fsync: 'never' });
  // Records of very different sizes (some longer than the 64 KiB read chunk) so lines straddle chunk edges.
  for (let i = 1; i <= 300; i++) {
    await log.append({ event: 'command_end', connection: i % 3 === 0 ? 'edge "odd"' : `dev${i % 7}`, command: 'x'.repeat((i * 7919) % 3000 + (i % 50 === 0 ? 70_000 : 0)) });
  }
  await log.close();
  const full = await readRecords(path);
  for (const limit of [1, 7, 64, 299, 300, 1000]) {
    const got = await readAuditRecords(path, { limit });
    assert.deepEqual(got.map((r) => r.seq), full.slice(-limit).map((r) => r.seq), `limit ${limit}`);
  }
  const odd = await readAuditRecords(path, { connection: 'edge "odd"', limit: 20 });
  assert.deepEqual(odd.map((r) => r.seq), full.filter((r) => r.connection === 'edge "odd"').slice(-20).map((r) => r.seq));
  assert.deepEqual(odd.at(-1), full.at(-1), 'records come back whole');
});

test('a restart after rotation continues the chain from the rotated file', async (t) => {
  const dir = await tempDir(t);
  const path = await writeLog(dir, 12, { maxBytes: 1200 });
  await rm(path); // as if the gateway stopped right after renaming audit.log to audit.log.1
  const log = await AuditLog.open(path, { maxBytes: 1200 });
  const record = await log.append({ event: 'gateway_start' });
  await log.close();
  assert.equal(record.seq, (await readRecords(`${path}.1`)).at(-1)!.seq + 1);
  const result = await verifyAuditFiles([path]);
  assert.equal(result.ok, true, JSON.stringify(result));
});

test('rotation drops files beyond keep, and what remains still verifies', async (t) => {
  const dir = await tempDir(t);
  const path = await writeLog(dir, 60, { maxBytes: 1000, keep: 2 });
  assert.deepEqual((await readdir(dir)).sort(), ['audit.log', 'audit.log.1', 'audit.log.2']);
  const result = await verifyAuditFiles([path]);
  assert.equal(result.ok, true, JSON.stringify(result));
  assert.ok(result.ok && result.firstSeq! > 1 && result.lastSeq === 60);
});

// ---------------------------------------------------------------------------------------------
// tampering

test('verify: an edited field is a hash mismatch on that record', async (t) => {
  const path = await writeLog(await tempDir(t), 10);
  const lines = await readLines(path);
  lines[4] = lines[4]!.replace('"exit":0', '"exit":1');
  await writeLines(path, lines);
  assertBroken(await verifyAuditFiles([path]), {
    line: 5,
    seq: 5,
    reason: /^record seq 5 \(line 5 of audit\.log\): hash mismatch — the record was edited after it was written$/,
  });
});

test('verify: a deleted line is a removed record', async (t) => {
  const path = await writeLog(await tempDir(t), 10);
  const lines = await readLines(path);
  lines.splice(4, 1);
  await writeLines(path, lines);
  assertBroken(await verifyAuditFiles([path]), { line: 5, seq: 6, reason: /seq jumps from 4 to 6 — record seq 5 was removed/ });
});

test('verify: two swapped lines are reordered records', async (t) => {
  const path = await writeLog(await tempDir(t), 10);
  const lines = await readLines(path);
  [lines[3], lines[4]] = [lines[4]!, lines[3]!];
  await writeLines(path, lines);
  assertBroken(await verifyAuditFiles([path]), { line: 4, seq: 5, reason: /out of order — record seq 4 should come here but appears later \(line 5 of audit\.log\); records were reordered/ });
});

test('verify: a truncated last line is reported as cut short', async (t) => {
  const path = await writeLog(await tempDir(t), 10);
  await truncate(path, (await stat(path)).size - 15);
  assertBroken(await verifyAuditFiles([path]), { line: 10, reason: /line 10 of audit\.log is cut short .*truncated/ });
});

test('verify: a deleted rotated file in the middle is named', async (t) => {
  const dir = await tempDir(t);
  const path = await writeLog(dir, 40, { maxBytes: 1200 });
  assert.ok(existsSync(`${path}.3`), 'the test needs at least three rotated files');
  const firstOfNewer = (await readRecords(`${path}.1`))[0]!;
  await rm(`${path}.2`);
  assertBroken(await verifyAuditFiles([path]), {
    file: `${path}.1`,
    line: 1,
    seq: firstOfNewer.seq,
    reason: /records seq \d+–\d+ were removed; rotated file audit\.log\.2 is missing/,
  });
});

test('verify: a changed hash is named as such', async (t) => {
  const path = await writeLog(await tempDir(t), 10);
  const lines = await readLines(path);
  lines[4] = lines[4]!.replace(/"hash":"[0-9a-f]{64}"/, `"hash":"${'ab'.repeat(32)}"`);
  await writeLines(path, lines);
  assertBroken(await verifyAuditFiles([path]), { line: 5, seq: 5, reason: /hash mismatch — its "hash" field was changed/ });
});

test('verify: an edited record with a recomputed hash breaks the next link', async (t) => {
  const path = await writeLog(await tempDir(t), 10);
  const records = await readRecords(path);
  const forged = { ...records[4]!, exit: 1 };
  forged.hash = computeRecordHash(forged);
  records[4] = forged;
  await writeLines(path, records.map((r) => JSON.stringify(r)));
  assertBroken(await verifyAuditFiles([path]), { line: 6, seq: 6, reason: /"prev" does not match the hash of record seq 5 \(line 5 of audit\.log\)/ });
});

test('verify: a fully re-linked chain still may not go back in time', async (t) => {
  const path = await writeLog(await tempDir(t), 10);
  const records = await readRecords(path);
  records[6] = { ...records[6]!, ts: '2001-01-01T00:00:00.000Z' };
  await writeLines(path, rehashChain(records).map((r) => JSON.stringify(r)));
  assertBroken(await verifyAuditFiles([path]), { line: 7, seq: 7, reason: /timestamp 2001-01-01T00:00:00\.000Z is earlier than that of record seq 6/ });
});

test('verify: a missing log is a failure, not an empty success', async (t) => {
  const result = await verifyAuditFiles([join(await tempDir(t), 'nothing.log')]);
  assert.equal(result.ok, false);
  assert.match(!result.ok ? result.reason : '', /no audit log found/);
});

// ---------------------------------------------------------------------------------------------
// refusing to continue a damaged file

test('open refuses a file whose last line was cut short, naming the file and audit verify', async (t) => {
  const path = await writeLog(await tempDir(t), 3);
  await truncate(path, (await stat(path)).size - 7);
  await assert.rejects(AuditLog.open(path), (err: Error) => {
    assert.equal(err.name, 'AuditLogError');
    assert.ok(err.message.includes(path), err.message);
    assert.match(err.message, /last line is incomplete/);
    assert.match(err.message, /audit verify/);
    return true;
  });
});

test('open refuses a file whose last record was edited', async (t) => {
  const path = await writeLog(await tempDir(t), 3);
  const lines = await readLines(path);
  lines[2] = lines[2]!.replace('"exit":0', '"exit":7');
  await writeLines(path, lines);
  await assert.rejects(AuditLog.open(path), /last record \(seq 3\) does not match its hash.*audit verify/);
});

test('a failed write rejects the append with a clear error', { skip: !existsSync('/dev/full') && 'needs /dev/full' }, async () => {
  const log = await AuditLog.open('/dev/full', { fsync: 'never' });
  await assert.rejects(log.append({ event: 'gateway_start' }), /audit log \/dev\/full: could not write record seq 1: ENOSPC.*NOT recorded/);
  await log.close();
});

// ---------------------------------------------------------------------------------------------
// redaction

test('keys, tokens, passwords, input, output and env values never reach the file', async (t) => {
  const path = join(await tempDir(t), 'audit.log');
  const privateKey = ['-----BEGIN OPENSSH PRIVATE KEY-----', 'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ', '-----END OPENSSH PRIVATE KEY-----'].join('\n');
  const secrets = {
    keyBody: 'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ',
    bearer: 'tok_live_9f8e7d6c5b4a',
    password: 'hunter2-password',
    stdin: 'piped-secret-input',
    content: 'file-content-should-not-appear',
    stdout: 'root:x:0:0:root-output-line',
    stderr: 'warning-from-stderr-stream',
    envValue: 'env-value-s3cr3t',
    urlPassword: 'url-pass-w0rd',
    inlinePassword: 'inline-pw-123',
    github: 'ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789',
  };
  const log = await AuditLog.open(path);
  await log.append({
    event: 'tool_call',
    tool: 'run_command',
    client: 'http:ops-team',
    authorization: `Bearer ${secrets.bearer}`,
    error: `curl -H "Authorization: Bearer ${secrets.bearer}" https://admin:${secrets.urlPassword}@example.com/`,
    note: privateKey,
    password: secrets.password,
    stdin: secrets.stdin,
    env: { DEPLOY_KEY: secrets.envValue, PATH: '/usr/bin' },
    nested: { headers: { Authorization: `token ${secrets.github}` }, args: [`DB_PASSWORD=${secrets.inlinePassword}`] },
  });
  await log.append({ event: 'file_transfer', path: '/etc/app.conf', content: secrets.content, bytes: 30 });
  const end = await log.append({ event: 'command_end', exit: 0, stdout: secrets.stdout, stderr: Buffer.from(secrets.stderr) });
  await log.close();

  const raw = await readFile(path, 'utf8');
  for (const [name, secret] of Object.entries(secrets)) assert.ok(!raw.includes(secret), `${name} leaked into the audit log`);
  assert.ok(!raw.includes('PRIVATE KEY'));

  const [call, transfer] = await readRecords(path);
  assert.deepEqual(call!.env, ['DEPLOY_KEY', 'PATH'], 'env keeps variable names only');
  assert.equal(call!.password, '[redacted]');
  assert.equal(call!.note, '[redacted]');
  assert.deepEqual(call!.stdin, { bytes: Buffer.byteLength(secrets.stdin) });
  assert.match(call!.error as string, /^curl -H "Authorization: Bearer \[redacted\]" https:\/\/admin:\[redacted\]@example\.com\/$/, 'free text (not a command) is masked');
  assert.deepEqual(transfer!.content, { bytes: Buffer.byteLength(secrets.content) });
  assert.equal(transfer!.path, '/etc/app.conf');
  assert.equal(transfer!.bytes, 30);
  assert.deepEqual(end.stdout, { bytes: Buffer.byteLength(secrets.stdout), sha256: (await import('node:crypto')).createHash('sha256').update(secrets.stdout).digest('hex') });
  assert.equal((end.stderr as { bytes: number }).bytes, Buffer.byteLength(secrets.stderr));
  assert.deepEqual(await verifyAuditFiles([path]), { ok: true, records: 3, files: 1, firstSeq: 1, lastSeq: 3, lastHash: (await readLastRecord(path))!.hash });
});

test('redaction keeps what an auditor needs: names, counts, digests, flags', async (t) => {
  const path = join(await tempDir(t), 'audit.log');
  const log = await AuditLog.open(path);
  const digest = 'a'.repeat(64);
  const record = await log.append({
    event: 'command_end',
    connection: 'edge-a',
    command: 'systemctl status nginx',
    exit: 3,
    signal: null,
    duration_ms: 12,
    stdout: { bytes: 10, sha256: digest },
    stdout_total_bytes: 10,
    stderr_truncated: false,
    at: new Date('2024-05-01T00:00:00Z'),
    error: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
    ignored: undefined,
  });
  await log.close();
  assert.equal(record.command, 'systemctl status nginx');
  assert.deepEqual(record.stdout, { bytes: 10, sha256: digest });
  assert.equal(record.stdout_total_bytes, 10);
  assert.equal(record.stderr_truncated, false);
  assert.equal(record.signal, null);
  assert.equal(record.at, '2024-05-01T00:00:00.000Z');
  assert.deepEqual(record.error, { name: 'Error', message: 'connect ECONNREFUSED', code: 'ECONNREFUSED' });
  assert.ok(!('ignored' in record));
});

test('secrets inside a command line are masked without changing the command around them', () => {
  assert.equal(
    redactText('mysql --password hunter2; PASSWORD=x ./run && curl -u admin:pw1@ https://bot:s3cret@h/ | jq'),
    'mysql --password [redacted]; PASSWORD=[redacted] ./run && curl -u admin:pw1@ https://bot:[redacted]@h/ | jq',
  );
  assert.equal(redactText('Permission denied (publickey,password).'), 'Permission denied (publickey,password).');
  assert.equal(redactText('x -----BEGIN RSA PRIVATE KEY----- y'), '[redacted]');
  assert.equal(redactText('Authorization: Bearer abc.def-123'), 'Authorization: Bearer [redacted]');
});

test('a non-durable record is in the file when append resolves, keeps its order, and sync/close make it durable', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'audit.log');
  const log = await AuditLog.open(path, { fsync: 'always' });
  await log.append({ event: 'command_start', connection: 'a' }, { durable: false });
  // Visible to any reader (it is in the OS) before the command would be sent.
  assert.equal((await readRecords(path)).at(-1)?.event, 'command_start');
  const concurrent = [
    log.append({ event: 'tool_call', n: 1 }, { durable: false }),
    log.append({ event: 'command_end', n: 2 }),
    log.append({ event: 'tool_call', n: 3 }, { durable: false }),
  ];
  await Promise.all(concurrent);
  await log.sync();
  await log.append({ event: 'after_sync' }, { durable: false });
  await log.close();
  const records = await readRecords(path);
  assert.deepEqual(records.map((r) => r.event), ['command_start', 'tool_call', 'command_end', 'tool_call', 'after_sync']);
  assert.deepEqual(await verifyAuditFiles([path]), { ok: true, records: 5, files: 1, firstSeq: 1, lastSeq: 5, lastHash: (await readLastRecord(path))!.hash });
});

test('a field longer than any command is kept in part, with its size and digest; what is kept is still redacted', () => {
  const long = `PASSWORD=hunter2 ${'x'.repeat(200_000)}`;
  const stored = redactText(long);
  assert.equal(stored, `PASSWORD=[redacted] ${'x'.repeat(200_000)}`, 'redactText itself keeps the text whole');
  const connection = String(redactFields({ event: 'tool_call', connection: long }).connection);
  assert.ok(connection.startsWith('PASSWORD=[redacted] xxx'));
  assert.match(connection, /… \[200017 bytes in all, sha256 [0-9a-f]{64}\]$/);
  assert.ok(connection.length < 66_000);
});
