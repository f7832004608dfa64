/**
 * Scenario 7 (gatewire only): a reconnect storm of gatewire.v1 sessions (docs/client-protocol.md).
 *
 * Three nodes: an issuer with no clients, gateway A and gateway B. 2,000 gatewire.v1 clients
 * (test/bench/v1-client.ts, raw sockets) connect to A, each bound to its own uid. The issuer
 * streams numbered pushes to the uids at a fixed rate (push k to a uid carries `#k#`). Then all
 * 2,000 connections are cut at once (the sockets are destroyed: FIN, no close frame), the pushes
 * go on for the cut, and all 2,000 reconnect at once and resume: the even ones at A (the session
 * stays where it is), the odd ones at B (a takeover through the bus). Measured from the moment
 * the reconnects start: until every client has its welcome with `resumed: true`, and until every
 * client has every push issued before that moment. The stream then stops, everything issued must
 * arrive, and each client checks that its pushes came exactly once and in order: messages lost,
 * repeated, and sessions not resumed must all be 0.
 */
import { monoMicros } from '../protocol.js';
import { V1Pool } from '../v1-client.js';
import { busLabel, fmt, gatewireSpec, rowsOf, sum, waitBound, withServers } from './common.js';
import type { BusChoice, Context, Row } from './common.js';

const SIZE = 64;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Pushes to uid i among the first `issued` of the stream (push j goes to uid j % uids). */
function pushesTo(i: number, issued: number, uids: number): number {
  return Math.floor(issued / uids) + (i < issued % uids ? 1 : 0);
}

/** Polls `done` every 5 ms; false after `timeoutMs`. */
async function until(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) return false;
    await sleep(5);
  }
  return true;
}

