// ssh2 is CommonJS without static named exports; import it once here so ESM code can use named values.
import ssh2 from 'ssh2';

export const Client = ssh2.Client;
export type Client = import('ssh2').Client;
export const Server = ssh2.Server;
export type Server = import('ssh2').Server;
export const utils = ssh2.utils;
export type { ClientChannel, ConnectConfig, ParsedKey } from 'ssh2';
