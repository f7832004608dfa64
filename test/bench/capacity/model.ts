/**
 * The capacity model (docs/scaling.md): pure arithmetic from measured per-operation costs
 * (docs/bench/capacity-costs.json) to the load of N nodes × C connections × a push mix. No I/O
 * here, so test/unit/capacity-model.test.ts checks it without a broker.
 *
 * Units: CPU in µs of CPU time (user + system) per operation, or µs per second (÷ 1e6 = cores);
 * bytes; ms for times.
 */

export type BusKind = 'amqp' | 'redis';
export type BusMode = 'fanout' | 'direct';
export type ModeId = 'amqp-fanout' | 'amqp-direct' | 'redis-fanout' | 'redis-direct';
export const MODE_IDS: readonly ModeId[] = ['amqp-fanout', 'amqp-direct', 'redis-fanout', 'redis-direct'];

/** What one bus mode costs, measured on one machine (test/bench/capacity/measure.ts). */
export interface ModeCosts {
  /** node CPU per push call on the node that issues it (API, encoding, publishing, confirm) */
  publishUs: number;
  /** node CPU per bus push received with no local target (fanout: every node gets every push); 0 in direct mode */
  passUs: number;
  /** node CPU per push received and written to its one local client (receive + one frame) */
  uidDeliverUs: number;
  /** node CPU per further client frame of one push (a broadcast or a group with several local members) */
  frameUs: number;
  /** node CPU per login: TCP connect, WebSocket upgrade, onWebSocketConnect, bindUid until it resolved */
  loginUs: number;
  /** node CPU a joinGroup adds to a login */
  joinUs: number;
  /** joins per second a node adds to its logins (wall-clock, as loginsPerSecNode) */
  joinsPerSecNode: number;
  /** broker CPU per copy of a push it routes to one node (fanout: N copies a push; direct: one per node holding a target) */
  brokerCopyUs: number;
  /** broker CPU per key bound (bindUid/joinGroup in direct mode: queue bind or SUBSCRIBE); 0 in fanout mode */
  brokerBindUs: number;
  /** broker CPU per connected node per second with no traffic (membership announcements, heartbeats) */
  brokerIdleNodeUsPerSec: number;
  /**
   * logins per second one node completed (its bind confirmed), measured wall-clock with 100
   * handshakes in flight; on AMQP in direct mode also taken as the broker's whole bind rate
   * (RabbitMQ applies binds one at a time)
   */
  loginsPerSecNode: number;
  /** broker back (start_app returned / Redis answers PING) until a node with few keys is reachable again */
  reconnectMs: number;
  /** keys re-bound per second after a broker restart, measured with one node: the whole broker's rate on AMQP, each node's on Redis (direct mode) */
  rebindsPerSec: number;
  /** bytes node → broker per push, payload excluded (framing, envelope, confirms' share, consumers' acks) */
  busInBytesPerPush: number;
  /** bytes broker → node per copy of a push, payload excluded */
  busOutBytesPerCopy: number;
  /** RSS per connected and bound client, KB, after full GCs */
  rssPerConnKb: number;
  /** CPU of the load client (not gatewire) per login, for runs where clients share the cores */
  clientLoginUs?: number;
}

export interface Coefficients {
  /** where and how they were measured */
  machine: Record<string, unknown>;
  date: string;
  command: string;
  /** 1-minute load average before and after the measurement (the machine may be shared) */
  load: { start: number; end: number };
  /** payload size of the measured pushes, bytes (the overheads above exclude it) */
  payloadBytes: number;
  gateway: {
    /** node CPU per heartbeat of one idle WebSocket connection (ping frame out, pong in) */
    pingUs: number;
    /** node CPU per second of an idle node (timers, membership), no clients */
    nodeIdleUsPerSec: number;
    /** RSS of a started node with no clients, MB */
    rssBaseMb: number;
    /** CPU per push of the measurement's own push loop (taken out of publishUs; for the record) */
    loopUsPerPush?: number;
  };
  modes: Record<ModeId, ModeCosts>;
  /** raw figures of each measurement, for the record */
  raw?: Record<string, unknown>;
}