export async function reconnectStorm(ctx: Context, buses: BusChoice[]): Promise<Row[]> {
  const clients = ctx.quick ? 500 : 2000;
  const rate = ctx.quick ? 2000 : 5000;
  const liveMs = 1000;
  const cutMs = ctx.quick ? 1000 : 2000;
  const timeoutMs = 30000;
  const setups = buses.map((bus) => ({ system: 'gatewire' as const, label: `gatewire, ${busLabel(bus)}`, bus }));
  return rowsOf(ctx, 'reconnectStorm', setups, ({ label, bus }) => {
    const tag = `r7-${bus.kind}-${'mode' in bus ? bus.mode : ''}`;
    return withServers(
      ctx,
      [
        { spec: gatewireSpec(ctx, bus, tag), label: `${label} (issuer)` },
        { spec: gatewireSpec(ctx, bus, tag), label: `${label} (gateway A)` },
        { spec: gatewireSpec(ctx, bus, tag), label: `${label} (gateway B)` },
      ],
      async (servers) => {
        const [issuer, gatewayA, gatewayB] = servers as [(typeof servers)[0], (typeof servers)[0], (typeof servers)[0]];
        const pool = new V1Pool();
        try {
          const prefix = `${tag}-u`;
          const conns = Array.from({ length: clients }, (_, i) => pool.add(`/ws?uid=${prefix}${i}`));
          await pool.connect(conns, () => gatewayA.port, 100);
          await waitBound([gatewayA], [clients]);
          ctx.log(`  ${label}: ${fmt(clients)} gatewire.v1 clients bound at gateway A; pushes at ${fmt(rate)}/s`);
          await issuer.streamStart(prefix, clients, rate, SIZE);
          await sleep(liveMs);

          // The cut: every connection dropped without a close frame; the pushes go on.
          const atCut = (await issuer.streamIssued()).issued;
          for (const c of conns) c.cut();
          await sleep(cutMs);

          // The storm: everyone at once; even clients back at A, odd ones at B.
          const tally = pool.tally;
          const atReconnect = (await issuer.streamIssued()).issued;
          pool.setTargets((i) => pushesTo(i, atReconnect, clients));
          tally.resetWelcomes(clients);
          const before = await Promise.all(servers.map((s) => s.stats()));
          const clientCpu = process.cpuUsage();
          const started = monoMicros();
          ctx.log(
            `  ${label}: cut ${cutMs} ms (about ${fmt(atReconnect - atCut)} pushes); ${fmt(clients)} reconnect at once`,
          );
          await pool.connect(conns, (_, i) => (i % 2 === 0 ? gatewayA.port : gatewayB.port), clients);
          const caughtUp = await until(() => tally.caughtUpAt !== 0, timeoutMs);
          const clientCpuUsed = process.cpuUsage(clientCpu);
          const after = await Promise.all(servers.map((s) => s.stats()));
          const resumeMs = (tally.welcomesDoneAt - started) / 1000;
          const caughtUpMs = caughtUp ? (tally.caughtUpAt - started) / 1000 : Number.NaN;
          const welcomes = conns.map((c) => (c.welcomedAt - started) / 1000).sort((a, b) => a - b);
          const resumeP50Ms = welcomes[Math.floor((welcomes.length - 1) / 2)]!;
          const lastWelcome = (parity: number): number =>
            Math.max(...conns.filter((_, i) => i % 2 === parity).map((c) => c.welcomedAt - started)) / 1000;

          // Live pushes a little longer, then everything issued must arrive, once and in order.
          await sleep(500);
          const final = await issuer.streamStop();
          const arrived = await until(
            () => conns.every((c, i) => c.got >= pushesTo(i, final.issued, clients)),
            timeoutMs,
          );
          const missing = sum(conns.map((c, i) => Math.max(0, pushesTo(i, final.issued, clients) - c.got)));
          const lost = tally.skipped + missing;
          const notResumed = tally.freshWelcomes;
          const end = await Promise.all(servers.map((s) => s.stats()));
          const cpuMs = servers.map(
            (_, i) => (after[i]!.cpuUser - before[i]!.cpuUser + after[i]!.cpuSystem - before[i]!.cpuSystem) / 1000,
          );
          const sessions = (i: number): { resumed: number; takenOver: number; notResumed: number } =>
            end[i]!.sessions ?? { resumed: 0, takenOver: 0, notResumed: 0 };
          const pushErrors = end[0]!.errors;
          const complete =
            caughtUp &&
            arrived &&
            lost === 0 &&
            tally.repeats === 0 &&
            notResumed === 0 &&
            tally.closedByServer === 0 &&
            pushErrors === 0;
          ctx.log(
            `  ${label}: resumed ${tally.resumedWelcomes}/${clients} in ${fmt(resumeMs)} ms (median ${fmt(resumeP50Ms)} ms) ` +
              `(A ${fmt(lastWelcome(0))} ms, B ${fmt(lastWelcome(1))} ms); caught up in ${fmt(caughtUpMs)} ms; ` +
              `${fmt(final.issued)} pushes, lost ${lost}, repeats ${tally.repeats}, resumed:false ${notResumed}; ` +
              `server counters: A resumed ${sessions(1).resumed}, B took over ${sessions(2).takenOver}, ` +
              `new sessions for a token ${sessions(1).notResumed + sessions(2).notResumed}`,
          );
          const problems = [
            caughtUp ? '' : `not caught up within ${timeoutMs / 1000} s (${tally.caughtUp} of ${clients})`,
            arrived ? '' : `not every push arrived within ${timeoutMs / 1000} s after the stream stopped`,
            tally.closedByServer > 0 ? `${tally.closedByServer} connections closed by the server` : '',
            pushErrors > 0 ? `${pushErrors} push calls failed on the issuer` : '',
          ].filter((p) => p !== '');
          return {
            scenario: 'reconnectStorm',
            system: 'gatewire',
            label,
            complete,
            metrics: {
              clients,
              offeredPerSec: rate,
              cutMs,
              pushesDuringCut: atReconnect - atCut,
              pushes: final.issued,
              delivered: tally.messages,
              resumeMs,
              resumeP50Ms,
              resumeSameGatewayMs: lastWelcome(0),
              resumeOtherGatewayMs: lastWelcome(1),
              caughtUpMs,
              lost,
              repeats: tally.repeats,
              notResumed,
              resumedAtA: sessions(1).resumed,
              takenOverAtB: sessions(2).takenOver,
              serverCpuMs: sum(cpuMs),
              clientCpuMs: (clientCpuUsed.user + clientCpuUsed.system) / 1000,
            },
            result: `all resumed in ${fmt(resumeMs)} ms; cut's pushes in ${fmt(caughtUpMs)} ms`,
            cpu: `${fmt(sum(cpuMs))} ms (3 nodes)`,
            detail:
              `${fmt(clients)} clients (median welcome ${fmt(resumeP50Ms)} ms), half back at the same gateway (${fmt(lastWelcome(0))} ms), half at another ` +
              `(${fmt(lastWelcome(1))} ms); ${fmt(atReconnect - atCut)} pushes during a ${fmt(cutMs)} ms cut at ${fmt(rate)}/s; ` +
              `lost ${fmt(lost)}, repeats ${fmt(tally.repeats)}, resumed: false ${fmt(notResumed)} (of ${fmt(final.issued)} pushes); ` +
              `CPU issuer ${fmt(cpuMs[0]!)} + A ${fmt(cpuMs[1]!)} + B ${fmt(cpuMs[2]!)} ms, load client ${fmt((clientCpuUsed.user + clientCpuUsed.system) / 1000)} ms`,
            note: problems.length > 0 ? problems.join('; ') : undefined,
          } satisfies Row;
        } finally {
          pool.close();
        }
      },
    );
  });
}
