// Hostile sequences against the pre-auth slot table: floods from many sources must never refuse a newcomer or
// displace a device that holds fewer slots than the flooders.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PreauthLimiter, sourceOf } from '../../src/tunnel/preauth-limiter.js';

/** Admits `count` items named `${prefix}${i}` from `source`; returns their names and every eviction on the way. */
function flood(limiter: PreauthLimiter<string>, source: string, count: number, prefix = source) {
  const names: string[] = [];
  const evicted: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${prefix}#${i}`;
    names.push(name);
    const eviction = limiter.admit(name, source);
    if (eviction) evicted.push(eviction.evicted);
  }
  return { names, evicted };
}

test('sources are /24 for IPv4, /64 for IPv6, and IPv4-mapped IPv6 counts as IPv4', () => {
  assert.equal(sourceOf('203.0.113.7'), '203.0.113.0/24');
  assert.equal(sourceOf('203.0.113.250'), '203.0.113.0/24');
  assert.equal(sourceOf('::ffff:203.0.113.9'), '203.0.113.0/24');
  assert.equal(sourceOf('::FFFF:cb00:7109'), '203.0.113.0/24');
  assert.equal(sourceOf('0:0:0:0:0:ffff:203.0.113.9'), '203.0.113.0/24');
  assert.equal(sourceOf('2001:db8:1:2::1'), '2001:db8:1:2::/64');
  assert.equal(sourceOf('2001:0DB8:0001:0002:ffff:1:2:3'), '2001:db8:1:2::/64');
  assert.equal(sourceOf('2001:db8:1:3::1'), '2001:db8:1:3::/64');
  assert.equal(sourceOf('fe80::1%eth0'), 'fe80:0:0:0::/64');
  assert.equal(sourceOf('::1'), '0:0:0:0::/64');
  assert.equal(sourceOf('::'), '0:0:0:0::/64');
  // An IPv6 address that merely contains ffff somewhere is not IPv4-mapped.
  assert.equal(sourceOf('::ffff:0:203.0.113.9'), '0:0:0:0::/64');
  assert.equal(sourceOf('1::ffff:203.0.113.9'), '1:0:0:0::/64');
  assert.equal(sourceOf(undefined), 'unknown');
  assert.equal(sourceOf('not an address'), 'not an address');
});

test('a full table never refuses: the newcomer is admitted and the oldest of the largest source goes', () => {
  const limiter = new PreauthLimiter<string>({ maxTotal: 64, maxPerSource: 16 });
  // 16 silent sockets from each of 5 sources: the finding's lockout.
  const attack = ['10.0.1.0/24', '10.0.2.0/24', '10.0.3.0/24', '10.0.4.0/24', '10.0.5.0/24'].map((s) => flood(limiter, s, 16));
  assert.equal(limiter.size, 64);
  // Sources 1-4 filled 64 slots; each of source 5's sockets displaced the then-largest source's oldest.
  assert.deepEqual(attack.slice(0, 4).map((a) => a.evicted), [[], [], [], []]);
  assert.equal(attack[4]!.evicted.length, 16);
  assert.deepEqual(attack[4]!.evicted.slice(0, 4), ['10.0.1.0/24#0', '10.0.2.0/24#0', '10.0.3.0/24#0', '10.0.4.0/24#0']);

  const device = limiter.admit('device', '198.51.100.0/24');
  assert.ok(device, 'a slot was freed for the device');
  assert.ok(limiter.holds('device'));
  assert.notEqual(device.source, '198.51.100.0/24');
  assert.equal(device.cause, 'table-full');
  assert.equal(limiter.size, 64);

  // The flood goes on from every source, round after round: the device keeps its slot throughout.
  for (let round = 0; round < 20; round++) {
    for (const source of ['10.0.1.0/24', '10.0.2.0/24', '10.0.3.0/24', '10.0.4.0/24', '10.0.5.0/24']) {
      const { evicted } = flood(limiter, source, 16, `${source}/r${round}`);
      assert.ok(!evicted.includes('device'), `round ${round} from ${source} evicted the device`);
    }
  }
  assert.ok(limiter.holds('device'));
  assert.equal(limiter.size, 64);
});

