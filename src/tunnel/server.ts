// The embedded SSH server devices dial into with `ssh -N -R PORT:localhost:22 NAME@gateway`.
// Like ssh2's own Server it refuses by default: the only listeners attached to a connection are for what
// an edge may do (authenticate, request its own forward). The session / direct-tcpip listeners exist only
// to log the refusal; they never accept. Every trust decision is made in ./authorize.ts.
import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import type { AuthContext, Connection, ClientInfo, TcpipBindInfo, ServerChannel } from 'ssh2';
import {
  ALLOWED_AUTH_METHODS,
  CHANNEL_REFUSALS,
  MAX_AUTH_TRIES,
  buildEdgeKeyring,
  decideAuthentication,
  decideForward,
  printable,
  type ActiveForward,
  type AuthAttempt,
  type EdgeKeyring,
} from './authorize.js';
import { publicKeyLineOf } from './edge-setup.js';
import { NoiseBudget, type NoiseSummary } from '../audit/noise.js';
import { PreauthLimiter, sourceOf, type Eviction } from './preauth-limiter.js';

export interface TunnelEndpoint {
  /** The connection's name, which is also the login name the device uses. */
  name: string;
  /** The port the device forwards (`-R PORT:localhost:22`). */
  port: number;
  /** OpenSSH public key line the device logs in with; without it no device can log in for this name. */
  edgePublicKey?: string;
  /** Also listen on 127.0.0.1:PORT and relay, so plain OpenSSH tools on the gateway host can use the tunnel. */
  bindLoopback?: boolean;
}

export interface TunnelStatus {
  up: boolean;
  /** ISO time the current forward was accepted. */
  since?: string;
  /** "ip:port" of the device's connection ("[v6]:port" for IPv6). */
  peer?: string;
  last_down?: string;
  last_down_reason?: string;
}

export type TunnelEventName =
  | 'tunnel_auth_ok'
  | 'tunnel_auth_failed'
  | 'forward_requested'
  | 'forward_accepted'
  | 'forward_rejected'
  | 'tunnel_up'
  | 'tunnel_down'
  | 'tunnel_request_refused'
  | 'tunnel_events_suppressed';

/** Refusals anyone can cause at will: recorded within a budget, summarised beyond it (see noise.ts). */
const NOISY_EVENTS: ReadonlySet<TunnelEventName> = new Set(['tunnel_auth_failed', 'tunnel_request_refused', 'forward_rejected', 'forward_requested']);
/** A login that keeps asking for what it may not have is ended after this many refusals. */
const MAX_REFUSALS_PER_CONNECTION = 10;
/**
 * Bytes the gateway may have queued for an edge that does not read them. Legitimate traffic is bounded by SSH
 * flow control (a few 2 MiB channel windows); only a peer that sends requests but never reads replies gets here.
 */
const DEFAULT_MAX_UNSENT_BYTES = 16 * 1024 * 1024;
/** A real ssh client sends its identification line as soon as TCP connects; only a silent socket waits longer. */
const DEFAULT_BANNER_TIMEOUT_MS = 5000;

export type TunnelEvent = {
  event: TunnelEventName;
  /** The tunnel connection's name, once known (a claimed but unknown login name is in `user`). */
  connection?: string;
  peer: string;
  reason?: string;
  [k: string]: unknown;
};

