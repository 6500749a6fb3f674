// The sshd launcher lives in product code (the demo uses it too); tests import it from here.
export * from '../../src/demo/local-sshd.js';
