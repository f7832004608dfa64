/**
 * RabbitMQ cluster settings without a broker: bus.amqp.url as a list (env, config file, code),
 * the check naming a bad entry without showing it, redaction of every password of a list, the
 * round-robin over the URLs, the queue type `auto`, which messages are published mandatory, and
 * the outbox retrying nacks (quorum queues nack while they elect a leader).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { configError, tempDir } from '../helpers/config-files.js';
import { loadConfig } from '../../src/config/load.js';
import { redactUrl } from '../../src/config/redact.js';
import { ErrorCodes } from '../../src/errors.js';
import { BrokerUrls, connectFirst, parseAmqpUrls } from '../../src/transport/amqp/amqp-urls.js';
import { resolveQueueType } from '../../src/transport/amqp/amqp-topology.js';
import { isMandatory, outboxMessages, unroutableKind } from '../../src/transport/amqp/amqp-publishing.js';
import type { OutgoingBatch } from '../../src/transport/transport.js';
import { pino } from 'pino';
import { EventEmitter } from 'node:events';
import type { ConfirmChannel } from 'amqplib';
import { ConfirmOutbox } from '../../src/transport/amqp/confirm-outbox.js';

const THREE = 'amqp://app:pw1@mq1:5672, amqp://app:pw2@mq2:5672 ,amqp://app:pw3@mq3:5672';

test('bus.amqp.url: a comma-separated list in env, a list in a config file, queueType defaults to auto', (t) => {
  const fromEnv = loadConfig({ env: { GATEWIRE_BUS__AMQP__URL: THREE }, configDir: '/nonexistent' });
  assert.equal(fromEnv.bus.amqp.url, THREE);
  assert.deepEqual(parseAmqpUrls(fromEnv.bus.amqp.url), [
    'amqp://app:pw1@mq1:5672',
    'amqp://app:pw2@mq2:5672',
    'amqp://app:pw3@mq3:5672',
  ]);
  assert.equal(fromEnv.bus.amqp.queueType, 'auto');

  const dir = tempDir(t);
  const file = path.join(dir, 'cluster.json');
  fs.writeFileSync(
    file,
    JSON.stringify({ bus: { amqp: { url: ['amqp://a:b@h1:5672', 'amqp://a:b@h2:5673'], queueType: 'classic' } } }),
  );
  const fromFile = loadConfig({ env: {}, files: [file], configDir: '/nonexistent' });
  assert.equal(fromFile.bus.amqp.url, 'amqp://a:b@h1:5672,amqp://a:b@h2:5673', 'a list is joined as env gives it');
  assert.equal(fromFile.bus.amqp.queueType, 'classic');

  const fromEnvType = loadConfig({ env: { GATEWIRE_BUS__AMQP__QUEUE_TYPE: 'quorum' }, configDir: '/nonexistent' });
  assert.equal(fromEnvType.bus.amqp.queueType, 'quorum');
});

test('a bad entry in bus.amqp.url is named by its place and host, never shown with its password', () => {
  const bad = configError(() =>
    loadConfig({
      env: { GATEWIRE_BUS__AMQP__URL: 'amqp://app:secret1@mq1:5672,http://app:secret2@mq2:15672' },
      configDir: '/nonexistent',
    }),
  );
  assert.equal(bad.code, ErrorCodes.INVALID_CONFIG);
  assert.match(
    bad.message,
    /bus\.amqp\.url: entry 2 of 2 \(host mq2:15672\) has scheme http: \(amqp: or amqps: expected\)/,
  );
  assert.doesNotMatch(bad.message, /secret/);

  const unparsable = configError(() =>
    loadConfig({ env: { GATEWIRE_BUS__AMQP__URL: 'amqp://mq1:5672,not a url:pw@' }, configDir: '/nonexistent' }),
  );
  assert.match(unparsable.message, /bus\.amqp\.url: entry 2 of 2 is not a URL/);
  assert.doesNotMatch(unparsable.message, /pw@/);

  const empty = configError(() => loadConfig({ env: { GATEWIRE_BUS__AMQP__URL: ' , ' }, configDir: '/nonexistent' }));
  assert.match(empty.message, /bus\.amqp\.url: must name at least one RabbitMQ URL/);

  const type = configError(() =>
    loadConfig({ env: { GATEWIRE_BUS__AMQP__QUEUE_TYPE: 'stream' }, configDir: '/nonexistent' }),
  );
  assert.match(type.message, /bus\.amqp\.queueType/);
});

test('redactUrl hides the password of every URL of a list', () => {
  assert.equal(redactUrl(THREE), 'amqp://app:***@mq1:5672,amqp://app:***@mq2:5672,amqp://app:***@mq3:5672');
  assert.equal(redactUrl(['amqp://a:x@h1', 'amqp://h2']), 'amqp://a:***@h1,amqp://h2');
  assert.equal(redactUrl('amqp://app:secret@mq:5672/vh'), 'amqp://app:***@mq:5672/vh');
  assert.equal(redactUrl('amqp://a:x@h1,::bad::'), 'amqp://a:***@h1,(unparsable URL)');
});

test('BrokerUrls: one place per seed, then round the list; one URL stays put', () => {
  const urls = ['amqp://h1', 'amqp://h2', 'amqp://h3'];
  const starts = new Set<string>();
  for (let i = 0; i < 60; i++) starts.add(new BrokerUrls(urls, `instance-${i}`).current);
  assert.equal(starts.size, 3, 'processes spread over every broker node');

  const rotating = new BrokerUrls(urls.join(','), 'some-instance');
  assert.equal(rotating.clustered, true);
  const seen = [rotating.current];
  for (let i = 0; i < 3; i++) {
    rotating.advance();
    seen.push(rotating.current);
  }
  assert.equal(seen[3], seen[0], 'back to the start after the whole list');
  assert.deepEqual([...new Set(seen.slice(0, 3))].sort(), urls);
  assert.equal(new BrokerUrls(urls, 'some-instance').current, seen[0], 'the same seed starts at the same place');

  const single = new BrokerUrls('amqp://only', 'x');
  single.advance();
  assert.equal(single.current, 'amqp://only');
  assert.equal(single.clustered, false);
});

test('connectFirst tries each URL once, from the seed place, and reports the last failure', async () => {
  const tried: string[] = [];
  const connected = await connectFirst('amqp://h1,amqp://h2,amqp://h3', 'seed', async (url) => {
    tried.push(url);
    if (tried.length < 3) throw new Error(`down: ${url}`);
    return url;
  });
  assert.equal(tried.length, 3);
  assert.equal(connected, tried[2]);
  await assert.rejects(
    connectFirst(['amqp://h1', 'amqp://h2'], 'seed', async (url) => {
      throw new Error(`down: ${url}`);
    }),
    /down: amqp:\/\/h/,
  );
});

test('queueType auto: quorum for several URLs, classic for one; an explicit type wins', () => {
  assert.equal(resolveQueueType('auto', true), 'quorum');
  assert.equal(resolveQueueType('auto', false), 'classic');
  assert.equal(resolveQueueType(undefined, true), 'quorum');
  assert.equal(resolveQueueType('classic', true), 'classic');
  assert.equal(resolveQueueType('quorum', false), 'quorum');
});

test('mandatory: node and broadcast keys and every fanout message; uid and group keys alone are not', () => {
  assert.equal(isMandatory('direct', 'n.abc', []), true);
  assert.equal(isMandatory('direct', 'all', []), true);
  assert.equal(isMandatory('direct', 'u.42', []), false);
  assert.equal(isMandatory('direct', 'g.room', ['ub.3', 'gb.1']), false);
  assert.equal(isMandatory('direct', 'u.42', ['g.room', 'n.abc']), true);
  assert.equal(isMandatory('fanout', '', []), true);

  const log = pino({ level: 'silent' });
  const batch = (keys: string[]): OutgoingBatch =>
    ({ keys, sealer: () => () => Buffer.alloc(0) }) as unknown as OutgoingBatch;
  const messages = outboxMessages([batch(['u.1']), batch(['n.x']), batch(['g.a', 'all'])], 'direct', log);
  assert.deepEqual(
    messages.map((m) => [m.routingKey, m.mandatory]),
    [
      ['u.1', false],
      ['n.x', true],
      ['g.a', true],
    ],
  );

  const returned = (routingKey: string, cc?: string[]) =>
    ({ fields: { routingKey }, properties: { headers: cc ? { CC: cc } : {} } }) as unknown as Parameters<
      typeof unroutableKind
    >[0];
  assert.equal(unroutableKind(returned('n.abc')), 'node');
  assert.equal(unroutableKind(returned('u.1', ['n.abc'])), 'node');
  assert.equal(unroutableKind(returned('all')), 'broadcast');
  assert.equal(unroutableKind(returned('')), 'fanout');
});

test('ConfirmOutbox with retryNacks: a nack replaces the channel and the message goes out again, in order', async () => {
  const published: { key: string; confirm: (err: unknown) => void }[][] = [];
  const channel = () => {
    const sent: { key: string; confirm: (err: unknown) => void }[] = [];
    published.push(sent);
    const fake = new EventEmitter() as EventEmitter & { publish: unknown };
    fake.publish = (_x: string, key: string, _b: Buffer, _o: unknown, confirm: (err: unknown) => void) => {
      sent.push({ key, confirm });
      return true;
    };
    return fake as unknown as ConfirmChannel;
  };
  const broken: string[] = [];
  const outbox = new ConfirmOutbox((err) => broken.push(err.message), 2);
  outbox.attach(channel(), 'x');
  const msg = (key: string) => ({ routingKey: key, cc: [], seal: () => Buffer.from(key) });
  const done = outbox.addAll([msg('a'), msg('b')]);
  published[0]![0]!.confirm(new Error('nacked'));
  assert.equal(broken.length, 1, 'the nack counts as a broken channel');
  assert.match(broken[0]!, /nacked/);
  outbox.attach(channel(), 'x');
  assert.deepEqual(
    published[1]!.map((p) => p.key),
    ['a', 'b'],
    'everything unconfirmed goes out again, first and in order',
  );
  // Nacked again, and a third time: past retryNacks (2) the promise rejects as without retries.
  published[1]![0]!.confirm(new Error('nacked'));
  outbox.attach(channel(), 'x');
  published[2]![0]!.confirm(new Error('nacked'));
  await assert.rejects(done, { code: ErrorCodes.BUS_BROKER });
  assert.equal(broken.length, 2);
});