export interface TunnelServerOptions {
  listen: { host: string; port: number };
  /** The gateway's host private key (file contents). */
  hostKey: string | Buffer;
  endpoints: TunnelEndpoint[];
  onEvent?: (e: TunnelEvent) => void;
  /** Silence after which the server probes the edge (default 15000). */
  keepaliveIntervalMs?: number;
  /** Silent intervals before the edge is declared dead: detection within interval × countMax (default 3). */
  keepaliveCountMax?: number;
  /**
   * Slots for connections that hold no forward yet (not authenticated, or logged in without a forward), default 64.
   * A newcomer always gets one: when none is free, the oldest connection of the source holding the most is ended.
   */
  maxUnauthenticated?: number;
  /** A connection that has not authenticated by then is ended, and so is a login that holds no forward by then (default 10000). */
  authTimeoutMs?: number;
  /** A connection that has not sent its SSH identification line by then is ended (default 5000). */
  bannerTimeoutMs?: number;
  /**
   * Of maxUnauthenticated, how many one source (a /24 for IPv4, a /64 for IPv6) may hold (default 16); a newcomer
   * from a source at its share replaces that source's oldest.
   */
  maxUnauthenticatedPerSource?: number;
  /** The former name of maxUnauthenticatedPerSource (it counted per address); still honoured. */
  maxUnauthenticatedPerAddress?: number;
  /** Refusal records per window before they are only counted and summarised (default 20 per 10000 ms). */
  noiseBudget?: { perWindow: number; windowMs: number };
  /** Bytes queued for an edge that does not read before it is cut off (default 16 MiB). */
  maxUnsentBytes?: number;
}

interface EdgeConnection {
  readonly socket: net.Socket;
  readonly peer: string;
  /** The peer's /24 or /64: what the per-source share of pending slots counts. */
  readonly source: string;
  /** "ip|port", to find this connection again when ssh2 reports the SSH connection. */
  readonly socketKey: string;
  client?: Connection;
  /** Set once authenticated: the tunnel connection this login belongs to. */
  name?: string;
  authenticated: boolean;
  /** Ends the connection if it neither authenticates nor takes up its forward in time. */
  deadline?: NodeJS.Timeout;
  /** Ends the connection if it sends no SSH identification line in time. */
  bannerDeadline?: NodeJS.Timeout;
  failedAuths: number;
  /** Requests and channels refused since login; too many ends the connection. */
  refusals: number;
  forward?: ActiveForward;
  /** A forward accepted by policy whose loopback listener is still being opened. */
  pendingForward?: ActiveForward;
  /** Why the gateway ended it, or the last error seen; becomes the tunnel_down reason. */
  closeReason?: string;
  /** Closed, or being ended by the gateway: nothing more is granted to it. */
  closed: boolean;
}

interface TunnelState {
  readonly endpoint: TunnelEndpoint;
  /** The login holding the forward, while the tunnel is up (a newer accepted forward replaces it). */
  connection?: EdgeConnection;
  upSince?: Date;
  lastDown?: Date;
  lastDownReason?: string;
  /** bind_loopback: the 127.0.0.1:PORT listener, kept while up (and across a replacement). */
  relay?: Promise<LoopbackRelay>;
}

const { Server: SshServer } = ssh2;

export class TunnelServer extends EventEmitter {
  private readonly keyring: EdgeKeyring;
  private readonly tunnels = new Map<string, TunnelState>();
  private readonly connections = new Set<EdgeConnection>();
  /** Sockets handed to ssh2 whose SSH `connection` event has not come yet, by "ip|port". */
  private readonly awaitingHeader = new Map<string, EdgeConnection>();
  private readonly ssh: InstanceType<typeof SshServer>;
  private readonly listener: net.Server;
  private readonly onEventSink: (e: TunnelEvent) => void;
  private readonly keepaliveBoundMs: number;
  private readonly authTimeoutMs: number;
  private readonly bannerTimeoutMs: number;
  private readonly maxUnsentBytes: number;
  private readonly noise: NoiseBudget;
  /** The limited slots of connections without a forward yet (not authenticated, or logged in without one). */
  private readonly pending: PreauthLimiter<EdgeConnection>;
  private stopping = false;
  readonly hostKeyLine: string;

