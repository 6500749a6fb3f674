// One configured device and its warm SSH connection: opened on first use, shared by concurrent commands up to
// a session limit (then queued), kept alive, reopened after a drop, closed when idle. Tracks failures and
// opens a circuit after too many in a row so one bad device fails fast instead of slowing the others.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { Client, type ConnectConfig } from './ssh2.js';
import type { ResolvedConnection } from '../config/load.js';
import { GatewayError, errorMessage } from '../errors.js';
import { verifyHostKey, type HostKeyVerdict } from './host-keys.js';
import { Semaphore } from '../util/semaphore.js';
import { deviceText } from '../util/text.js';

export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'tunnel_down' | 'failing' | 'circuit_open';

export interface ConnectionEvent {
  event: 'ssh_connect' | 'ssh_fail' | 'host_key_mismatch' | 'ssh_disconnect';
  connection: string;
  [field: string]: unknown;
}

export interface ConnectionDeps {
  /** known_hosts files to use when the connection names none (gateway's, else the user's). */
  fallbackKnownHosts: string[];
  /** tunnel mode: a stream to the device's sshd through its tunnel; rejects when the tunnel is down. */
  openTunnelStream?: (name: string) => Promise<Duplex>;
  onEvent?: (event: ConnectionEvent) => void;
  defaults?: { connect_s?: number; idle_s?: number; keepalive_s?: number; attempts?: number; backoff_ms?: number; failure_threshold?: number; cooldown_s?: number };
}

export interface ConnectionHealth {
  state: ConnectionState;
  failures: number;
  last_error: string | null;
  last_error_at: string | null;
  last_used: string | null;
  connected_since: string | null;
  circuit_retry_at: string | null;
  active_commands: number;
  queued_commands: number;
}

const TRANSIENT = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EPIPE|Timed out|timed out|socket hang up|closed/i;

/** ssh2's own test before it sends anything ("Not connected" otherwise): writable, and no EOF read yet. */
function socketUsable(sock: Duplex | undefined): boolean {
  if (!sock) return true; // not ours to judge
  const readable = (sock as unknown as { _readableState?: { ended?: boolean } })._readableState;
  return sock.writable && !sock.destroyed && readable?.ended !== true;
}

export class DeviceConnection {
  private client: Client | null = null;
  /** Clients not yet closed, including one that ended but whose "close" is still to come. */
  private readonly openClients = new Set<Client>();
  private readonly clientSocks = new WeakMap<Client, Duplex>();
  private connecting: Promise<Client> | null = null;
  private readonly sessions: Semaphore;
  private idleTimer: NodeJS.Timeout | null = null;
  private failures = 0;
  private lastError: string | null = null;
  private lastErrorAt: Date | null = null;
  private lastUsed: Date | null = null;
  private connectedSince: Date | null = null;
  private circuitOpenUntil = 0;
  private closed = false;

  constructor(
    readonly config: ResolvedConnection,
    private readonly deps: ConnectionDeps,
  ) {
    this.sessions = new Semaphore(config.max_sessions ?? 8);
  }

  private setting<K extends keyof NonNullable<ConnectionDeps['defaults']>>(key: K, fallback: number): number {
    const own = { ...this.config.timeouts, ...this.config.retry } as Record<string, number | undefined>;
    return own[key] ?? this.deps.defaults?.[key] ?? fallback;
  }

  /** Runs `work` with a warm client while holding one of the connection's session slots. */
  async withSession<T>(work: (client: Client) => Promise<T>): Promise<T> {
    this.failIfCircuitOpen();
    const release = await this.sessions.acquire();
    this.cancelIdleClose();
    try {
      const client = await this.ensureConnected();
      this.lastUsed = new Date();
      return await work(client);
    } finally {
      release();
      this.lastUsed = new Date();
      this.scheduleIdleClose();
    }
  }

