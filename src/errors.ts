// Gateway-level failures the agent sees as `isError` results. Each message names the cause and what to do next.

export type GatewayErrorKind =
  | 'unknown_connection'
  | 'connect_refused'
  | 'connect_failed'
  | 'auth_refused'
  | 'host_key'
  | 'timeout'
  | 'tunnel_down'
  | 'circuit_open'
  | 'connection_lost'
  | 'bad_input'
  | 'policy_denied';

export class GatewayError extends Error {
  constructor(
    readonly kind: GatewayErrorKind,
    message: string,
    /** Permanent failures (bad key, changed host key) are not retried. */
    readonly permanent = false,
  ) {
    super(message);
    this.name = 'GatewayError';
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