  constructor(private readonly opts: TunnelServerOptions) {
    super();
    validateEndpoints(opts.endpoints);
    this.keyring = buildEdgeKeyring(opts.endpoints);
    for (const endpoint of opts.endpoints) this.tunnels.set(endpoint.name, { endpoint });
    this.onEventSink = opts.onEvent ?? (() => undefined);
    this.pending = new PreauthLimiter({
      maxTotal: opts.maxUnauthenticated ?? 64,
      maxPerSource: opts.maxUnauthenticatedPerSource ?? opts.maxUnauthenticatedPerAddress ?? 16,
    });
    this.authTimeoutMs = opts.authTimeoutMs ?? 10_000;
    this.bannerTimeoutMs = opts.bannerTimeoutMs ?? DEFAULT_BANNER_TIMEOUT_MS;
    this.maxUnsentBytes = opts.maxUnsentBytes ?? DEFAULT_MAX_UNSENT_BYTES;
    const budget = opts.noiseBudget ?? { perWindow: 20, windowMs: 10_000 };
    this.noise = new NoiseBudget(budget.perWindow, budget.windowMs, (summary) => this.reportSuppressed(summary));
    const interval = opts.keepaliveIntervalMs ?? 15_000;
    const countMax = opts.keepaliveCountMax ?? 3;
    if (!(interval > 0) || !Number.isInteger(countMax) || countMax < 1) {
      throw new Error('keepaliveIntervalMs must be > 0 and keepaliveCountMax an integer ≥ 1');
    }
    this.keepaliveBoundMs = interval * countMax;
    this.hostKeyLine = hostKeyLineOrThrow(opts.hostKey);
    this.ssh = new SshServer({
      hostKeys: [opts.hostKey],
      ident: 'mcp-ssh-gateway',
      keepaliveInterval: interval,
      // ssh2 ends the connection when a tick finds more than countMax unanswered probes; one less gives
      // "dead after countMax silent intervals" (probes on all but the last), as OpenSSH's docs describe it.
      keepaliveCountMax: countMax - 1,
    });
    this.ssh.on('connection', (client: Connection, info: ClientInfo) => this.onSshConnection(client, info));
    // We own the TCP listener (ssh2 gets sockets through injectSocket) so that limits and TCP_NODELAY apply
    // from the first byte, before ssh2 even sees an SSH identification line.
    this.listener = net.createServer((socket) => this.onSocket(socket));
  }