  /**
   * The client to send a command on right now: `client` while its socket is usable, else a new connection. The old
   * one died after the session began (e.g. the device restarted) and nothing was sent on it, so reconnecting is safe.
   */
  async usableClient(client: Client): Promise<Client> {
    if (socketUsable(this.clientSocks.get(client))) return client;
    if (this.client === client) this.client = null;
    return this.ensureConnected();
  }

  /** Records a failure seen while using the connection (e.g. it dropped mid-command). */
  noteFailure(err: unknown): void {
    this.failures++;
    this.lastError = errorMessage(err);
    this.lastErrorAt = new Date();
    if (this.failures >= this.setting('failure_threshold', 5)) {
      this.circuitOpenUntil = Date.now() + this.setting('cooldown_s', 30) * 1000;
    }
  }

  health(tunnelUp?: boolean): ConnectionHealth {
    return {
      state: this.state(tunnelUp),
      failures: this.failures,
      last_error: this.lastError,
      last_error_at: this.lastErrorAt?.toISOString() ?? null,
      last_used: this.lastUsed?.toISOString() ?? null,
      connected_since: this.client ? (this.connectedSince?.toISOString() ?? null) : null,
      circuit_retry_at: this.circuitOpenUntil > Date.now() ? new Date(this.circuitOpenUntil).toISOString() : null,
      active_commands: this.sessions.active,
      queued_commands: this.sessions.waiting,
    };
  }

  private state(tunnelUp?: boolean): ConnectionState {
    if (this.circuitOpenUntil > Date.now()) return 'circuit_open';
    if (this.config.mode === 'tunnel' && tunnelUp === false) return 'tunnel_down';
    if (this.client) return 'connected';
    if (this.connecting) return 'connecting';
    if (this.failures > 0) return 'failing';
    return 'idle';
  }

  private failIfCircuitOpen(): void {
    if (this.circuitOpenUntil <= Date.now()) return;
    const retryAt = new Date(this.circuitOpenUntil).toISOString();
    throw new GatewayError(
      'circuit_open',
      `connection "${this.config.name}" failed ${this.failures} times in a row (last: ${this.lastError}); calls fail fast until ${retryAt}, then one attempt is let through. Fix the device or try another connection.`,
    );
  }

