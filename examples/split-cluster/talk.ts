/**
 * Chat clients that keep talking: N clients on ws://127.0.0.1:8090/ws each say a numbered line
 * every 200 ms for the given seconds, then report how many lines each one heard from every
 * speaker and whether any connection dropped (exit 1 if a line was missing or one dropped).
 *
 *   node dist/examples/split-cluster/talk.js [clients=20] [seconds=10]
 *
 * The URL: CHAT_URL, else the first URL in GATEWIRE_GATEWAY__LISTEN (the variable that moves the
 * cluster to another port), else ws://127.0.0.1:8090/ws.
 */
import WebSocket from 'ws';

const clients = Number(process.argv[2] ?? 20);
const seconds = Number(process.argv[3] ?? 10);
const url =
  process.env.CHAT_URL || process.env.GATEWIRE_GATEWAY__LISTEN?.split(',')[0]?.trim() || 'ws://127.0.0.1:8090/ws';

interface Talker {
  ws: WebSocket;
  id: string;
  said: number;
  heard: Map<string, number>;
  dropped: boolean;
}

/** An open connection; while the cluster is still starting (refused), tries again for up to 30 s. */
async function connect(i: number): Promise<WebSocket> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ws = new WebSocket(url);
    const error = await new Promise<Error | null>((resolve) => {
      ws.once('open', () => resolve(null));
      ws.once('error', resolve);
    });
    if (error === null) return ws;
    if (Date.now() > deadline) throw new Error(`client ${i}: ${error.message}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const talkers: Talker[] = [];
for (let i = 0; i < clients; i++) {
  const ws = await connect(i);
  const talker: Talker = { ws, id: '', said: 0, heard: new Map(), dropped: false };
  ws.on('message', (data) => {
    const text = data.toString();
    if (text.startsWith('Hello ')) talker.id = text.slice(6);
    const said = / said line (\d+)$/.exec(text);
    if (said) {
      const speaker = text.split(' ')[0]!;
      talker.heard.set(speaker, (talker.heard.get(speaker) ?? 0) + 1);
    }
  });
  ws.on('close', () => (talker.dropped = true));
  ws.on('error', (err) => console.error(`client ${i}: ${err.message}`));
  talkers.push(talker);
}
console.log(`${clients} clients connected; talking for ${seconds} s`);
const timers = talkers.map((t) => setInterval(() => t.ws.send(`line ${++t.said}`), 200));
await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
for (const timer of timers) clearInterval(timer);
await new Promise((resolve) => setTimeout(resolve, 3000));

const said = talkers.reduce((sum, t) => sum + t.said, 0);
let missing = 0;
for (const listener of talkers) {
  for (const speaker of talkers) missing += speaker.said - (listener.heard.get(speaker.id) ?? 0);
}
const dropped = talkers.filter((t) => t.dropped).length;
console.log(
  `lines said: ${said}; lines every listener should hear: ${said * clients}; missing: ${missing}; connections dropped: ${dropped}`,
);
for (const t of talkers) t.ws.close();
process.exit(missing === 0 && dropped === 0 ? 0 : 1);
