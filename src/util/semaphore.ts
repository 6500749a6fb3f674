/** Counts concurrent holders; callers beyond the limit wait in FIFO order. */
export class Semaphore {
  active = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  get waiting(): number {
    return this.queue.length;
  }

  async acquire(): Promise<() => void> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.queue.shift();
      // Hand the slot straight to the next waiter so the count never dips and lets a newcomer jump the queue.
      if (next) next();
      else this.active--;
    };
  }
}
