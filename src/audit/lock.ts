// One writer per audit log. Two gateways appending to the same file would each continue the chain from their own
// last record and fork it, so a second gateway (a second MCP client started with the same config, say) is refused
// with the reason instead. The lock is a file beside the log naming the writer's PID and that process's start
// time, so a lock left by a killed gateway is recognised as stale even after its PID has been reused.
import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';

const FRESH_LOCK_MS = 2000;

interface LockOwner {
  pid: number;
  /** Process start time in clock ticks since boot (/proc/PID/stat field 22); absent where /proc is not. */
  started?: string;
}

export class WriterLockError extends Error {
  constructor(
    message: string,
    readonly lockPath: string,
  ) {
    super(message);
    this.name = 'WriterLockError';
  }
}

/** The start time of a running process, or undefined if it is not running (or /proc can't tell). */
function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (the command name) may hold spaces and parentheses: count fields after its closing parenthesis.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function isRunning(owner: LockOwner): boolean {
  const started = owner.started === undefined ? undefined : processStartTime(owner.pid);
  if (started !== undefined) return started === owner.started;
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, but someone else's
  }
}

function parseOwner(text: string): LockOwner | undefined {
  const [pid, started] = text.trim().split(/\s+/);
  const parsed = Number(pid);
  if (!Number.isSafeInteger(parsed) || parsed <= 0) return undefined;
  return { pid: parsed, started: started || undefined };
}

export class WriterLock {
  private held = true;
  private readonly releaseOnExit = (): void => this.release();

  private constructor(readonly lockPath: string) {
    // A gateway that exits without closing its log (process.exit, an uncaught error) still frees it.
    process.once('exit', this.releaseOnExit);
  }

  /** Takes the lock for `file`, or throws a WriterLockError naming the gateway that holds it. */
  static acquire(file: string): WriterLock {
    const lockPath = `${file}.lock`;
    const self: LockOwner = { pid: process.pid, started: processStartTime(process.pid) };
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fd = openSync(lockPath, 'wx', 0o600);
        try {
          writeSync(fd, `${self.pid} ${self.started ?? ''}\n`);
        } finally {
          closeSync(fd);
        }
        return new WriterLock(lockPath);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      let owner: LockOwner | undefined;
      let age: number;
      try {
        owner = parseOwner(readFileSync(lockPath, 'utf8'));
        age = Date.now() - statSync(lockPath).mtimeMs;
      } catch {
        continue; // removed meanwhile: try again
      }
      // A lock this young without an owner in it is one another gateway has just created and not yet written.
      if (!owner && age < FRESH_LOCK_MS) {
        throw new WriterLockError(`audit log ${file} is being locked by another gateway that is starting right now; if none is, delete ${lockPath}.`, lockPath);
      }
      if (owner && isRunning(owner)) {
        const who = owner.pid === process.pid ? 'this gateway' : `another gateway (pid ${owner.pid})`;
        throw new WriterLockError(
          `audit log ${file} is already being written by ${who}. Two gateways must not share one audit log: ` +
            `each would fork its hash chain. Stop the other gateway, give this one its own "gateway.audit_log", ` +
            `or let several clients share one gateway over --http. If no gateway is running, delete ${lockPath}.`,
          lockPath,
        );
      }
      // Left by a gateway that is gone (or unreadable garbage): take it over.
      try {
        unlinkSync(lockPath);
      } catch {
        /* someone else removed it first */
      }
    }
    throw new WriterLockError(`could not take the audit log lock ${lockPath}: it keeps changing hands. Is another gateway starting?`, lockPath);
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    process.off('exit', this.releaseOnExit);
    try {
      unlinkSync(this.lockPath);
    } catch {
      /* already gone */
    }
  }
}
