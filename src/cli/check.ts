// check: validate the config (every problem at once) and, with --probe, connect to each device.
import { loadConfig, type LoadedConfig } from '../config/load.js';
import { Gateway } from '../gateway/gateway.js';
import { parseCommandArgs, requireOption } from './args.js';
import { errorMessage } from '../errors.js';

const nullAudit = { append: async () => undefined };

async function probe(config: LoadedConfig): Promise<boolean> {
  // Probing reports; it does not audit (nothing is run on the devices but `true`).
  const gateway = new Gateway(config, nullAudit);
  let allOk = true;
  await Promise.all(
    config.connections.map(async (c) => {
      const started = performance.now();
      if (c.mode === 'tunnel') {
        process.stdout.write(`skip  ${c.name}: tunnel devices dial in to a running gateway; see list_connections there\n`);
        return;
      }
      try {
        await gateway.connection(c.name).withSession(async () => undefined);
        process.stdout.write(`ok    ${c.name}: connected in ${Math.round(performance.now() - started)} ms\n`);
      } catch (err) {
        allOk = false;
        process.stdout.write(`FAIL  ${c.name}: ${errorMessage(err)}\n`);
      }
    }),
  );
  await gateway.close();
  return allOk;
}

export async function checkCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(args, { config: { type: 'string' }, probe: { type: 'boolean' } });
  const config = loadConfig(requireOption(values.config, '--config'));
  const tunnels = config.connections.filter((c) => c.mode === 'tunnel').length;
  process.stdout.write(
    `${config.file}: ok (${config.form} form, ${config.connections.length} connection(s), ${tunnels} in tunnel mode; audit log ${config.gateway.audit_log})\n`,
  );
  for (const warning of config.warnings) process.stdout.write(`warning: ${warning}\n`);
  if (!values.probe) return 0;
  return (await probe(config)) ? 0 : 1;
}
