/**
 * The handler for the cron-push example: every client that connects joins the group "clock",
 * the group examples/cron-push/push.ts sends the time to.
 *
 *   GATEWIRE_BUS__KIND=amqp GATEWIRE_WORKER__HANDLER=dist/examples/cron-push/handler.js node bin/gatewire.js start
 */
import type { EventHandler } from '../../src/index.js';

export const GROUP = 'clock';

const clock: EventHandler = {
  async onConnect(clientId, { gateway }) {
    await gateway.joinGroup(clientId, GROUP);
    await gateway.sendToClient(clientId, `Hello ${clientId}: you are in "${GROUP}"`);
  },
  // What clients send is not part of this example: it answers with how many listen.
  async onMessage(clientId, _message, { gateway }) {
    const count = await gateway.getClientCountByGroup(GROUP);
    await gateway.sendToClient(clientId, `${count} client(s) in "${GROUP}"`);
  },
};

export default clock;
