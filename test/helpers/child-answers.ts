/**
 * Requests to a forked child over IPC, each answered by the child with its id:
 * { id, ok: true, value } or { id, ok: false, error, code? } (test/helpers/child-node.ts and the
 * benchmark's server processes).
 */
import type { ChildProcess } from 'node:child_process';

type AnswerMessage = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string; code?: string };

interface Waiter {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

export class PendingAnswers {
  private nextId = 1;
  private readonly waiting = new Map<number, Waiter>();

  /** Reads the answers of `child`; a failed one rejects with "<label>: <error>" (and its code). */
  constructor(label: string, child: ChildProcess) {
    child.on('message', (message: AnswerMessage) => {
      const waiter = this.waiting.get(message.id);
      if (waiter === undefined) return;
      this.waiting.delete(message.id);
      if (message.ok) waiter.resolve(message.value);
      else waiter.reject(Object.assign(new Error(`${label}: ${message.error}`), { code: message.code }));
    });
  }

  /**
   * A new request: `send` sends it under the id given; resolves with the answer's value. With
   * `timeout`, rejects with its message if no answer came within its ms.
   */
  ask<T>(send: (id: number) => void, timeout?: { ms: number; message: string }): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer =
        timeout &&
        setTimeout(() => {
          this.waiting.delete(id);
          reject(new Error(timeout.message));
        }, timeout.ms);
      this.waiting.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      send(id);
    });
  }

  /** Rejects the request `id` with `err` if it still waits (its message could not be sent). */
  fail(id: number, err: Error): void {
    const waiter = this.waiting.get(id);
    if (waiter === undefined) return;
    this.waiting.delete(id);
    waiter.reject(err);
  }

  /** Rejects every waiting request with `err` (the child ended). */
  failAll(err: Error): void {
    for (const waiter of this.waiting.values()) waiter.reject(err);
    this.waiting.clear();
  }
}