/** The deployment and load to predict for. */
export interface Params {
  nodes: number;
  connections: number;
  bus: BusKind | null;
  mode: BusMode | null;
  /** pushes issued per second in the whole cluster (spread evenly over the nodes) */
  pushRate: number;
  /** shares of the push rate: sendToUid, sendToGroup, sendToAll; sum 1 */
  mix: { uid: number; group: number; all: number };
  /** groups each connection is in */
  groupsPerConn: number;
  /** members of a group (so groups = connections × groupsPerConn / groupSize) */
  groupSize: number;
  /** connections of one uid (phone + laptop: 2) */
  connsPerUid: number;
  /** payload bytes of a push */
  payload: number;
  /** logins per second offered during a login storm; null: as fast as the system allows */
  loginRate: number | null;
  /** heartbeat period, s (gateway.pingInterval; 0: off) */
  pingInterval: number;
  /** cores that the nodes and the broker share (all on one machine); null: each process has its own */
  sharedCores: number | null;
  /** with sharedCores: the clients run on those cores too (a test run on one machine) */
  clientsShareCores: boolean;
  /**
   * push commands per bus message: pushes a node issues in one event-loop turn travel merged. 1:
   * each push alone (how the costs were measured, the upper bound)
   */
  merge: number;
  /** direct mode: bus.uidBuckets / bus.groupBuckets (0: one key per uid / group) */
  uidBuckets: number;
  groupBuckets: number;
}

export const DEFAULT_PARAMS: Params = {
  nodes: 3,
  connections: 3000,
  bus: null,
  mode: null,
  pushRate: 1000,
  mix: { uid: 0.7, group: 0.2, all: 0.1 },
  groupsPerConn: 1,
  groupSize: 50,
  connsPerUid: 1,
  payload: 64,
  loginRate: null,
  pingInterval: 25,
  sharedCores: null,
  clientsShareCores: false,
  merge: 1,
  uidBuckets: 0,
  groupBuckets: 0,
};

export interface Prediction {
  mode: ModeId;
  /** CPU of each node, cores (every node alike: connections and pushes spread evenly) */
  nodeCores: number;
  /** the parts of nodeCores, cores */
  nodeParts: { publish: number; receive: number; frames: number; heartbeats: number; idle: number };
  /** broker CPU, cores (all broker processes together) */
  brokerCores: number;
  /** bytes per second nodes → broker and broker → nodes (all nodes) */
  busInBytesPerSec: number;
  busOutBytesPerSec: number;
  /** client frames per second written by all nodes, and their bytes (WebSocket header included) */
  framesPerSec: number;
  clientBytesPerSec: number;
  /** RSS of each node, MB */
  nodeRssMb: number;
  /** broker keys each node binds (direct mode: uids and groups it holds; fanout: 0) */
  keysPerNode: number;
  /** time to log in all connections, ms, and what bounds it */
  loginMs: number;
  loginBound: 'offered rate' | 'node CPU' | 'node login rate' | 'broker bind rate' | 'broker CPU' | 'shared cores';
  /** node CPU during the login storm, cores (on top of nodeCores) */
  loginNodeCores: number;
  /** broker back until every uid and group is reachable again, ms */
  recoveryMs: number;
  /** where this mode stops: one line per limit passed */
  warnings: string[];
}

/** Probability that a given node holds at least one of `members` clients spread at random over `nodes`. */
export function reach(members: number, nodes: number): number {
  if (members <= 0) return 0;
  if (nodes <= 1) return 1;
  return 1 - Math.pow(1 - 1 / nodes, members);
}

/** WebSocket header bytes of a server frame (unmasked) carrying `payload` bytes. */
export function wsHeaderBytes(payload: number): number {
  return payload < 126 ? 2 : payload < 65536 ? 4 : 10;
}

