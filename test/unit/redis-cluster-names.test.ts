/**
 * Redis Cluster naming (src/transport/redis/channels.ts): slots as Redis computes them, the lanes'
 * hash tags spread evenly over the slot space, the lane of a process, channel names parsed back;
 * and the configuration of a cluster (bus.redis.url lists, bus.redis.cluster, waitReplicas).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { CLUSTER_LANES, CLUSTER_SLOTS, clusterLanes, keySlot, laneOf } from '../../src/transport/redis/channels.js';
import { RedisTransport } from '../../src/transport/redis/redis-transport.js';
import { redisUrls } from '../../src/transport/redis/redis-util.js';
import { loadConfig } from '../../src/config/load.js';
import type { BusOptions } from '../../src/transport/bus.js';
import { configError } from '../helpers/config-files.js';

test('keySlot matches Redis Cluster (CRC16 XMODEM mod 16384, hash tags)', () => {
  // Values from Redis's documentation of CLUSTER KEYSLOT and the CRC16 check value of "123456789".
  assert.equal(keySlot('somekey'), 11058);
  assert.equal(keySlot('foo{hash_tag}'), 2515);
  assert.equal(keySlot('bar{hash_tag}'), 2515);
  assert.equal(keySlot('123456789'), 0x31c3 % CLUSTER_SLOTS);
  // An empty tag is no tag: the whole key is hashed.
  assert.equal(keySlot('a{}b'), keySlot('a{}b'.replace(/x/, '')));
  assert.notEqual(keySlot('{}a'), keySlot('{}b'));
  // Only the first {...} counts.
  assert.equal(keySlot('{x}{y}'), keySlot('x'));
});

test('the lanes of a prefix: one per equal part of the slot space, channels in their lane slot', () => {
  for (const prefix of ['gatewire', 'gwt-r1-abc', 'a', 'prefix:with:colons']) {
    const lanes = clusterLanes(prefix);
    assert.equal(lanes.length, CLUSTER_LANES);
    const width = CLUSTER_SLOTS / CLUSTER_LANES;
    for (const lane of lanes) {
      assert.ok(
        lane.slot >= lane.index * width && lane.slot < (lane.index + 1) * width,
        `${prefix} lane ${lane.index}`,
      );
      assert.equal(keySlot(`${lane.prefix}:u.alice`), lane.slot);
      assert.equal(keySlot(`${lane.prefix}:log`), lane.slot);
      assert.match(lane.prefix, /^\{.+\}$/);
    }
    // On 3 masters owning equal contiguous ranges, each gets at least 20% of the lanes.
    const perMaster = [0, 0, 0];
    for (const lane of lanes) perMaster[Math.min(2, Math.floor(lane.slot / Math.ceil(CLUSTER_SLOTS / 3)))]! += 1;
    for (const count of perMaster) assert.ok(count / CLUSTER_LANES >= 0.2, `${prefix}: ${perMaster}`);
  }
  assert.deepEqual(clusterLanes('gatewire'), clusterLanes('gatewire'));
});

test('laneOf spreads instances over the lanes', () => {
  const used = new Set<number>();
  for (let i = 0; i < 200; i++) used.add(laneOf(`instance${i}`));
  assert.equal(used.size, CLUSTER_LANES);
  assert.equal(laneOf('abc'), laneOf('abc'));
});

test('redisUrls: a list, or comma-separated', () => {
  assert.deepEqual(redisUrls('redis://a:1'), ['redis://a:1']);
  assert.deepEqual(redisUrls(' redis://a:1 , redis://b:2,'), ['redis://a:1', 'redis://b:2']);
  assert.deepEqual(redisUrls(['redis://a:1', 'redis://b:2']), ['redis://a:1', 'redis://b:2']);
});

test('config: bus.redis.cluster with seed URLs from env and from a list; several URLs need cluster', () => {
  const env = {
    GATEWIRE_BUS__KIND: 'redis',
    GATEWIRE_BUS__REDIS__URL: 'redis://10.0.0.1:7000,redis://10.0.0.2:7000',
    GATEWIRE_BUS__REDIS__CLUSTER: 'true',
  };
  const config = loadConfig({ env, configDir: '/nonexistent' });
  assert.equal(config.bus.redis.cluster, true);
  assert.deepEqual(redisUrls(config.bus.redis.url), ['redis://10.0.0.1:7000', 'redis://10.0.0.2:7000']);
  assert.equal(config.bus.redis.waitReplicas, -1);
  assert.equal(config.bus.redis.waitTimeout, 1000);
  const listed = loadConfig({
    env: {},
    configDir: '/nonexistent',
    values: { bus: { kind: 'redis', redis: { url: ['redis://a:1', 'redis://b:2'], cluster: true, waitReplicas: 2 } } },
  });
  assert.deepEqual(listed.bus.redis.url, ['redis://a:1', 'redis://b:2']);
  assert.equal(listed.bus.redis.waitReplicas, 2);
  const err = configError(() =>
    loadConfig({ env: { ...env, GATEWIRE_BUS__REDIS__CLUSTER: 'false' }, configDir: '/nonexistent' }),
  );
  assert.match(err.message, /bus\.redis\.url: several URLs .* need bus\.redis\.cluster=true/);
  assert.match(
    configError(() =>
      loadConfig({ env: { ...env, GATEWIRE_BUS__REDIS__WAIT_REPLICAS: '-2' }, configDir: '/nonexistent' }),
    ).message,
    /bus\.redis\.waitReplicas: must be an integer of at least -1/,
  );
  assert.match(
    configError(() =>
      loadConfig({ env: {}, configDir: '/nonexistent', values: { bus: { kind: 'redis', redis: { url: [] } } } }),
    ).message,
    /bus\.redis\.url: must be a Redis URL/,
  );
});

test('a RedisTransport given several URLs without cluster refuses them', () => {
  const options = { mode: 'direct', instance: 'x' } as BusOptions;
  assert.throws(
    () => new RedisTransport(options, pino({ level: 'silent' }), { url: 'redis://a:1,redis://b:2', prefix: 'p' }),
    /need bus\.redis\.cluster=true/,
  );
  const transport = new RedisTransport(options, pino({ level: 'silent' }), {
    url: 'redis://a:1,redis://b:2',
    prefix: 'p',
    cluster: true,
  });
  // Channels of a cluster carry the lane's hash tag; on one Redis they keep <prefix>:<key>.
  assert.match(transport.channel('u.alice'), /^\{p:l\d+-\d+\}:u\.alice$/);
  const single = new RedisTransport(options, pino({ level: 'silent' }), { url: 'redis://a:1', prefix: 'p' });
  assert.equal(single.channel('u.alice'), 'p:u.alice');
});