  private ensureConnected(): Promise<Client> {
    if (this.closed) return Promise.reject(new GatewayError('connect_failed', `the gateway is shutting down; connection "${this.config.name}" is closed`));
    // A connection whose socket already saw EOF is dead even if ssh2 has not said "close" yet: don't hand it out
    // (exec would throw "Not connected" though the command never left); reconnect instead.
    if (this.client && !socketUsable(this.clientSocks.get(this.client))) this.client = null;
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= this.connectWithRetry().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async connectWithRetry(): Promise<Client> {
    const attempts = this.setting('attempts', 2);
    const backoff = this.setting('backoff_ms', 250);
    for (let attempt = 1; ; attempt++) {
      try {
        const client = await this.connectOnce();
        this.failures = 0;
        this.circuitOpenUntil = 0;
        return client;
      } catch (err) {
        const gatewayError = err instanceof GatewayError ? err : this.classify(err);
        // A tunnel that is down is a known state shown as tunnel_down, not a misbehaving device: no retry, no circuit.
        if (gatewayError.kind === 'tunnel_down') throw gatewayError;
        this.noteFailure(gatewayError);
        this.deps.onEvent?.({ event: 'ssh_fail', connection: this.config.name, attempt, reason: gatewayError.message });
        const retryable = !gatewayError.permanent && attempt < attempts && this.circuitOpenUntil <= Date.now();
        if (!retryable) throw gatewayError;
        // Full jitter: spreads reconnect storms when many devices fail together.
        await new Promise((r) => setTimeout(r, Math.random() * backoff * 2 ** (attempt - 1)));
      }
    }
  }

  private classify(err: unknown): GatewayError {
    const message = errorMessage(err);
    const c = this.config;
    const target = c.mode === 'tunnel' ? `the device's sshd through the tunnel of "${c.name}"` : `${c.host}:${c.port}`;
    if (/ECONNREFUSED/.test(message)) {
      return new GatewayError('connect_refused', `connection refused by ${target} for "${c.name}": is sshd running on the device and is port ${c.port} right? Try again later or check the device.`);
    }
    if (/All configured authentication methods failed/i.test(message)) {
      return new GatewayError(
        'auth_refused',
        `the device refused the gateway's key for "${c.user}@${c.name}" (${c.id_file}): add the matching public key (${c.id_file}.pub) to ~${c.user}/.ssh/authorized_keys on the device, or fix "user". Password and keyboard-interactive logins are never tried.`,
        true,
      );
    }
    if (/Timed out while waiting for handshake|ETIMEDOUT/i.test(message)) {
      return new GatewayError('timeout', `no SSH handshake from ${target} within ${this.setting('connect_s', 15)} s for "${c.name}": the device or network is down or very slow. Try again later.`);
    }
    if (/ENOTFOUND|EAI_AGAIN/.test(message)) {
      return new GatewayError('connect_failed', `cannot resolve host "${c.host}" for "${c.name}": fix "host" in the config.`, true);
    }
    return new GatewayError('connect_failed', `cannot connect to ${target} for "${c.name}": ${deviceText(err)}`, !TRANSIENT.test(message));
  }

  private async openSocket(): Promise<Duplex> {
    const c = this.config;
    if (c.mode === 'tunnel') {
      if (!this.deps.openTunnelStream) throw new GatewayError('tunnel_down', `the tunnel server is not running, so "${c.name}" cannot be reached`);
      return this.openTunnelStreamWithin(this.setting('connect_s', 15) * 1000);
    }
    const sock = new net.Socket();
    // ssh2 never sets TCP_NODELAY; without it Nagle + delayed ACK add ~40 ms to every request (baselines).
    sock.setNoDelay(true);
    sock.connect(c.port, c.host);
    return sock;
  }

  /**
   * The device's `ssh -R` answers the channel open only once it has reached its sshd (OpenSSH waits for its own TCP
   * connect, ~2 min if that host is down), and a hostile edge may never answer. ssh2's readyTimeout only starts
   * after this, so the connect timeout applies here too; a stream that turns up later is closed.
   */
  private async openTunnelStreamWithin(timeoutMs: number): Promise<Duplex> {
    const c = this.config;
    const opening = this.deps.openTunnelStream!(c.name).catch((err: unknown) => {
      throw new GatewayError('tunnel_down', errorMessage(err));
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        void opening.then((late) => late.destroy(), () => undefined);
        reject(
          new GatewayError(
            'timeout',
            `the tunnel of "${c.name}" is up, but the device did not connect it to its sshd within ${timeoutMs / 1000} s: check that sshd runs on the device and that its ssh -R points at localhost:22.`,
          ),
        );
      }, timeoutMs);
    });
    try {
      return await Promise.race([opening, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * A separate, short-lived connection to the device (host key verified as usual) for when the shared one has no
   * channel to spare, e.g. to kill commands while every session is busy. The caller ends it.
   */
  openSideClient(): Promise<Client> {
    return this.connectOnce(true);
  }

  private async connectOnce(side = false): Promise<Client> {
    const c = this.config;
    const sock = await this.openSocket();
    let verdict: HostKeyVerdict | undefined;
    const client = new Client();
    const connectConfig: ConnectConfig = {
      sock,
      host: c.host,
      port: c.port,
      username: c.user,
      privateKey: c.privateKey,
      passphrase: c.passphrase,
      agent: c.agent ? process.env.SSH_AUTH_SOCK : undefined,
      // Only key-based methods, ever: never password or keyboard-interactive.
      authHandler: c.agent && process.env.SSH_AUTH_SOCK ? ['publickey', 'agent'] : ['publickey'],
      readyTimeout: this.setting('connect_s', 15) * 1000,
      keepaliveInterval: this.setting('keepalive_s', 15) * 1000,
      keepaliveCountMax: 3,
      hostVerifier: (key: Buffer) => {
        verdict = verifyHostKey(c.host, c.port, key, {
          connection: c.name,
          pins: c.host_key === undefined ? undefined : Array.isArray(c.host_key) ? c.host_key : [c.host_key],
          knownHostsFiles: c.known_hosts ? [c.known_hosts] : this.deps.fallbackKnownHosts,
        });
        return verdict.ok;
      },
    };
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        client.removeListener('ready', onReady);
        // ssh2 can emit a second error for the same failed attempt (a handshake timeout is followed by
        // "Connection lost before handshake" when the socket closes); unhandled, it would crash the gateway.
        client.on('error', () => undefined);
        sock.destroy();
        if (verdict && !verdict.ok) {
          this.deps.onEvent?.({ event: 'host_key_mismatch', connection: c.name, kind: verdict.kind, fingerprint: verdict.fingerprint });
          reject(new GatewayError('host_key', verdict.message, true));
        } else reject(err);
      };
      const onReady = (): void => {
        client.removeListener('error', onError);
        resolve();
      };
      client.once('ready', onReady);
      client.once('error', onError);
      client.connect(connectConfig);
    });
    if (side) {
      client.on('error', () => undefined);
      return client;
    }
    this.clientSocks.set(client, sock);
    this.adopt(client, verdict);
    return client;
  }

