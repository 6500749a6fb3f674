// Paths the policy admitted by their text (action path parameters, path slots of structured rules) must also be
// where the device says they are: only it knows where its symlinks point. One SFTP session resolves them all.
import type { Gateway } from './gateway.js';
import { resolvedPathProblem, type ActionPath } from '../policy/index.js';
import { resolveRealPath, withSftp } from '../ssh/sftp.js';
import { onDevice } from './device-sftp.js';

/** Why the first path that leaves its roots once the device follows symlinks does so, or undefined. */
export async function pathEscape(gateway: Gateway, connection: string, paths: readonly ActionPath[], signal: AbortSignal): Promise<string | undefined> {
  if (paths.length === 0) return undefined;
  return onDevice(gateway, connection, 'resolving paths', (client) =>
    withSftp(
      client,
      async (sftp) => {
        for (const path of paths) {
          const real = await resolveRealPath(sftp, path.value);
          const realRoots = await Promise.all(path.roots.map((root) => resolveRealPath(sftp, root)));
          const problem = resolvedPathProblem(path, real, realRoots);
          if (problem) return problem;
        }
        return undefined;
      },
      signal,
    ),
    signal,
  );
}
