// A cron job that pushes to a group through the same API as handlers: a publisher (no clients,
// no handler) joins the bus and sends the time to the group "clock" every 10 seconds.
//
//   GATEWIRE_BUS__KIND=amqp node dist/examples/cron-push/push.js [--schedule "<croner pattern>"]
//
// The schedule is a croner pattern whose first field may be seconds: the default
// "*/10 * * * * *" (six fields) is every 10 seconds, "0 * * * * *" is at the start of every
// minute; a five-field pattern has no seconds field ("*/10 * * * *" is every 10 minutes).
// (A line comment: in a /** */ block, "*/10" would end the comment.)
//
// Clients join the group from a handler: examples/cron-push/handler.ts does it in onConnect
// (`await gateway.joinGroup(clientId, 'clock')`); examples/cron-push/README.md runs it all.
import { Cron } from 'croner';
import { createPublisher, loadConfig } from '../../src/index.js';

const scheduleFlag = process.argv.indexOf('--schedule');
// Every 10 seconds (croner accepts an optional seconds field).
const schedule = scheduleFlag > 0 ? process.argv[scheduleFlag + 1]! : '*/10 * * * * *';

const publisher = await createPublisher(loadConfig());
const job = new Cron(schedule, { protect: true, catch: (err) => console.error('push failed:', err) }, async () => {
  const clients = await publisher.api.getClientCountByGroup('clock');
  await publisher.api.sendToGroup('clock', `It is ${new Date().toISOString()}`);
  console.log(`pushed the time to ${clients} client(s) in "clock"`);
});
console.log(`cron-push: "${schedule}", next run ${job.nextRun()?.toISOString()}`);

const stop = async (): Promise<void> => {
  job.stop();
  await publisher.close();
  process.exit(0);
};
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
