/**
 * The channels subscribed on the sub connection: in direct mode one per desired key, subscribed on
 * the first local holder and unsubscribed on the last (the bus's desired set drives bind/unbind);
 * in fanout mode the one fanout channel. Kept so that the channels subscribed on the current sub
 * connection are exactly the desired set (redis-transport.ts's header), across reconnects. A key
 * has one channel per lane (channels.ts): one on a single Redis, CLUSTER_LANES on a cluster, where
 * each sender publishes on its own lane.
 */
import { nodeKey } from '../../protocol/routing-keys.js';
import { channelOf } from './channels.js';
import { TurnBatch, isReplyError } from './redis-util.js';
import { ShardedSubscriber } from './redis-shards.js';
import type { RedisLink, SubClient } from './redis-link.js';

export class ChannelSubscriptions {
  /** keys subscribed and confirmed on the current sub connection */
  private readonly subscribedOnSub = new Set<string>();
  private fanoutSubscribed = false;

  // Subscriptions asked for in one event-loop turn go out together in the next, as one SUBSCRIBE
  // with many channels: a login storm or the replay of 100,000 keys costs a few commands.
  private readonly subscribes = new TurnBatch<string>((channels) => this.onSub((sub) => sub.subscribe(...channels)));
  private readonly unsubscribes = new TurnBatch<string>((channels) => this.unsubscribeAll(channels));

  constructor(private readonly link: RedisLink) {}

  /** Channels subscribed on the current sub connection. */
  get count(): number {
    return this.subscribedOnSub.size + (this.fanoutSubscribed ? 1 : 0);
  }

  async bind(key: string): Promise<void> {
    // Fanout mode has no per-key channels (the bus may still hold its node and broadcast routes,
    // whose keys are null there): the one fanout channel is subscribed by subscribeFanout().
    if (this.link.mode === 'fanout') return;
    const channels = this.link.channelsOf(key);
    for (;;) {
      await this.link.subReady.wait();
      const subEpoch = this.link.subEpoch;
      await Promise.all(channels.map((channel) => this.subscribes.add(channel)));
      // Confirmed on a connection that has closed since: that subscription is gone with it.
      if (subEpoch === this.link.subEpoch) {
        this.subscribedOnSub.add(key);
        return;
      }
    }
  }

  async unbind(key: string): Promise<void> {
    if (this.link.mode === 'fanout') return;
    if (this.subscribedOnSub.delete(key) && this.link.subReady.open) {
      await Promise.all(this.link.channelsOf(key).map((channel) => this.unsubscribes.add(channel)));
    }
  }

  /** The sub connection closed: its subscriptions are gone with it. */
  lost(): void {
    this.subscribedOnSub.clear();
    this.fanoutSubscribed = false;
  }

  /**
   * Fanout mode, once per sub connection: the fanout channel, and the node's own channel though
   * nothing is published there in fanout mode: other nodes see through PUBSUB NUMSUB whether this
   * node still listens (probe). False if a connection closed meanwhile (the setup is stale).
   */
  async subscribeFanout(sub: SubClient, epoch: number): Promise<boolean> {
    if (this.link.mode !== 'fanout' || this.fanoutSubscribed) return true;
    const { lanes, instance } = this.link;
    await sub.subscribe(...this.link.channelsOf(null), channelOf(lanes[0]!.prefix, nodeKey(instance)));
    if (epoch !== this.link.connEpoch) return false;
    this.fanoutSubscribed = true;
    return true;
  }

  /**
   * Drops subscriptions still on a sub connection that survived while the pub connection was
   * down, for keys that stopped being desired meanwhile. Sends synchronously, so a bind of the
   * same key that comes after goes out after it on the same connection.
   */
  dropStale(sub: SubClient): void {
    if (this.subscribedOnSub.size === 0) return;
    const desired = new Set(this.link.desiredKeys());
    for (const key of [...this.subscribedOnSub]) {
      if (desired.has(key)) continue;
      this.subscribedOnSub.delete(key);
      sub.unsubscribe(...this.link.channelsOf(key)).catch(() => undefined);
    }
  }

  /** Runs a (un)subscribe on the sub connection, waiting for it and retrying across reconnects. */
  private async onSub<T>(run: (sub: SubClient) => Promise<T>): Promise<T> {
    for (;;) {
      await this.link.subReady.wait();
      const sub = this.link.sub!;
      try {
        return await run(sub);
      } catch (err) {
        if (this.link.stopping) throw this.link.closedError('the bus was closed');
        if (
          sub instanceof ShardedSubscriber &&
          isReplyError(err) &&
          /^(MOVED|ASK|CLUSTERDOWN|TRYAGAIN)/.test(String((err as Error).message))
        ) {
          // The slot moved, or its shard is failing over: the group is built again from the slot owners.
          sub.moved();
        } else if (isReplyError(err)) throw this.link.brokerError('a subscription', err);
        await this.link.afterFailure('sub');
      }
    }
  }

  /** UNSUBSCRIBE, not retried: a connection that dropped took its subscriptions with it. */
  private async unsubscribeAll(channels: string[]): Promise<void> {
    const sub = this.link.sub;
    if (sub === null || sub.status !== 'ready') return;
    try {
      await sub.unsubscribe(...channels);
    } catch (err) {
      if (isReplyError(err)) throw this.link.brokerError('UNSUBSCRIBE', err);
    }
  }
}
