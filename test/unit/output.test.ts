// Output capping (OutputCapture): head and tail kept, totals counted, UTF-8 never mangled at the cut, invalid
// UTF-8 reported, base64 exact, and memory bounded however much a device prints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { OutputCapture, utf8SafeEnd, utf8SafeStart } from '../../src/ssh/output.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function capture(max: number, ...chunks: (string | Buffer)[]): OutputCapture {
  const c = new OutputCapture(max);
  for (const chunk of chunks) c.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return c;
}

/** Bytes the capture still references (what it would keep alive), from its own buffers. */
function retainedBytes(c: OutputCapture): number {
  const internals = c as unknown as { head: Buffer[]; tail: Buffer[] };
  const buffers = [...internals.head, ...internals.tail];
  // Count the memory each buffer pins (its backing store), not just its visible length: a small view into a
  // huge chunk would keep the whole chunk alive.
  // (Small buffers share Node's 8 KiB allocation pool; count only their own bytes.)
  const pooled = (b: Buffer): boolean => b.buffer.byteLength === Buffer.poolSize && b.byteLength < Buffer.poolSize / 2;
  return buffers.reduce((n, b) => n + (pooled(b) ? b.byteLength : b.buffer.byteLength), 0);
}

test('small output comes back whole, untruncated, with its byte count', () => {
  const r = capture(1024, 'hello ', 'world\n').result();
  assert.deepEqual(r, { text: 'hello world\n', truncated: false, total_bytes: 12, omitted_bytes: 0, encoding: 'utf8', invalid_utf8: false });
  const empty = capture(1024).result();
  assert.equal(empty.text, '');
  assert.equal(empty.total_bytes, 0);
  assert.equal(empty.truncated, false);
});

test('output exactly at the cap is not truncated; one byte more is', () => {
  const exact = capture(100, 'x'.repeat(100)).result();
  assert.equal(exact.truncated, false);
  assert.equal(exact.text, 'x'.repeat(100));
  const over = capture(100, 'x'.repeat(101)).result();
  assert.equal(over.truncated, true);
  assert.equal(over.total_bytes, 101);
  assert.equal(over.omitted_bytes, 1);
});

test('large output keeps the head and the tail and counts what was left out', () => {
  const lines = Array.from({ length: 10_000 }, (_, i) => `line ${String(i).padStart(5, '0')}\n`); // 11 bytes each
  const c = new OutputCapture(1000);
  // Pushed in odd-sized chunks, as SSH packets arrive.
  const all = Buffer.from(lines.join(''));
  for (let at = 0; at < all.length; at += 777) c.push(all.subarray(at, at + 777));
  const r = c.result();
  assert.equal(r.total_bytes, 110_000);
  assert.equal(r.truncated, true);
  assert.equal(r.omitted_bytes, 110_000 - 1000);
  assert.ok(r.text.startsWith('line 00000\nline 00001\n'), r.text.slice(0, 40));
  assert.ok(r.text.endsWith('line 09998\nline 09999\n'), r.text.slice(-40));
  assert.match(r.text, /\n\[\.\.\. 109000 bytes omitted \.\.\.\]\n/);
  // head (500) + tail (500) bytes of real output, plus the marker line.
  const [head, tail] = r.text.split(/\n\[\.\.\. \d+ bytes omitted \.\.\.\]\n/);
  assert.equal(Buffer.byteLength(head), 500);
  assert.equal(Buffer.byteLength(tail), 500);
  assert.equal(head, all.subarray(0, 500).toString());
  assert.equal(tail, all.subarray(all.length - 500).toString());
});

test('a multibyte character cut by the cap is dropped whole, never turned into invalid output', () => {
  // "€" is 3 bytes, "😀" is 4: whatever the cap, the cut lands inside a character for some of these.
  for (const ch of ['é', '€', '😀']) {
    const size = Buffer.byteLength(ch);
    for (let max = 10; max < 10 + 2 * size; max++) {
      const r = capture(max, ch.repeat(50)).result();
      assert.equal(r.truncated, true);
      assert.equal(r.invalid_utf8, false, `${ch} max ${max}`);
      assert.ok(!r.text.includes('\uFFFD'), `replacement char in ${JSON.stringify(r.text)} (max ${max})`);
      const [head, tail] = r.text.split(/\n\[\.\.\. \d+ bytes omitted \.\.\.\]\n/);
      assert.match(head, new RegExp(`^(${ch})+$`, 'u'));
      assert.match(tail, new RegExp(`^(${ch})+$`, 'u'));
      // The count of omitted bytes includes the partial characters dropped at the cut.
      assert.equal(Buffer.byteLength(head) + Buffer.byteLength(tail) + r.omitted_bytes, 50 * size);
    }
  }
  // A character split across two pushes (two SSH packets) is reassembled, not mangled.
  const euro = Buffer.from('€');
  const r = capture(1024, euro.subarray(0, 1), euro.subarray(1, 2), euro.subarray(2)).result();
  assert.equal(r.text, '€');
  assert.equal(r.invalid_utf8, false);
});