  private adopt(client: Client, verdict: HostKeyVerdict | undefined): void {
    this.client = client;
    this.connectedSince = new Date();
    this.deps.onEvent?.({
      event: 'ssh_connect',
      connection: this.config.name,
      mode: this.config.mode,
      host_key: verdict?.fingerprint,
      verified_by: verdict?.ok ? verdict.matchedBy : undefined,
    });
    this.openClients.add(client);
    // Errors after "ready" (keepalive timeout, reset) are followed by "close"; the listener keeps them from crashing the process.
    // From "end" or "error" on, the client can't send ("Not connected") though "close" comes a tick later: a call in between
    // must open a new connection rather than fail on this one.
    const unusable = (): void => {
      if (this.client === client) this.client = null;
    };
    client.on('error', (err) => {
      this.lastError = deviceText(err); // often the device's own disconnect text
      this.lastErrorAt = new Date();
      unusable();
    });
    client.once('end', unusable);
    client.once('close', () => {
      unusable();
      this.openClients.delete(client);
      this.deps.onEvent?.({ event: 'ssh_disconnect', connection: this.config.name, reason: this.lastError ?? 'closed' });
    });
  }

  private scheduleIdleClose(): void {
    const idleMs = this.setting('idle_s', 300) * 1000;
    if (idleMs <= 0 || this.sessions.active > 0 || this.sessions.waiting > 0) return;
    this.cancelIdleClose();
    this.idleTimer = setTimeout(() => this.client?.end(), idleMs);
    this.idleTimer.unref();
  }

  private cancelIdleClose(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  /** Drops the current connection (e.g. its tunnel went away); the next use reconnects. */
  disconnect(): void {
    this.client?.end();
    this.client?.destroy();
    this.client = null;
  }

  /** Closes for good; resolves once its SSH connections have closed (so their ssh_disconnect is recorded first), at most 2 s. */
  close(): Promise<void> {
    this.closed = true;
    this.cancelIdleClose();
    const closing = [...this.openClients].map(
      (client) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 2000);
          timer.unref();
          client.once('close', () => {
            clearTimeout(timer);
            resolve();
          });
          client.end();
          client.destroy();
        }),
    );
    this.disconnect();
    return Promise.all(closing).then(() => undefined);
  }
}