  start(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(new Error(`tunnel server cannot listen on ${this.opts.listen.host}:${this.opts.listen.port}: ${err.message}`));
      this.listener.once('error', onError);
      this.listener.listen(this.opts.listen.port, this.opts.listen.host, () => {
        this.listener.off('error', onError);
        // After listening, accept errors (EMFILE...) must not crash the process; ssh2 keeps serving others.
        this.listener.on('error', () => undefined);
        const address = this.listener.address() as net.AddressInfo;
        resolve({ host: address.address, port: address.port });
      });
    });
  }

  /** Closes the listener, every edge connection and every loopback relay. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const tunnel of this.tunnels.values()) {
      if (tunnel.connection) this.takeDown(tunnel, tunnel.connection, 'tunnel server stopped');
    }
    const closed = new Promise<void>((resolve) => this.listener.close(() => resolve()));
    for (const conn of [...this.connections]) this.endConnection(conn, 'tunnel server stopped');
    this.noise.flush();
    if (this.listener.listening) await closed;
  }

  status(name: string): TunnelStatus {
    const tunnel = this.requireTunnel(name);
    const conn = tunnel.connection;
    const status: TunnelStatus = { up: conn?.forward !== undefined };
    if (status.up) {
      status.since = tunnel.upSince?.toISOString();
      status.peer = conn!.peer;
    }
    if (tunnel.lastDown) {
      status.last_down = tunnel.lastDown.toISOString();
      status.last_down_reason = tunnel.lastDownReason;
    }
    return status;
  }

  /** Opens a stream to the device's sshd through its tunnel (a forwarded-tcpip channel on the forwarded port). */
  openStream(name: string): Promise<Duplex> {
    const tunnel = this.requireTunnel(name);
    const conn = tunnel.connection;
    if (!conn?.client || !conn.forward) return Promise.reject(tunnelDownError(tunnel));
    return openForwardedChannel(conn.client, conn.forward, '127.0.0.1', 0).catch((err: Error) => {
      throw new Error(`tunnel for "${name}" could not open a stream to the device: ${err.message}`);
    });
  }

  override on(event: 'up' | 'down', listener: (name: string) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.on(event, listener);
  }

  // ---- accepting ---------------------------------------------------------------------------------------

  private onSocket(socket: net.Socket): void {
    const peer = formatPeer(socket.remoteAddress, socket.remotePort);
    if (this.stopping) {
      socket.destroy();
      return;
    }
    // ssh2 never sets TCP_NODELAY; without it every small request through the tunnel waits ~40 ms (Nagle).
    socket.setNoDelay(true);
    const key = socketKey(socket.remoteAddress, socket.remotePort);
    const conn: EdgeConnection = { socket, peer, source: sourceOf(socket.remoteAddress), socketKey: key, authenticated: false, failedAuths: 0, refusals: 0, closed: false };
    this.connections.add(conn);
    this.enterPending(conn, () => this.onAuthTimeout(conn));
    conn.bannerDeadline = setTimeout(() => this.onBannerTimeout(conn), this.bannerTimeoutMs);
    socket.once('close', () => this.onSocketClosed(conn));
    // ssh2 writes its replies without backpressure: a peer that sends requests but never reads would grow our
    // memory without bound (its keepalive timer resets on every packet it sends).
    socket.on('data', () => {
      if (socket.writableLength > this.maxUnsentBytes && !conn.closed) {
        this.emitEvent({ event: 'tunnel_request_refused', connection: conn.name, peer, request: 'unread replies', reason: `the edge does not read what the gateway sends (${socket.writableLength} bytes unsent); connection ended` });
        this.endConnection(conn, 'the edge stopped reading');
      }
    });
    this.awaitingHeader.set(key, conn);
    this.ssh.injectSocket(socket);
  }

  private onSshConnection(client: Connection, info: ClientInfo): void {
    const key = socketKey(info.ip, info.port);
    const conn = this.awaitingHeader.get(key);
    this.awaitingHeader.delete(key);
    if (conn) clearTimeout(conn.bannerDeadline);
    client.on('error', (err: Error & { level?: string }) => this.onClientError(conn, err));
    if (!conn || conn.closed) {
      client.end();
      return;
    }
    conn.client = client;
    client.on('authentication', (ctx: AuthContext) => this.onAuthentication(conn, ctx));
    client.on('ready', () => this.onAuthenticated(conn));
    client.on('request', (accept, reject, name, bind) => this.onGlobalRequest(conn, name, bind as Partial<TcpipBindInfo>, accept, reject));
    client.on('session', (_accept, reject) => this.refuseChannel(conn, 'session', reject));
    client.on('tcpip', (_accept, reject, dest) => this.refuseChannel(conn, 'direct-tcpip', reject, { destination: `${printable(dest.destIP)}:${dest.destPort}` }));
    client.on('openssh.streamlocal', (_accept, reject, dest) => this.refuseChannel(conn, 'direct-streamlocal@openssh.com', reject, { destination: printable(dest.socketPath) }));
  }

  // ---- authentication ----------------------------------------------------------------------------------

  private onAuthentication(conn: EdgeConnection, ctx: AuthContext): void {
    // ssh2 goes on parsing what was already received after the gateway ended a connection: grant nothing, log nothing.
    if (conn.closed) return ctx.reject();
    const verdict = decideAuthentication(authAttemptOf(ctx), this.keyring);
    if (verdict.kind === 'key-acceptable') return ctx.accept();
    if (verdict.kind === 'accept') {
      conn.name = verdict.name;
      return ctx.accept();
    }
    ctx.reject([...ALLOWED_AUTH_METHODS]);
    if (verdict.quiet) return;
    conn.failedAuths++;
    this.emitEvent({
      event: 'tunnel_auth_failed',
      connection: this.tunnels.has(ctx.username) ? ctx.username : undefined,
      peer: conn.peer,
      user: printable(ctx.username),
      method: printable(ctx.method),
      ...(ctx.method === 'publickey' ? { key: fingerprintOf(ctx.key.data) } : {}),
      reason: verdict.reason,
    });
    if (conn.failedAuths >= MAX_AUTH_TRIES) this.endConnection(conn, 'too many authentication failures');
  }

  private onAuthTimeout(conn: EdgeConnection): void {
    if (conn.authenticated || conn.closed) return;
    this.emitEvent({ event: 'tunnel_auth_failed', peer: conn.peer, reason: `not authenticated within ${this.authTimeoutMs} ms; connection ended` });
    this.endConnection(conn, 'authentication timeout');
  }

  private onBannerTimeout(conn: EdgeConnection): void {
    if (conn.closed) return;
    this.emitEvent({ event: 'tunnel_auth_failed', peer: conn.peer, reason: `no SSH identification line within ${this.bannerTimeoutMs} ms; connection ended` });
    this.endConnection(conn, 'no SSH identification');
  }

  private onAuthenticated(conn: EdgeConnection): void {
    conn.authenticated = true;
    this.emitEvent({ event: 'tunnel_auth_ok', connection: conn.name, peer: conn.peer, key: fingerprintOf(this.keyring.get(conn.name!)!.blob) });
    // A login is only worth keeping for its forward; it stays pending (and on a deadline) until it has one.
    this.enterPending(conn, () => this.onForwardTimeout(conn));
  }

  private onForwardTimeout(conn: EdgeConnection): void {
    if (conn.forward || conn.closed) return;
    this.emitEvent({
      event: 'tunnel_request_refused',
      connection: conn.name,
      peer: conn.peer,
      request: 'login without forward',
      reason: `no forward held ${this.authTimeoutMs} ms after login (only ssh -N -R PORT:localhost:22 is served); connection ended`,
    });
    this.endConnection(conn, 'login without forward');
  }

  /** (Re)arms the connection's deadline and gives it a pending slot if it holds none, ending whom that displaces. */
  private enterPending(conn: EdgeConnection, onExpire: () => void): void {
    if (conn.deadline) clearTimeout(conn.deadline);
    conn.deadline = setTimeout(onExpire, this.authTimeoutMs);
    const eviction = this.pending.admit(conn, conn.source);
    if (eviction) this.evict(eviction, conn);
  }

  private leavePending(conn: EdgeConnection): void {
    if (conn.deadline) clearTimeout(conn.deadline);
    conn.deadline = undefined;
    this.pending.release(conn);
  }

  private evict({ evicted, source, held, cause }: Eviction<EdgeConnection>, newcomer: EdgeConnection): void {
    const why =
      cause === 'source-share'
        ? `${source} already held its share of ${held} slots for connections without a tunnel yet`
        : `every slot for connections without a tunnel yet was taken and ${source} held the most (${held})`;
    this.emitEvent({
      event: 'tunnel_auth_failed',
      connection: evicted.name,
      peer: evicted.peer,
      source,
      admitted: newcomer.peer,
      reason: `${why}: its oldest connection was ended to admit ${newcomer.peer}`,
    });
    this.leavePending(evicted);
    this.endConnection(evicted, 'evicted for a newer connection without a tunnel yet');
  }

  // ---- forwards ----------------------------------------------------------------------------------------

  private onGlobalRequest(
    conn: EdgeConnection,
    request: string,
    bind: Partial<TcpipBindInfo> & { socketPath?: string },
    accept: ((port?: number) => void) | undefined,
    reject: (() => void) | undefined,
  ): void {
    if (conn.closed) {
      reject?.(); // packets already parsed after the gateway decided to end this connection
      return;
    }
    const tunnel = this.tunnels.get(conn.name!)!;
    const bindAddr = typeof bind.bindAddr === 'string' ? bind.bindAddr : (bind.socketPath ?? '');
    const bindPort = typeof bind.bindPort === 'number' ? bind.bindPort : 0;
    const details = { bind_address: printable(bindAddr), port: bindPort };
    if (request === 'tcpip-forward') this.emitEvent({ event: 'forward_requested', connection: conn.name, peer: conn.peer, ...details });
    const verdict = decideForward({ request, bindAddr, bindPort }, tunnel.endpoint, conn.forward ?? conn.pendingForward);
    if (!verdict.allowed) {
      reject?.();
      const event = request === 'tcpip-forward' ? 'forward_rejected' : 'tunnel_request_refused';
      this.emitEvent({ event, connection: conn.name, peer: conn.peer, request, ...details, reason: verdict.reason });
      this.countRefusal(conn);
      return;
    }
    if (request === 'cancel-tcpip-forward') {
      accept?.();
      this.takeDown(tunnel, conn, 'forward cancelled by the edge');
      this.enterPending(conn, () => this.onForwardTimeout(conn));
      return;
    }
    void this.acceptForward(conn, tunnel, { bindAddr, port: bindPort }, accept, reject);
  }

  private async acceptForward(
    conn: EdgeConnection,
    tunnel: TunnelState,
    forward: ActiveForward,
    accept: ((port?: number) => void) | undefined,
    reject: (() => void) | undefined,
  ): Promise<void> {
    conn.pendingForward = forward;
    try {
      if (tunnel.endpoint.bindLoopback) await this.ensureRelay(tunnel);
    } catch (err) {
      conn.pendingForward = undefined;
      reject?.();
      this.emitEvent({ event: 'forward_rejected', connection: conn.name, peer: conn.peer, port: forward.port, reason: `cannot listen on 127.0.0.1:${forward.port}: ${(err as Error).message}` });
      return;
    }
    conn.pendingForward = undefined;
    if (conn.closed || this.stopping) {
      // The login went away (or the server is stopping) while the loopback port was being opened. Another login
      // of the same device may be waiting on that listener too: then it stays.
      const waiting = [...this.connections].some((other) => other !== conn && other.name === conn.name && other.pendingForward);
      if (!tunnel.connection && !waiting) this.closeRelay(tunnel);
      return;
    }
    const previous = tunnel.connection;
    if (previous) {
      // One tunnel per device: the newest wins (the old one is usually a connection NAT already killed).
      const reason = `replaced by a new login from ${conn.peer}`;
      this.takeDown(tunnel, previous, reason, { keepRelay: true });
      this.endConnection(previous, reason);
    }
    this.leavePending(conn);
    conn.forward = forward;
    tunnel.connection = conn;
    tunnel.upSince = new Date();
    accept?.();
    this.emitEvent({ event: 'forward_accepted', connection: conn.name, peer: conn.peer, bind_address: printable(forward.bindAddr), port: forward.port, bind_loopback: tunnel.relay !== undefined });
    this.emitEvent({ event: 'tunnel_up', connection: conn.name, peer: conn.peer, port: forward.port });
    this.emit('up', tunnel.endpoint.name);
  }

  private ensureRelay(tunnel: TunnelState): Promise<LoopbackRelay> {
    tunnel.relay ??= LoopbackRelay.open(tunnel.endpoint.port, (socket) => this.relayIntoTunnel(tunnel, socket)).catch((err: Error) => {
      tunnel.relay = undefined;
      throw err;
    });
    return tunnel.relay;
  }

  private closeRelay(tunnel: TunnelState): void {
    const relay = tunnel.relay;
    tunnel.relay = undefined;
    relay?.then((r) => r.close(), () => undefined);
  }

  /** Each TCP connection to 127.0.0.1:PORT becomes a forwarded-tcpip channel of whichever login is current. */
  private relayIntoTunnel(tunnel: TunnelState, socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy());
    const conn = tunnel.connection;
    if (!conn?.client || !conn.forward) {
      socket.destroy();
      return;
    }
    openForwardedChannel(conn.client, conn.forward, socket.remoteAddress ?? '127.0.0.1', socket.remotePort ?? 0).then(
      (channel) => {
        channel.on('error', () => socket.destroy());
        channel.on('close', () => socket.destroy());
        socket.on('close', () => channel.destroy());
        socket.pipe(channel).pipe(socket);
      },
      () => socket.destroy(),
    );
  }

  // ---- refusals ----------------------------------------------------------------------------------------

  private refuseChannel(conn: EdgeConnection, type: keyof typeof CHANNEL_REFUSALS, reject: () => void, details: Record<string, unknown> = {}): void {
    reject();
    this.emitEvent({ event: 'tunnel_request_refused', connection: conn.name, peer: conn.peer, request: type, ...details, reason: CHANNEL_REFUSALS[type] });
    this.countRefusal(conn);
  }

  private countRefusal(conn: EdgeConnection): void {
    conn.refusals++;
    if (conn.refusals < MAX_REFUSALS_PER_CONNECTION || conn.closed) return;
    this.emitEvent({ event: 'tunnel_request_refused', connection: conn.name, peer: conn.peer, request: 'any', reason: `${conn.refusals} requests refused on one login; connection ended` });
    this.endConnection(conn, 'too many refused requests');
  }

  private reportSuppressed(summary: NoiseSummary): void {
    const total = Object.values(summary.counts).reduce((a, b) => a + b, 0);
    this.onEventSinkSafe({
      event: 'tunnel_events_suppressed',
      peer: summary.peers.join(', '),
      ...summary,
      reason: `${total} more refusal record(s) in ${summary.window_s} s were counted, not written one by one`,
    });
  }

  // ---- going down --------------------------------------------------------------------------------------

  private onClientError(conn: EdgeConnection | undefined, err: Error & { level?: string }): void {
    if (!conn) return;
    if (err.level === 'client-timeout') {
      // ssh2 only half-closes on keepalive timeout; a frozen peer never answers that, so cut it here.
      this.endConnection(conn, `no answer to keepalive within ${this.keepaliveBoundMs} ms`);
      return;
    }
    // Often the edge's own disconnect text: anyone with a device key chooses it, and it reaches the agent.
    conn.closeReason ??= printable(describeError(err), 200);
  }

  private onSocketClosed(conn: EdgeConnection): void {
    conn.closed = true;
    this.connections.delete(conn);
    if (this.awaitingHeader.get(conn.socketKey) === conn) this.awaitingHeader.delete(conn.socketKey);
    this.leavePending(conn);
    clearTimeout(conn.bannerDeadline);
    const tunnel = conn.forward && conn.name !== undefined ? this.tunnels.get(conn.name) : undefined;
    if (tunnel) this.takeDown(tunnel, conn, conn.closeReason ?? 'connection closed by the edge');
  }

  /** Marks the tunnel down if `conn` holds its forward; the login itself may stay. */
  private takeDown(tunnel: TunnelState, conn: EdgeConnection, reason: string, opts: { keepRelay?: boolean } = {}): void {
    if (tunnel.connection !== conn || conn.forward === undefined) return;
    conn.forward = undefined;
    tunnel.connection = undefined;
    if (!opts.keepRelay) this.closeRelay(tunnel);
    tunnel.upSince = undefined;
    tunnel.lastDown = new Date();
    tunnel.lastDownReason = reason;
    this.emitEvent({ event: 'tunnel_down', connection: tunnel.endpoint.name, peer: conn.peer, reason });
    this.emit('down', tunnel.endpoint.name);
  }

  private endConnection(conn: EdgeConnection, reason: string): void {
    conn.closeReason = reason;
    conn.closed = true;
    try {
      conn.client?.end(); // sends SSH_MSG_DISCONNECT when the socket still takes writes
    } catch {
      /* the socket is already gone */
    }
    // Destroy rather than wait for the peer's FIN: a frozen or hostile peer would never send it.
    conn.socket.destroy();
  }

  private requireTunnel(name: string): TunnelState {
    const tunnel = this.tunnels.get(name);
    if (!tunnel) throw new Error(`"${name}" is not a tunnel connection of this gateway`);
    return tunnel;
  }

  private emitEvent(e: TunnelEvent): void {
    if (NOISY_EVENTS.has(e.event) && !this.noise.admit(e.event, e.peer)) return;
    this.onEventSinkSafe(e);
  }

  private onEventSinkSafe(e: TunnelEvent): void {
    if (e.connection === undefined) delete e.connection;
    try {
      this.onEventSink(e);
    } catch (err) {
      // A failing sink must not take the SSH server down from inside an ssh2 callback.
      process.emitWarning(`tunnel event sink failed on ${e.event}: ${(err as Error).message}`);
    }
  }
}