export function modeId(bus: BusKind, mode: BusMode): ModeId {
  return `${bus}-${mode}`;
}

/** The prediction for `params` in one mode from `coeff`. */
export function predict(coeff: Coefficients, params: Params, id: ModeId): Prediction {
  const costs = coeff.modes[id];
  if (costs === undefined)
    throw new Error(`the coefficients have no figures for ${id}; run npm run capacity -- --measure`);
  const fanout = id.endsWith('fanout');
  // RabbitMQ applies binds one at a time for the whole broker; Redis subscribes on each node's own
  // connection, so a measured bind rate is the broker's on AMQP and each node's on Redis.
  const amqp = id.startsWith('amqp');
  const N = params.nodes;
  const C = params.connections;
  const k = params.connsPerUid;
  const S = params.groupSize;
  const groups = (C * params.groupsPerConn) / S;
  const uids = C / k;
  const rate = {
    uid: params.pushRate * params.mix.uid,
    group: params.pushRate * params.mix.group,
    all: params.pushRate * params.mix.all,
  };
  // Per push kind: members, the share of nodes holding at least one, frames on a node.
  const kinds = [
    { rate: rate.uid, members: k },
    { rate: rate.group, members: S },
    { rate: rate.all, members: C },
  ].map((kind) => ({ ...kind, hit: reach(kind.members, N) }));
  // With buckets (direct mode) a uid or group push goes to every node bound to its bucket: the
  // nodes holding a member of any uid (group) of that bucket. Those without the target drop it
  // as a fanout node would (the passUs of the same bus's fanout mode, not measured with buckets).
  const buckets = [fanout ? 0 : params.uidBuckets, fanout ? 0 : params.groupBuckets, 0];
  const bucketMembers = [
    C / Math.max(1, params.uidBuckets),
    (C * params.groupsPerConn) / Math.max(1, params.groupBuckets),
    0,
  ];
  const passUs = fanout ? costs.passUs : coeff.modes[id.replace('direct', 'fanout') as ModeId].passUs;
  const bound = kinds.map((kind, i) => (buckets[i]! > 0 ? Math.max(kind.hit, reach(bucketMembers[i]!, N)) : kind.hit));

  // Node CPU, µs per second, one node. The per-message costs (publish, receive, broker copy, bus
  // framing) are shared by the `merge` pushes of one message.
  const M = params.merge;
  const publish = ((params.pushRate / N) * costs.publishUs) / M;
  let receive = 0;
  let frames = 0;
  let copies = 0;
  let framesPerSec = 0;
  for (const [i, kind] of kinds.entries()) {
    const local = kind.members / N;
    // A node holding a target pays a receive and a first frame (uidDeliverUs), then frameUs per further local frame.
    receive += (kind.rate * kind.hit * (costs.uidDeliverUs - costs.frameUs)) / M;
    frames += kind.rate * local * costs.frameUs;
    // A fanout node also receives (and drops) every push it holds no target of.
    if (fanout) receive += (kind.rate * (1 - kind.hit) * costs.passUs) / M;
    else receive += (kind.rate * (bound[i]! - kind.hit) * passUs) / M;
    copies += kind.rate * (fanout ? N : N * bound[i]!);
    framesPerSec += kind.rate * kind.members;
  }
  const heartbeats = params.pingInterval > 0 ? ((C / N) * coeff.gateway.pingUs) / params.pingInterval : 0;
  const idle = coeff.gateway.nodeIdleUsPerSec;
  const nodeUs = publish + receive + frames + heartbeats + idle;
  const brokerUs = (copies * costs.brokerCopyUs) / M + N * costs.brokerIdleNodeUsPerSec;

  // Keys each node binds in direct mode: the uids and groups it holds a member of.
  const uidKeys = params.uidBuckets > 0 ? params.uidBuckets * reach(bucketMembers[0]!, N) : uids * reach(k, N);
  const groupKeys = params.groupBuckets > 0 ? params.groupBuckets * reach(bucketMembers[1]!, N) : groups * reach(S, N);
  const keysPerNode = fanout ? 0 : uidKeys + groupKeys;
  const connsPerNode = C / N;

  // Login: the slowest of the offered rate, each node's CPU (one core, Node is one thread), each
  // node's measured login rate (handshakes and confirmations in flight), the broker's bind rate
  // (measured; RabbitMQ applies binds one at a time, so it is the whole broker's) and its CPU.
  const g = params.groupsPerConn;
  const loginCpuUs = costs.loginUs + g * costs.joinUs;
  const bounds: { ms: number; bound: Prediction['loginBound'] }[] = [
    { ms: params.loginRate === null ? 0 : (C / params.loginRate) * 1000, bound: 'offered rate' },
    { ms: (connsPerNode * loginCpuUs) / 1000, bound: 'node CPU' },
    {
      ms: (connsPerNode / costs.loginsPerSecNode + (connsPerNode * g) / costs.joinsPerSecNode) * 1000,
      bound: 'node login rate',
    },
    { ms: fanout || !amqp ? 0 : ((N * keysPerNode) / costs.loginsPerSecNode) * 1000, bound: 'broker bind rate' },
    { ms: (N * keysPerNode * costs.brokerBindUs) / 1000, bound: 'broker CPU' },
  ];
  // On shared cores the logins take at least all their CPU work spread over those cores.
  if (params.sharedCores !== null) {
    const clientUs = params.clientsShareCores ? (costs.clientLoginUs ?? 0) : 0;
    const workUs = C * (loginCpuUs + clientUs) + N * keysPerNode * costs.brokerBindUs;
    bounds.push({ ms: workUs / 1000 / params.sharedCores, bound: 'shared cores' });
  }
  const login = bounds.reduce((a, b) => (b.ms > a.ms ? b : a));
  const loginSeconds = login.ms / 1000;
  const loginNodeCores = loginSeconds > 0 ? (connsPerNode * loginCpuUs) / 1e6 / loginSeconds : 0;

  // Recovery: reconnect, then the nodes replay their keys at the measured rebind rate (AMQP: the
  // whole broker's; Redis: each node's) or the broker's CPU, whichever is slower.
  const rebindMs = fanout
    ? 0
    : Math.max(
        (((amqp ? N : 1) * keysPerNode) / costs.rebindsPerSec) * 1000,
        (N * keysPerNode * costs.brokerBindUs) / 1000,
      );
  const recoveryMs = costs.reconnectMs + rebindMs;

  const P = params.payload;
  const prediction: Prediction = {
    mode: id,
    nodeCores: nodeUs / 1e6,
    nodeParts: {
      publish: publish / 1e6,
      receive: receive / 1e6,
      frames: frames / 1e6,
      heartbeats: heartbeats / 1e6,
      idle: idle / 1e6,
    },
    brokerCores: brokerUs / 1e6,
    busInBytesPerSec: params.pushRate * (costs.busInBytesPerPush / M + P),
    busOutBytesPerSec: copies * (costs.busOutBytesPerCopy / M + P),
    framesPerSec,
    clientBytesPerSec: framesPerSec * (P + wsHeaderBytes(P)),
    nodeRssMb: coeff.gateway.rssBaseMb + (connsPerNode * costs.rssPerConnKb) / 1024,
    keysPerNode,
    loginMs: login.ms,
    loginBound: login.bound,
    loginNodeCores,
    recoveryMs,
    warnings: [],
  };
  prediction.warnings = limits(prediction, id, params);
  return prediction;
}

