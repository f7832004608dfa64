/**
 * What Redis will refuse again on every attempt fails the start at once with GW_ERR_BUS_BROKER
 * instead of retrying forever: wrong credentials, and an ACL user without the commands the bus
 * needs (EVAL, for the publish script). The ACL user is made on a private Redis started for
 * this test (an ACL change is a reconfiguration: never on the shared server).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { redisBus } from '../helpers/transports.js';
import type { Bus } from '../../src/transport/bus.js';
import { createInstanceId } from '../../src/protocol/identity.js';
import { ErrorCodes } from '../../src/errors.js';
import { uniqueName } from '../helpers/nodes.js';
import { Redis } from 'ioredis';
import { PrivateRedis } from '../helpers/private-broker.js';

function busFor(url: string): Bus {
  return redisBus(
    {
      instance: createInstanceId(),
      mode: 'direct',
      secret: '',
      uidBuckets: 0,
      groupBuckets: 0,
      maxBufferedCommands: 10,
      maxCommandsPerMessage: 500,
    },
    pino({ level: 'silent' }),
    { url, prefix: uniqueName('gwacl') },
  );
}

test('redis: refused credentials or ACLs fail the start with GW_ERR_BUS_BROKER', async (t) => {
  const server = await PrivateRedis.start();
  const admin = new Redis(server.url, { lazyConnect: false });
  admin.on('error', () => undefined);
  t.after(async () => {
    admin.disconnect();
    await server.stop();
  });
  const user = uniqueName('gwtest-acl');
  await admin.call('ACL', 'SETUSER', user, 'on', '>right-password', '~*', '&*', '+@all', '-eval', '-evalsha');

  // Each start fails at once with GW_ERR_BUS_BROKER, saying what Redis answered.
  const refused = async (password: string, answer: RegExp): Promise<void> => {
    const bus = busFor(`redis://${user}:${password}@127.0.0.1:${server.port}`);
    await assert.rejects(bus.start(), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, ErrorCodes.BUS_BROKER);
      assert.match(err.message, answer);
      return true;
    });
    await bus.close();
  };
  await refused('wrong-password', /WRONGPASS/);
  await refused('right-password', /NOPERM/);
});