test('a source at its share replaces its own oldest and nobody else', () => {
  const limiter = new PreauthLimiter<string>({ maxTotal: 64, maxPerSource: 16 });
  limiter.admit('device', '198.51.100.0/24');
  const { names, evicted } = flood(limiter, '10.0.1.0/24', 40);
  assert.deepEqual(evicted, names.slice(0, 24), 'oldest first, only its own');
  assert.equal(limiter.countOf('10.0.1.0/24'), 16);
  assert.ok(limiter.holds('device'));
  assert.equal(limiter.size, 17);
  // And the share applies to the source, however many addresses it spreads over.
  const spread = new PreauthLimiter<string>({ maxTotal: 64, maxPerSource: 16 });
  for (let host = 1; host <= 30; host++) spread.admit(`10.0.7.${host}`, sourceOf(`10.0.7.${host}`));
  assert.equal(spread.countOf('10.0.7.0/24'), 16);
  assert.ok(!spread.holds('10.0.7.14') && spread.holds('10.0.7.15'));
});

test('among equally large sources the one with the oldest slot gives way', () => {
  const limiter = new PreauthLimiter<string>({ maxTotal: 4, maxPerSource: 4 });
  limiter.admit('a1', 'A');
  limiter.admit('b1', 'B');
  limiter.admit('b2', 'B');
  limiter.admit('a2', 'A');
  // A and B hold two each; A's a1 is the oldest slot.
  assert.deepEqual(limiter.admit('c1', 'C'), { evicted: 'a1', source: 'A', held: 2, cause: 'table-full' });
  // Now B is the largest.
  assert.equal(limiter.admit('c2', 'C')!.evicted, 'b1');
  // B, A and C hold one, one and two: C is the largest, though its slots are the newest.
  assert.equal(limiter.admit('d1', 'D')!.evicted, 'c1');
});

test('one slot per source against many single-slot flooders: the device goes only after every older slot', () => {
  // The residual risk: an attacker with more sources than slots. The device is then evicted only once it is
  // the oldest, i.e. after maxTotal - 1 newer connections arrived while it was still authenticating.
  const limiter = new PreauthLimiter<string>({ maxTotal: 8, maxPerSource: 2 });
  for (let i = 0; i < 8; i++) limiter.admit(`x${i}`, `S${i}`);
  limiter.admit('device', 'D');
  let newer = 0;
  while (limiter.holds('device')) {
    limiter.admit(`y${newer}`, `T${newer}`);
    newer++;
  }
  assert.equal(newer, 8);
});

test('release frees the slot once; releasing an evicted or unknown item changes nothing', () => {
  const limiter = new PreauthLimiter<string>({ maxTotal: 2, maxPerSource: 2 });
  limiter.admit('a', 'A');
  assert.equal(limiter.admit('a', 'A'), undefined, 're-admitting a holder takes no second slot');
  assert.equal(limiter.size, 1);
  limiter.admit('b', 'A');
  const eviction = limiter.admit('c', 'B');
  assert.equal(eviction!.evicted, 'a');
  assert.equal(limiter.release('a'), false);
  assert.equal(limiter.release('nobody'), false);
  assert.equal(limiter.size, 2);
  assert.equal(limiter.release('b'), true);
  assert.equal(limiter.release('b'), false);
  assert.equal(limiter.countOf('A'), 0);
  assert.equal(limiter.size, 1);
  assert.equal(limiter.admit('d', 'A'), undefined, 'a freed slot is reused without evicting');
});

test('limits must be positive integers', () => {
  assert.throws(() => new PreauthLimiter({ maxTotal: 0, maxPerSource: 1 }), /maxTotal must be an integer ≥ 1/);
  assert.throws(() => new PreauthLimiter({ maxTotal: 4, maxPerSource: 1.5 }), /maxPerSource must be an integer ≥ 1/);
});