/** Where the prediction passes a limit of one process (docs/scaling.md, "Where each mode stops"). */
function limits(p: Prediction, id: ModeId, params: Params): string[] {
  const out: string[] = [];
  if (p.nodeCores > 0.7)
    out.push(
      `each node needs ${p.nodeCores.toFixed(2)} cores: a node is one thread (keep it under about 0.7); add nodes` +
        (id.endsWith('fanout') && p.nodeParts.receive > p.nodeParts.frames
          ? ', or use direct mode (in fanout every node receives every push)'
          : ''),
    );
  const redis = id.startsWith('redis');
  if (redis && p.brokerCores > 0.7)
    out.push(
      `Redis needs ${p.brokerCores.toFixed(2)} cores, and one Redis is one thread: shard it (bus.redis.cluster, docs/cluster-redis.md)`,
    );
  if (!redis && p.brokerCores > 0.7)
    out.push(
      `RabbitMQ needs ${p.brokerCores.toFixed(2)} cores: ${id === 'amqp-direct' && params.uidBuckets === 0 ? 'use bus.uidBuckets (fewer, fuller messages), or ' : ''}spread the load over a RabbitMQ cluster (bus.amqp.url list, docs/cluster-rabbitmq.md)`,
    );
  if (p.recoveryMs > 30000)
    out.push(
      `recovery after a broker restart takes ${(p.recoveryMs / 1000).toFixed(0)} s (${Math.round(p.keysPerNode)} keys a node): ${redis ? 'shard Redis' : params.uidBuckets === 0 ? 'use bus.uidBuckets to bound the keys' : 'use fewer buckets'}`,
    );
  if (params.sharedCores !== null && p.nodeCores * params.nodes + p.brokerCores > params.sharedCores * 0.7)
    out.push(
      `the nodes and the broker need ${(p.nodeCores * params.nodes + p.brokerCores).toFixed(2)} of the ${params.sharedCores} shared cores`,
    );
  if (params.loginRate !== null && p.loginBound !== 'offered rate')
    out.push(`logins cannot keep up with ${params.loginRate}/s: bounded by ${p.loginBound}`);
  return out;
}