test('utf8SafeEnd / utf8SafeStart find character boundaries', () => {
  const euro = Buffer.from('a€'); // 61 e2 82 ac
  assert.equal(utf8SafeEnd(euro), 4);
  assert.equal(utf8SafeEnd(euro.subarray(0, 3)), 1);
  assert.equal(utf8SafeEnd(euro.subarray(0, 2)), 1);
  assert.equal(utf8SafeStart(euro.subarray(2)), 2);
  assert.equal(utf8SafeStart(Buffer.from('abc')), 0);
});

test('bytes that are not UTF-8 are reported, never silently replaced', () => {
  const r = capture(1024, Buffer.from([0x61, 0xff, 0xfe, 0x62])).result();
  assert.equal(r.invalid_utf8, true);
  assert.equal(r.text, 'a\uFFFD\uFFFDb');
  // Also when the output is truncated and the invalid bytes are in the kept tail.
  const big = capture(100, 'x'.repeat(1000), Buffer.from([0xc3, 0x28])).result();
  assert.equal(big.truncated, true);
  assert.equal(big.invalid_utf8, true);
});

test('base64 gives the exact bytes, including invalid UTF-8 and NULs', () => {
  const bytes = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x0a]);
  const r = capture(1024, bytes.subarray(0, 3), bytes.subarray(3)).result('base64');
  assert.equal(r.encoding, 'base64');
  assert.equal(r.invalid_utf8, false);
  assert.deepEqual(Buffer.from(r.text, 'base64'), bytes);
  // Truncated base64: exactly the head bytes followed by exactly the tail bytes.
  const all = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 256));
  const t = capture(64, all).result('base64');
  assert.equal(t.truncated, true);
  assert.equal(t.total_bytes, 1000);
  assert.deepEqual(Buffer.from(t.text, 'base64'), Buffer.concat([all.subarray(0, 32), all.subarray(1000 - 32)]));
});

test('memory stays bounded: 200 MB pushed through a 64 KiB capture keeps ~64 KiB', () => {
  gc();
  const before = process.memoryUsage();
  const c = new OutputCapture(64 * 1024);
  const chunkSize = 32 * 1024;
  let maxRetained = 0;
  for (let sent = 0, i = 0; sent < 200_000_000; sent += chunkSize, i++) {
    // A fresh buffer per chunk, as the SSH stream delivers them.
    const chunk = Buffer.alloc(Math.min(chunkSize, 200_000_000 - sent), 0x41 + (i % 26));
    c.push(chunk);
    if (i % 500 === 0) maxRetained = Math.max(maxRetained, retainedBytes(c));
  }
  gc();
  const after = process.memoryUsage();
  const r = c.result();
  assert.equal(r.total_bytes, 200_000_000);
  assert.equal(r.truncated, true);
  assert.ok(maxRetained <= 256 * 1024, `capture retained ${maxRetained} bytes`);
  assert.ok(retainedBytes(c) <= 256 * 1024, `capture retained ${retainedBytes(c)} bytes at the end`);
  const grown = after.arrayBuffers + after.heapUsed - (before.arrayBuffers + before.heapUsed);
  // Coarse (the heap moves for other reasons too), but far below the 200 MB that went through.
  assert.ok(grown < 64 * 1024 * 1024, `memory grew by ${grown} bytes`);
});

test('a single huge chunk is not kept alive by the small head slice taken from it', () => {
  const c = new OutputCapture(1024);
  c.push(Buffer.alloc(8 * 1024 * 1024, 0x61));
  assert.ok(retainedBytes(c) <= 64 * 1024, `capture pins ${retainedBytes(c)} bytes of an 8 MiB chunk`);
  assert.equal(c.result().total_bytes, 8 * 1024 * 1024);
});
