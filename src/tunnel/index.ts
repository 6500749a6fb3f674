// Tunnel mode: the embedded SSH server devices dial into, its trust decisions, and the device-side setup.
export {
  TunnelServer,
  formatPeer,
  type TunnelEndpoint,
  type TunnelEvent,
  type TunnelEventName,
  type TunnelServerOptions,
  type TunnelStatus,
} from './server.js';
export {
  ACCEPTED_BIND_ADDRESSES,
  ALLOWED_AUTH_METHODS,
  MAX_AUTH_TRIES,
  buildEdgeKeyring,
  decideAuthentication,
  decideForward,
  parseEdgePublicKey,
} from './authorize.js';
export { renderEdgeSetup, tunnelCommand, knownHostsLine, publicKeyLineOf, DEFAULT_EDGE_DIR, type EdgeSetupOptions } from './edge-setup.js';