// ---- arguments ------------------------------------------------------------------------------

export type Command =
  | { kind: 'help' }
  | { kind: 'predict'; params: Params; costsFile: string | null; json: boolean }
  | { kind: 'measure'; out: string | null; quick: boolean; repeat: number }
  | { kind: 'validate'; costsFile: string | null; quick: boolean };

export const HELP = `npm run capacity -- [options]: predicts the load of a gatewire cluster from measured costs

  --nodes N              gatewire nodes (gateway + worker) (default ${DEFAULT_PARAMS.nodes})
  --connections C        client connections, spread evenly over the nodes (default ${DEFAULT_PARAMS.connections})
  --bus amqp|redis       the bus (default: both)
  --mode direct|fanout   the bus mode (default: both)
  --push-rate N          pushes per second in the whole cluster, issued evenly from the nodes (default ${DEFAULT_PARAMS.pushRate}); "N/s" works too
  --mix uid=U,group=G,all=A
                         shares of the push rate: sendToUid, sendToGroup, sendToAll; they must add up to 1
                         (default uid=0.7,group=0.2,all=0.1)
  --groups-per-conn G    groups each connection is in (default ${DEFAULT_PARAMS.groupsPerConn})
  --group-size S         members of a group (default ${DEFAULT_PARAMS.groupSize})
  --conns-per-uid K      connections of one uid (default ${DEFAULT_PARAMS.connsPerUid})
  --payload B            payload bytes of a push (default ${DEFAULT_PARAMS.payload})
  --login-rate N         logins per second offered in a login storm (default: as fast as it goes)
  --ping-interval S      heartbeat period in seconds, gateway.pingInterval (default ${DEFAULT_PARAMS.pingInterval}; 0: off)
  --shared-cores M       the nodes and the broker share M cores (one machine); default: each has its own
  --clients-share-cores  with --shared-cores: the clients run on those cores too (a test on one machine)
  --merge M              push commands per bus message (pushes a node issues in one event-loop turn travel
                         merged; default 1: each push alone, as measured, the upper bound)
  --uid-buckets B        direct mode: bus.uidBuckets (default 0: one key per uid)
  --group-buckets B      direct mode: bus.groupBuckets (default 0: one key per group)
  --costs FILE           coefficients to use (default docs/bench/capacity-costs.json)
  --json                 print the predictions as JSON
  --measure [--out FILE] re-measure the coefficients on this machine (private brokers on loopback, about
                         3 minutes) and write docs/bench/capacity-costs.json (or FILE)
  --validate             measure a 3-node run in each mode and print it against the model's prediction
  --repeat N             with --measure: measure N times and keep each coefficient's median (default 1)
  --quick                with --measure or --validate: smaller counts, to try the harness
  --help                 this text
`;

