/**
 * Small fakes for unit tests that run with no broker: a silent logger, a bus on the in-process
 * transport, a recording transport built on it, clients that record what they are sent, and a
 * promise whose settlement a test can read without waiting.
 */
import { pino, type Logger } from 'pino';
import { Bus, type BusOptions } from '../../src/transport/bus.js';
import { LocalHub } from '../../src/transport/local/local-hub.js';
import { LocalTransport } from '../../src/transport/local/local-transport.js';
import type { OutgoingBatch, TransportHooks } from '../../src/transport/transport.js';
import type { Client } from '../../src/gateway/client.js';
import type { OutgoingMessage } from '../../src/gateway/outgoing-message.js';

export const silentLog: Logger = pino({ level: 'silent' });

/** Bus options for a test node; `instance` is 12 characters like a real tag. */
export function busOptions(instance: string, options: Partial<BusOptions> = {}): BusOptions {
  return {
    instance,
    mode: 'direct',
    secret: '',
    uidBuckets: 0,
    groupBuckets: 0,
    maxBufferedCommands: 1000,
    maxCommandsPerMessage: 500,
    ...options,
  };
}

/**
 * The local transport, recording what it is asked to send and bind; what it transmits does not
 * reach any hub subscriber (a hub of its own), and `busHooks` lets a test hand over what "arrives".
 */
export class RecordingTransport extends LocalTransport {
  override keysPerMessage: number;
  readonly sent: OutgoingBatch[] = [];
  readonly bindings: string[] = [];
  /** when set, transmit waits for it (a broker that has not confirmed yet) */
  hold: Promise<void> | null = null;
  busHooks: TransportHooks | null = null;

  constructor(
    instance: string,
    keysPerMessage: number,
    /** may throw: a broker refusing what it is sent */
    private readonly check: (batches: OutgoingBatch[]) => void = () => undefined,
  ) {
    super(busOptions(instance), new LocalHub());
    this.keysPerMessage = keysPerMessage;
  }

  override connect(hooks: TransportHooks): Promise<void> {
    this.busHooks = hooks;
    return super.connect(hooks);
  }
  override async transmitAll(batches: OutgoingBatch[]): Promise<void> {
    this.sent.push(...batches);
    this.check(batches);
    if (this.hold) await this.hold;
  }
  override async bindKey(key: string): Promise<void> {
    this.bindings.push(`+${key}`);
  }
  override async unbindKey(key: string): Promise<void> {
    this.bindings.push(`-${key}`);
  }
}

/** A bus on a LocalHub, started, closed when the test ends. */
export async function localBus(
  t: { after(fn: () => unknown): void },
  hub: LocalHub,
  instance: string,
  options: Partial<BusOptions> = {},
): Promise<Bus> {
  const opts = busOptions(instance, options);
  const bus = new Bus(opts, silentLog, new LocalTransport(opts, hub));
  t.after(() => bus.close());
  await bus.start();
  return bus;
}

/** A client stand-in for the gateway's paths: what it is sent, and close/destroy calls. */
export interface FakeClient extends Client {
  readonly received: OutgoingMessage[];
  readonly ended: string[];
}

export function fakeClient(id: string): FakeClient {
  const received: OutgoingMessage[] = [];
  const ended: string[] = [];
  const client = {
    id,
    uid: null as string | null,
    groups: new Set<string>(),
    session: {},
    sessionVersion: 0,
    received,
    ended,
    send(message: OutgoingMessage): void {
      received.push(message);
    },
    close: (data?: unknown) => ended.push(`close ${String(data)}`),
    destroy: () => ended.push('destroy'),
  };
  return client as unknown as FakeClient;
}

/** A promise's state now, read after the microtasks queued so far have run. */
export async function stateOf(promise: Promise<unknown>): Promise<'pending' | 'resolved' | 'rejected'> {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending';
  promise.then(
    () => (state = 'resolved'),
    () => (state = 'rejected'),
  );
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return state;
}
