/**
 * A condition code can wait for: open (connection ready) or shut. Waiters are released when it
 * opens, and rejected once it is closed for good (the bus closed).
 */
export class Gate {
  private isOpen = false;
  private failure: Error | null = null;
  private waiters: { resolve: () => void; reject: (err: Error) => void }[] = [];

  get open(): boolean {
    return this.isOpen;
  }

  set(open: boolean): void {
    if (this.failure !== null) return;
    this.isOpen = open;
    if (open) for (const waiter of this.waiters.splice(0)) waiter.resolve();
  }

  /** Resolves when open; rejects if the gate is closed for good. */
  wait(): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.isOpen) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Closes for good: every present and future wait rejects with `err`. */
  fail(err: Error): void {
    this.failure = err;
    this.isOpen = false;
    for (const waiter of this.waiters.splice(0)) waiter.reject(err);
  }

  /** Usable again (a bus started after it was closed). */
  reset(): void {
    this.failure = null;
    this.isOpen = false;
  }
}