function positive(name: string, value: string | undefined, integer = false): number {
  if (value === undefined || value === '') throw new Error(`${name} needs a value`);
  const n = Number(value.replace(/\/s$/, ''));
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n)))
    throw new Error(`${name} must be a positive ${integer ? 'integer' : 'number'}, got "${value}"`);
  return n;
}

/** `uid=0.7,group=0.2,all=0.1` (missing kinds are 0; the shares must add up to 1 within 0.001). */
export function parseMix(text: string): Params['mix'] {
  const mix = { uid: 0, group: 0, all: 0 };
  const seen = new Set<string>();
  for (const part of text.split(',')) {
    const [key, value] = part.split('=') as [string, string | undefined];
    if (key !== 'uid' && key !== 'group' && key !== 'all')
      throw new Error(`--mix: unknown push kind "${key}" (use uid, group and all, e.g. uid=0.7,group=0.2,all=0.1)`);
    if (seen.has(key)) throw new Error(`--mix: ${key} given twice`);
    seen.add(key);
    const share = Number(value);
    if (value === undefined || value === '' || !Number.isFinite(share) || share < 0 || share > 1)
      throw new Error(`--mix: ${key} must be a share between 0 and 1, got "${value ?? ''}"`);
    mix[key] = share;
  }
  const total = mix.uid + mix.group + mix.all;
  if (Math.abs(total - 1) > 0.001) throw new Error(`--mix: the shares must add up to 1, they add up to ${total}`);
  return mix;
}

