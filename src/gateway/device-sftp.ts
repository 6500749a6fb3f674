// SFTP work on a device, the way every file tool (and run_action's path check) does it: on the warm connection,
// in one of its session slots, with failures turned into errors the agent can act on.
import type { Gateway } from './gateway.js';
import type { Client } from '../ssh/ssh2.js';
import { sftpError } from '../ssh/sftp.js';
import { GatewayError } from '../errors.js';

/**
 * Runs `work` on the device's warm connection, holding one session slot; SFTP failures become clear errors. A
 * failure because the client cancelled (which ends the SFTP session) is the client's doing, not the device's: it
 * must not count towards the device's circuit breaker.
 */
export async function onDevice<T>(gateway: Gateway, connection: string, what: string, work: (client: Client) => Promise<T>, signal?: AbortSignal): Promise<T> {
  const device = gateway.connection(connection);
  try {
    return await device.withSession(async (client) => work(await device.usableClient(client)));
  } catch (err) {
    if (signal?.aborted) throw new GatewayError('bad_input', `${what} on "${connection}" was cancelled by the client before it finished.`);
    const mapped = sftpError(err, what, connection);
    if (mapped.kind === 'connection_lost' && !(err instanceof GatewayError)) device.noteFailure(err);
    throw mapped;
  }
}
