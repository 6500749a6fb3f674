// The tunnel device's side: the real OpenSSH `ssh -N -R` that edge-setup prints, kept up the way a device's
// systemd unit would (Restart=always), only faster: whenever it is not connected, it is started again ~1 s later.
// The tunnel server lives inside `serve`, so it comes and goes with each MCP client that starts one.
import { spawn, type ChildProcess } from 'node:child_process';
import { tunnelCommand, type EdgeSetupOptions } from '../tunnel/edge-setup.js';

const RESPAWN_MS = 1000;

/** edge-setup's argv, made hermetic for a local demo: no user ssh config, no prompts, quiet, forward to 127.0.0.1. */
export function demoTunnelArgv(opts: EdgeSetupOptions): string[] {
  const [ssh, ...rest] = tunnelCommand(opts);
  const args = rest.map((arg) => arg.replace(/^(\d+):localhost:(\d+)$/, '$1:127.0.0.1:$2'));
  return [ssh!, '-F', '/dev/null', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5', '-o', 'LogLevel=ERROR', ...args];
}

export class TunnelClient {
  private child?: ChildProcess;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  lastError = '';

  constructor(
    private readonly argv: string[],
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  /** Starts the loop (once; after stop() it stays stopped). */
  start(): void {
    this.spawnOnce();
  }

  private spawnOnce(): void {
    if (this.stopped) return;
    const [command, ...args] = this.argv;
    const child = spawn(command!, args, { stdio: ['ignore', 'ignore', 'pipe'], env: this.env, detached: true });
    this.child = child;
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    const again = (): void => {
      if (this.child === child) this.child = undefined;
      if (stderr.trim() !== '') this.lastError = stderr.trim();
      if (!this.stopped) this.timer = setTimeout(() => this.spawnOnce(), RESPAWN_MS);
    };
    child.once('close', again);
    child.once('error', (err) => {
      stderr += err.message;
    });
  }

  /** Stops respawning and ends the running ssh, if any. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timeout = setTimeout(() => child.kill('SIGKILL'), 2000);
    await gone;
    clearTimeout(timeout);
  }

  /** Last resort at process exit. */
  stopSync(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    try {
      this.child?.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}