/** The command line (after `npm run capacity --`); throws an Error with a clear message on bad input. */
export function parseArgs(argv: string[]): Command {
  const params: Params = { ...DEFAULT_PARAMS, mix: { ...DEFAULT_PARAMS.mix } };
  let costsFile: string | null = null;
  let json = false;
  let action: 'predict' | 'measure' | 'validate' = 'predict';
  let out: string | null = null;
  let quick = false;
  let repeat = 1;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const key = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const inline = arg.startsWith('--') && eq > 0 ? arg.slice(eq + 1) : undefined;
    const value = (): string | undefined => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) return undefined;
      i += 1;
      return next;
    };
    switch (key) {
      case '--help':
      case '-h':
        return { kind: 'help' };
      case '--nodes':
        params.nodes = positive(key, value(), true);
        break;
      case '--connections':
        params.connections = positive(key, value(), true);
        break;
      case '--bus': {
        const v = value();
        if (v !== 'amqp' && v !== 'redis') throw new Error(`--bus must be amqp or redis, got "${v ?? ''}"`);
        params.bus = v;
        break;
      }
      case '--mode': {
        const v = value();
        if (v !== 'direct' && v !== 'fanout') throw new Error(`--mode must be direct or fanout, got "${v ?? ''}"`);
        params.mode = v;
        break;
      }
      case '--push-rate': {
        const v = value();
        params.pushRate = v === '0' ? 0 : positive(key, v);
        break;
      }
      case '--mix': {
        const v = value();
        if (v === undefined) throw new Error('--mix needs a value, e.g. uid=0.7,group=0.2,all=0.1');
        params.mix = parseMix(v);
        break;
      }
      case '--groups-per-conn': {
        const v = value();
        params.groupsPerConn = v === '0' ? 0 : positive(key, v);
        break;
      }
      case '--group-size':
        params.groupSize = positive(key, value(), true);
        break;
      case '--conns-per-uid':
        params.connsPerUid = positive(key, value());
        break;
      case '--payload':
        params.payload = positive(key, value(), true);
        break;
      case '--login-rate':
        params.loginRate = positive(key, value());
        break;
      case '--ping-interval': {
        const v = value();
        params.pingInterval = v === '0' ? 0 : positive(key, v);
        break;
      }
      case '--merge': {
        const v = value();
        params.merge = positive(key, v);
        if (params.merge < 1) throw new Error(`--merge must be at least 1, got "${v}"`);
        break;
      }
      case '--uid-buckets':
      case '--group-buckets': {
        const v = value();
        const n = v === '0' ? 0 : positive(key, v, true);
        if (key === '--uid-buckets') params.uidBuckets = n;
        else params.groupBuckets = n;
        break;
      }
      case '--shared-cores':
        params.sharedCores = positive(key, value());
        break;
      case '--clients-share-cores':
        params.clientsShareCores = true;
        break;
      case '--costs': {
        const v = value();
        if (v === undefined) throw new Error('--costs needs a file');
        costsFile = v;
        break;
      }
      case '--out': {
        const v = value();
        if (v === undefined) throw new Error('--out needs a file');
        out = v;
        break;
      }
      case '--repeat':
        repeat = positive(key, value(), true);
        break;
      case '--json':
        json = true;
        break;
      case '--quick':
        quick = true;
        break;
      case '--measure':
        action = 'measure';
        break;
      case '--validate':
        action = 'validate';
        break;
      default:
        throw new Error(`unknown option "${arg}" (see npm run capacity -- --help)`);
    }
  }
  if (params.mix.group > 0 && params.groupsPerConn === 0)
    throw new Error('--mix has group pushes but --groups-per-conn is 0: there are no groups');
  if (params.clientsShareCores && params.sharedCores === null)
    throw new Error('--clients-share-cores needs --shared-cores');
  if (action === 'measure') return { kind: 'measure', out, quick, repeat };
  if (action === 'validate') return { kind: 'validate', costsFile, quick };
  return { kind: 'predict', params, costsFile, json };
}

/** The modes a prediction covers: the one asked for, or every one that matches --bus / --mode. */
export function modesOf(params: Params): ModeId[] {
  return MODE_IDS.filter(
    (id) => (params.bus === null || id.startsWith(params.bus)) && (params.mode === null || id.endsWith(params.mode)),
  );
}

/** The median of each numeric field over several measurements of the same shape (--repeat). */
export function medianCosts(runs: Coefficients[]): Coefficients {
  if (runs.length === 0) throw new Error('no measurements');
  const median = (values: number[]): number => {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  };
  const first = runs[0]!;
  const modes = {} as Record<ModeId, ModeCosts>;
  for (const id of MODE_IDS) {
    const fields = Object.keys(first.modes[id]) as (keyof ModeCosts)[];
    modes[id] = Object.fromEntries(
      fields.map((f) => [f, median(runs.map((r) => r.modes[id][f] ?? 0))]),
    ) as unknown as ModeCosts;
  }
  const gateway = Object.fromEntries(
    (Object.keys(first.gateway) as (keyof Coefficients['gateway'])[]).map((f) => [
      f,
      median(runs.map((r) => r.gateway[f] ?? 0)),
    ]),
  ) as unknown as Coefficients['gateway'];
  return {
    ...first,
    load: { start: first.load.start, end: runs[runs.length - 1]!.load.end },
    gateway,
    modes,
    raw: { runs: runs.map((r) => ({ date: r.date, load: r.load, gateway: r.gateway, modes: r.modes, raw: r.raw })) },
  };
}
