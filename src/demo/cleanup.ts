// Everything the demo starts or creates is registered here and undone once, in reverse order: at the end of
// a run, on Ctrl-C/SIGTERM, or (last resort, synchronously) when the process exits.
import { rmSync } from 'node:fs';

/** Thrown at a checkpoint once a signal arrived: stop building, let cleanup undo what exists. */
export class Interrupted extends Error {}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

type Task = { label: string; run: () => Promise<void>; sync?: () => void };

export class Cleanup {
  private tasks: Task[] = [];
  private running?: Promise<number>;
  private signalled?: NodeJS.Signals;
  private waiters: ((signal: NodeJS.Signals) => void)[] = [];
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    if (this.signalled) {
      process.stdout.write(`\n(${signal} again: still cleaning up, one moment)\n`);
      return;
    }
    this.signalled = signal;
    for (const wake of this.waiters.splice(0)) wake(signal);
  };
  private readonly onExit = (): void => {
    // Only reached if run() did not finish: kill what we can without waiting.
    for (const task of this.tasks.reverse()) {
      try {
        task.sync?.();
      } catch {
        /* best effort */
      }
    }
  };

  constructor() {
    // SIGHUP too: the sshds run in their own process group, so a closed terminal would not reach them.
    for (const signal of SIGNALS) process.on(signal, this.onSignal);
    process.on('exit', this.onExit);
  }

  /** Registers an undo step; `sync` is the last-resort version for process exit. Once cleanup has begun
   *  (an interrupt while the fleet was still being built), the step runs at once. */
  add(label: string, run: () => Promise<void>, sync?: () => void): void {
    if (this.running) {
      void this.running.then(run).catch(() => undefined);
      return;
    }
    this.tasks.push({ label, run, sync });
  }

  /** A folder removed at the end (registered first, so it goes last). */
  addDir(dir: string): void {
    const remove = (): void => rmSync(dir, { recursive: true, force: true });
    this.add(`remove ${dir}`, async () => remove(), remove);
  }

  /** The signal that interrupted us, if any. */
  get interrupted(): NodeJS.Signals | undefined {
    return this.signalled;
  }

  /** A checkpoint between steps that create things. */
  throwIfInterrupted(): void {
    if (this.signalled) throw new Interrupted(`interrupted by ${this.signalled}`);
  }

  /** Resolves with the first SIGINT/SIGTERM/SIGHUP. */
  untilSignal(): Promise<NodeJS.Signals> {
    if (this.signalled) return Promise.resolve(this.signalled);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Undoes everything, newest first; failures are reported on stderr and counted, not thrown. Idempotent. */
  run(): Promise<number> {
    this.running ??= (async () => {
      let failures = 0;
      while (this.tasks.length > 0) {
        const task = this.tasks.pop()!;
        try {
          await task.run();
        } catch (err) {
          failures++;
          process.stderr.write(`cleanup: ${task.label}: ${(err as Error).message}\n`);
        }
      }
      for (const signal of SIGNALS) process.off(signal, this.onSignal);
      process.off('exit', this.onExit);
      return failures;
    })();
    return this.running;
  }
}
