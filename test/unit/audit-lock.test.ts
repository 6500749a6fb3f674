// One writer per audit log: a second writer is refused with the reason, a lock left by a gateway that died is
// taken over (also when its PID now belongs to another process), and closing the log frees it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile, access, utimes } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AuditLog } from '../../src/audit/log.js';

async function tempLog(): Promise<{ dir: string; file: string; lock: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mcpgw-lock-'));
  const file = path.join(dir, 'audit.log');
  return { dir, file, lock: `${file}.lock` };
}

const exists = (file: string): Promise<boolean> => access(file).then(() => true, () => false);

function startTime(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
}

test('a second writer on the same audit log is refused with the reason and the fix; closing frees it', async () => {
  const { dir, file, lock } = await tempLog();
  try {
    const first = await AuditLog.open(file, { fsync: 'never' });
    await first.append({ event: 'one' });
    await assert.rejects(AuditLog.open(file, { fsync: 'never' }), (err: Error) => {
      assert.match(err.message, /is already being written by this gateway/);
      assert.match(err.message, /would fork its hash chain/);
      assert.match(err.message, /its own "gateway\.audit_log"/);
      return true;
    });
    assert.equal(await exists(lock), true, 'the refused writer leaves the lock alone');
    await first.close();
    assert.equal(await exists(lock), false, 'closing the log removes the lock');

    const second = await AuditLog.open(file, { fsync: 'never' });
    assert.equal((await second.append({ event: 'two' })).seq, 2, 'the chain continues');
    await second.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a lock held by another running process names its PID; once that process is gone the lock is taken over', async () => {
  const { dir, file, lock } = await tempLog();
  const other = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    await once(other, 'spawn');
    await writeFile(lock, `${other.pid} ${startTime(other.pid!)}\n`);
    await assert.rejects(AuditLog.open(file, { fsync: 'never' }), new RegExp(`another gateway \\(pid ${other.pid}\\).*If no gateway is running, delete ${lock.replace(/[.]/g, '\\.')}`));

    other.kill('SIGKILL');
    await once(other, 'exit');
    const log = await AuditLog.open(file, { fsync: 'never' });
    assert.match(await readFile(lock, 'utf8'), new RegExp(`^${process.pid} `), 'the lock now names this process');
    await log.close();
  } finally {
    other.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});

test('a stale lock is taken over: PID reused by another process, or contents that are not a lock', async () => {
  const { dir, file, lock } = await tempLog();
  try {
    // This process's PID with another start time: the gateway that wrote it is gone and the PID was reused.
    const old = new Date(Date.now() - 60_000);
    for (const stale of [`${process.pid} 1\n`, 'garbage\n', '']) {
      await writeFile(lock, stale);
      await utimes(lock, old, old); // an empty lock is only stale once it is not brand new
      const log = await AuditLog.open(file, { fsync: 'never' });
      await log.append({ event: 'after stale lock' });
      await log.close();
      assert.equal(await exists(lock), false);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an empty lock that was just created belongs to a gateway that is starting: it is not taken over', async () => {
  const { dir, file, lock } = await tempLog();
  try {
    await writeFile(lock, '');
    await assert.rejects(AuditLog.open(file, { fsync: 'never' }), /being locked by another gateway that is starting right now/);
    assert.equal(await exists(lock), true);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a log that fails to open does not keep its lock', async () => {
  const { dir, file, lock } = await tempLog();
  try {
    await writeFile(file, '{"not": "a record"}\n');
    await assert.rejects(AuditLog.open(file, { fsync: 'never' }));
    assert.equal(await exists(lock), false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
