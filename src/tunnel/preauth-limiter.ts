// The few slots for connections that hold no tunnel yet (not authenticated, or logged in without a forward).
// Anyone who can reach the tunnel port can open sockets, so a full table must never mean "refuse the newcomer":
// that hands the port to whoever opened sockets first. Instead the newcomer always gets a slot and the connection
// ended to make room is the oldest of the source that holds the most slots. A real device holds one slot from its
// own network, so an attacker has to out-spread it (hold no more slots per source than the device) to touch it.
// A source is a /24 (IPv4) or /64 (IPv6): one host easily owns a whole /24 or /64, so counting per address would
// give it as many shares as it has addresses.
import net from 'node:net';

export interface PreauthLimits {
  /** Slots in all. */
  maxTotal: number;
  /** Slots one source may hold. */
  maxPerSource: number;
}

export interface Eviction<T> {
  /** The connection ended to make room (already released from the table). */
  evicted: T;
  source: string;
  /** Slots `source` held before the eviction. */
  held: number;
  /** 'source-share': the newcomer's own source was at its share; 'table-full': every slot was taken. */
  cause: 'source-share' | 'table-full';
}

interface Slot<T> {
  readonly item: T;
  readonly source: string;
  /** Admission order: smaller is older. */
  readonly seq: number;
}

export class PreauthLimiter<T> {
  /** Each source's slots, oldest first. */
  private readonly bySource = new Map<string, Slot<T>[]>();
  private readonly slots = new Map<T, Slot<T>>();
  private nextSeq = 0;

  constructor(private readonly limits: PreauthLimits) {
    for (const [name, value] of Object.entries(limits)) {
      if (!Number.isInteger(value) || value < 1) throw new Error(`pre-auth limit ${name} must be an integer ≥ 1 (got ${value})`);
    }
  }

  get size(): number {
    return this.slots.size;
  }

  holds(item: T): boolean {
    return this.slots.has(item);
  }

  countOf(source: string): number {
    return this.bySource.get(source)?.length ?? 0;
  }

  /** Gives `item` a slot; when none is free, releases and returns the one that had to go for it. */
  admit(item: T, source: string): Eviction<T> | undefined {
    if (this.slots.has(item)) return undefined;
    const eviction = this.makeRoomFor(source);
    const slot = { item, source, seq: this.nextSeq++ };
    this.slots.set(item, slot);
    const list = this.bySource.get(source);
    if (list) list.push(slot);
    else this.bySource.set(source, [slot]);
    return eviction;
  }

  /** Frees `item`'s slot; false when it held none (never admitted, already released or evicted). */
  release(item: T): boolean {
    const slot = this.slots.get(item);
    if (!slot) return false;
    this.slots.delete(item);
    const list = this.bySource.get(slot.source)!;
    list.splice(list.indexOf(slot), 1);
    if (list.length === 0) this.bySource.delete(slot.source);
    return true;
  }

  private makeRoomFor(source: string): Eviction<T> | undefined {
    const own = this.bySource.get(source);
    // A source at its share replaces its own oldest: the newest is the likeliest to be alive, and a device that
    // shares a NAT with a flooding host still gets its turn instead of a refusal.
    if (own && own.length >= this.limits.maxPerSource) return this.evictOldestOf(source, own, 'source-share');
    if (this.slots.size < this.limits.maxTotal) return undefined;
    const [victimSource, victimList] = this.largestSource();
    return this.evictOldestOf(victimSource, victimList, 'table-full');
  }

  /** The source holding the most slots; among equals, the one whose oldest slot is oldest. */
  private largestSource(): [string, Slot<T>[]] {
    let best: [string, Slot<T>[]] | undefined;
    for (const entry of this.bySource) {
      const [, list] = entry;
      if (!best || list.length > best[1].length || (list.length === best[1].length && list[0]!.seq < best[1][0]!.seq)) best = entry;
    }
    return best!;
  }

  private evictOldestOf(source: string, list: Slot<T>[], cause: Eviction<T>['cause']): Eviction<T> {
    const held = list.length;
    const oldest = list[0]!.item;
    this.release(oldest);
    return { evicted: oldest, source, held, cause };
  }
}

/**
 * The source an address is counted under: "a.b.c.0/24" for IPv4 (IPv4-mapped IPv6 included), "w:x:y:z::/64" for
 * IPv6. Anything unparsable counts as itself, so it can't share (or escape) another source's count.
 */
export function sourceOf(address: string | undefined): string {
  const bare = (address ?? 'unknown').replace(/%.*$/, ''); // a zone id names the interface, not the host
  if (net.isIPv4(bare)) return ipv4Source(bare);
  if (!net.isIPv6(bare)) return bare;
  const groups = ipv6Groups(bare);
  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  if (mapped) return ipv4Source([groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff].join('.'));
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

function ipv4Source(address: string): string {
  return `${address.split('.').slice(0, 3).map(Number).join('.')}.0/24`;
}

/** The eight 16-bit groups of a valid IPv6 address ("::" expanded, a trailing dotted quad turned into two groups). */
function ipv6Groups(address: string): number[] {
  let text = address.toLowerCase();
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number) as [number, number, number, number];
    text = text.slice(0, quad.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const front = parse(head);
  if (tail === undefined) return front;
  const back = parse(tail);
  return [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
}