/** Listens on 127.0.0.1:PORT while a bind_loopback tunnel is up; each TCP connection becomes one channel. */
class LoopbackRelay {
  private readonly sockets = new Set<net.Socket>();
  private constructor(private readonly server: net.Server) {}

  static open(port: number, onSocket: (socket: net.Socket) => void): Promise<LoopbackRelay> {
    return new Promise((resolve, reject) => {
      const server = net.createServer();
      const relay = new LoopbackRelay(server);
      server.on('connection', (socket) => {
        relay.sockets.add(socket);
        socket.once('close', () => relay.sockets.delete(socket));
        onSocket(socket);
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        server.on('error', () => undefined);
        resolve(relay);
      });
    });
  }

  close(): void {
    this.server.close();
    for (const socket of this.sockets) socket.destroy();
  }
}

function openForwardedChannel(client: Connection, forward: ActiveForward, originAddr: string, originPort: number): Promise<ServerChannel> {
  return new Promise((resolve, reject) => {
    try {
      // The edge matches forwarded-tcpip opens by the exact bind address and port it asked for.
      client.forwardOut(forward.bindAddr, forward.port, originAddr, originPort, (err, channel) => (err ? reject(err) : resolve(channel)));
    } catch (err) {
      reject(err as Error);
    }
  });
}

