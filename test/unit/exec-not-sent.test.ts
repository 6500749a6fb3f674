// A warm connection that dies while a command's channel is still opening: the command never left, so it goes out
// once more on a fresh connection. Once the exec request may have been sent, it is never sent again.
// (The real race, a device killed just before a call, is covered against a real sshd in resilience.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execCommand, CommandNotSentError, type ExecRequest } from '../../src/ssh/exec.js';
import { execOnLiveConnection } from '../../src/gateway/commands.js';
import type { DeviceConnection } from '../../src/ssh/connection.js';
import type { Client } from '../../src/ssh/ssh2.js';

const request: ExecRequest = { command: 'true', timeoutMs: 5000, maxOutputBytes: 1024 };

/** A client whose exec fails the way ssh2 fails it: through the callback, or thrown before anything is sent. */
function failingClient(message: string, how: 'callback' | 'throw' = 'callback'): Client & { execs: number } {
  const client = {
    execs: 0,
    exec(_command: string, _options: unknown, callback: (err?: Error) => void): void {
      client.execs++;
      if (how === 'throw') throw new Error(message);
      queueMicrotask(() => callback(new Error(message)));
    },
  };
  return client as unknown as Client & { execs: number };
}

/** Hands out the given clients in turn, as reconnects would. */
function deviceHanding(...clients: Client[]): DeviceConnection & { handedOut: number } {
  const device = {
    handedOut: 0,
    async usableClient(): Promise<Client> {
      return clients[device.handedOut++]!;
    },
  };
  return device as unknown as DeviceConnection & { handedOut: number };
}

test('a channel that never opened because the connection closed is reported as not sent', async () => {
  for (const [message, how] of [['No response from server', 'callback'], ['Not connected', 'throw']] as const) {
    await assert.rejects(execCommand(failingClient(message, how), request), (err: Error) => {
      assert.ok(err instanceof CommandNotSentError, `${message}: ${err.name}`);
      assert.match(err.message, new RegExp(`closed before the command was sent \\(${message}\\)`));
      return true;
    });
  }
});

test('a failure once the exec request may have gone out is not reported as not sent', async () => {
  for (const message of ['Unable to exec', '(SSH) Channel open failure: open failed']) {
    await assert.rejects(execCommand(failingClient(message), request), (err: Error) => {
      assert.ok(!(err instanceof CommandNotSentError), message);
      assert.equal(err.message, message);
      return true;
    });
  }
});

test('a command not sent goes out once more on a fresh connection, and only once', async () => {
  const dead = failingClient('No response from server');
  const deadAgain = failingClient('No response from server');
  const device = deviceHanding(dead, deadAgain, failingClient('never used'));
  await assert.rejects(execOnLiveConnection(device, dead, request), CommandNotSentError);
  assert.equal(device.handedOut, 2, 'one retry on a fresh connection');
  assert.equal(dead.execs + deadAgain.execs, 2);
});

test('a command that may have been sent is never sent again', async () => {
  const client = failingClient('Unable to exec');
  const device = deviceHanding(client, failingClient('never used'));
  await assert.rejects(execOnLiveConnection(device, client, request), /Unable to exec/);
  assert.equal(device.handedOut, 1);
  assert.equal(client.execs, 1);
});