function tunnelDownError(tunnel: TunnelState): Error {
  const { name } = tunnel.endpoint;
  const since = tunnel.lastDown ? ` since ${tunnel.lastDown.toISOString()} (${tunnel.lastDownReason})` : ' yet';
  const hint = tunnel.endpoint.edgePublicKey
    ? `run \`mcp-ssh-gateway edge-setup ${name} --config FILE\` and start what it prints on the device`
    : `no edge_public_key is configured for "${name}", so no device can log in; add it, then run \`mcp-ssh-gateway edge-setup ${name} --config FILE\``;
  return new Error(`tunnel for "${name}" is down: the device has not connected${since}; ${hint}`);
}

function authAttemptOf(ctx: AuthContext): AuthAttempt {
  const base = { username: ctx.username, method: ctx.method as string };
  if (ctx.method !== 'publickey') return base;
  return { ...base, keyAlgo: ctx.key.algo, keyBlob: ctx.key.data, signature: ctx.signature, signedData: ctx.blob, hashAlgo: ctx.hashAlgo };
}

function validateEndpoints(endpoints: TunnelEndpoint[]): void {
  const names = new Set<string>();
  const ports = new Set<number>();
  for (const { name, port } of endpoints) {
    if (names.has(name)) throw new Error(`tunnel connection "${name}" appears twice`);
    if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new Error(`tunnel connection "${name}": port ${port} is not in 1-65535`);
    if (ports.has(port)) throw new Error(`tunnel connection "${name}": port ${port} is already used by another tunnel connection`);
    names.add(name);
    ports.add(port);
  }
}

function hostKeyLineOrThrow(hostKey: string | Buffer): string {
  try {
    return publicKeyLineOf(hostKey);
  } catch (err) {
    throw new Error(`tunnel host key cannot be used: ${(err as Error).message}`);
  }
}

function fingerprintOf(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

const SOCKET_ERRORS: Record<string, string> = {
  ECONNRESET: 'connection reset by the edge',
  ETIMEDOUT: 'connection timed out',
  EPIPE: 'connection broken',
};

function describeError(err: Error & { code?: unknown }): string {
  if (typeof err.code === 'string') return SOCKET_ERRORS[err.code] ?? `${err.code}: ${err.message}`;
  return err.message;
}

function socketKey(address: string | undefined, port: number | undefined): string {
  return `${address}|${port}`;
}

export function formatPeer(address: string | undefined, port: number | undefined): string {
  const bare = (address ?? 'unknown').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
  return net.isIPv6(bare) ? `[${bare}]:${port}` : `${bare}:${port}`;
}
