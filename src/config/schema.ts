/**
 * The one configuration schema. Every leaf has doc, format, default and env; env names are
 * GATEWIRE_SECTION__KEY. These keys are a public contract (README "Configuration" is generated
 * from this file and checked by a test).
 */
import { ROLES, BUS_KINDS, BUS_MODES } from './formats.js';
import { checkAmqpUrls as amqpUrls } from '../transport/amqp/amqp-urls.js';

/** bus.redis.url: one URL, a comma-separated list of them (env), or a list (config file). */
function redisUrlFormat(value: unknown): void {
  const list = typeof value === 'string' ? value.split(',') : value;
  if (!Array.isArray(list) || list.length === 0 || list.some((url) => typeof url !== 'string' || url.trim() === '')) {
    throw new Error('must be a Redis URL, or a non-empty list of them (comma-separated or an array)');
  }
}

/** bus.redis.waitReplicas: -1 (automatic) or a count. */
function waitReplicasFormat(value: unknown): void {
  if (!Number.isInteger(value) || (value as number) < -1) throw new Error('must be an integer of at least -1');
}

export const schema = {
  node: {
    id: {
      doc: "This process's name in the cluster (shown by status and in logs). Empty: generated at start.",
      format: 'node-id',
      default: '',
      env: 'GATEWIRE_NODE__ID',
    },
    pidFile: {
      doc: "File where `gatewire start` writes its process id, read by `gatewire reload` and `gatewire stop`; `{id}` stands for the node id, so every node started from one folder has its own; empty: none. Relative: from the config file's folder when set in one, else from the working directory.",
      format: String,
      default: '.gatewire/{id}.pid',
      env: 'GATEWIRE_NODE__PID_FILE',
    },
    roles: {
      doc: `What this process does: ${ROLES.join(', ')}; comma-separated in env.`,
      format: 'roles',
      default: ['gateway', 'worker'],
      env: 'GATEWIRE_NODE__ROLES',
    },
    shutdownTimeout: {
      doc: 'Milliseconds a `gatewire start` process has to shut down after SIGTERM/SIGINT, whatever it is waiting for (clients, the broker, a stdout nobody reads); past it the process exits 1, and a process whose thread is stuck is killed. The default fits in a 30 s orchestrator grace period.',
      format: 'positive-int',
      default: 25000,
      env: 'GATEWIRE_NODE__SHUTDOWN_TIMEOUT',
    },
  },
  gateway: {
    listen: {
      doc: 'Listener URLs: ws://host:port/path, wss://host:port/path, tcp://host:port?protocol=text|frame, tls://host:port?protocol=…; comma-separated in env.',
      format: 'listen-urls',
      default: ['ws://127.0.0.1:8080/ws'],
      env: 'GATEWIRE_GATEWAY__LISTEN',
    },
    advertisedAddress: {
      doc: 'Address other nodes and operators see for this gateway (status output). Empty: the first listener.',
      format: String,
      default: '',
      env: 'GATEWIRE_GATEWAY__ADVERTISED_ADDRESS',
    },
    pingInterval: {
      doc: 'Heartbeat period in seconds; 0 turns the heartbeat off.',
      format: 'nat',
      default: 25,
      env: 'GATEWIRE_GATEWAY__PING_INTERVAL',
    },
    pingNotResponseLimit: {
      doc: 'A client silent for this many heartbeat periods is disconnected (any data, and WebSocket pongs, count); 0 never disconnects.',
      format: 'nat',
      default: 2,
      env: 'GATEWIRE_GATEWAY__PING_NOT_RESPONSE_LIMIT',
    },
    pingData: {
      doc: 'Message sent to every client each heartbeat period (empty: none; WebSocket clients also get ping frames).',
      format: String,
      default: '',
      env: 'GATEWIRE_GATEWAY__PING_DATA',
    },
    maxPayload: {
      doc: 'Largest message a client may send, in bytes (WebSocket: close 1009; TCP: connection closed).',
      format: 'positive-int',
      default: 1048576,
      env: 'GATEWIRE_GATEWAY__MAX_PAYLOAD',
    },
    sendBufferSize: {
      doc: 'Bytes that may wait to be written to one client; a client that stops reading past this is disconnected.',
      format: 'positive-int',
      default: 1048576,
      env: 'GATEWIRE_GATEWAY__SEND_BUFFER_SIZE',
    },
    resumeWindow: {
      doc: 'Seconds a gatewire.v1 session whose connection dropped waits for its client to resume it (docs/client-protocol.md); 0: a drop ends the session.',
      format: 'nat',
      default: 60,
      env: 'GATEWIRE_GATEWAY__RESUME_WINDOW',
    },
    resumeBufferSize: {
      doc: 'Bytes of unacknowledged messages a gatewire.v1 session keeps for a resume; past it the oldest go, and a suspended session ends.',
      format: 'positive-int',
      default: 1048576,
      env: 'GATEWIRE_GATEWAY__RESUME_BUFFER_SIZE',
    },
    maxMessagesPerSecond: {
      doc: 'Messages one client may send per second (WebSocket: close 1008; TCP: connection closed); 0 means unlimited.',
      format: 'nat',
      default: 0,
      env: 'GATEWIRE_GATEWAY__MAX_MESSAGES_PER_SECOND',
    },
    authorizer: {
      doc: "Path of a module whose default export (request) => boolean | number | { identity } decides each upgrade/connection (docs/api.md, Authorization); empty: everyone is let in. Relative: from the config file's folder when set in one, else from the working directory.",
      format: String,
      default: '',
      env: 'GATEWIRE_GATEWAY__AUTHORIZER',
    },
    staticDir: {
      doc: "Folder served over plain HTTP on the WebSocket listeners (e.g. a browser page); empty: none. Relative: from the config file's folder when set in one, else from the working directory.",
      format: String,
      default: '',
      env: 'GATEWIRE_GATEWAY__STATIC_DIR',
    },
    tls: {
      key: {
        doc: "Path of the PEM private key for wss:// and tls:// listeners. Relative: from the config file's folder when set in one, else from the working directory.",
        format: String,
        default: '',
        env: 'GATEWIRE_GATEWAY__TLS__KEY',
      },
      cert: {
        doc: "Path of the PEM certificate chain for wss:// and tls:// listeners. Relative: from the config file's folder when set in one, else from the working directory.",
        format: String,
        default: '',
        env: 'GATEWIRE_GATEWAY__TLS__CERT',
      },
    },
  },
  worker: {
    handler: {
      doc: "Path of the Events handler module (default export or named exports with onMessage, …). Relative: from the config file's folder when set in one, else from the working directory.",
      format: String,
      default: '',
      env: 'GATEWIRE_WORKER__HANDLER',
    },
    partitions: {
      doc: "Split roles (RabbitMQ): client events go to this many event queues by client id; each queue has one active worker, so one client's events stay in order. Same value on every node.",
      format: 'positive-int',
      default: 32,
      env: 'GATEWIRE_WORKER__PARTITIONS',
    },
    maxPendingEvents: {
      doc: 'Split roles: client events that may wait in the broker while no worker runs (spread over the partitions); past it, new events are dropped and counted.',
      format: 'positive-int',
      default: 100000,
      env: 'GATEWIRE_WORKER__MAX_PENDING_EVENTS',
    },
    prefetch: {
      doc: 'Split roles: unacknowledged events one worker holds per partition (different clients run concurrently).',
      format: 'positive-int',
      default: 64,
      env: 'GATEWIRE_WORKER__PREFETCH',
    },
  },
  bus: {
    kind: {
      doc: `How processes reach each other: ${BUS_KINDS.join(', ')}.`,
      format: BUS_KINDS as unknown as string[],
      default: 'local',
      env: 'GATEWIRE_BUS__KIND',
    },
    mode: {
      doc: `Routing: ${BUS_MODES.join(', ')} (every node gets every command, or each node gets only what it holds).`,
      format: BUS_MODES as unknown as string[],
      default: 'direct',
      env: 'GATEWIRE_BUS__MODE',
    },
    secret: {
      doc: 'Shared secret that signs every bus message (HMAC-SHA256); empty: unsigned.',
      format: String,
      default: '',
      env: 'GATEWIRE_BUS__SECRET',
      sensitive: true,
    },
    directory: {
      doc: "Direct mode on a broker: 'auto' keeps a directory of which node holds each uid and group key, from the nodes' own announcements, and sends each turn's pushes to one node as one message by its node key (the keys stay bound for foreign publishers; bindUid/joinGroup resolve once every node knows); 'off' sends every push by its uid or group key.",
      format: ['auto', 'off'],
      default: 'auto',
      env: 'GATEWIRE_BUS__DIRECTORY',
    },
    uidBuckets: {
      doc: 'Direct mode: 0 binds one key per uid; N > 0 hashes uids onto N bucket keys (bounded bindings, filtered on the node).',
      format: 'nat',
      default: 0,
      env: 'GATEWIRE_BUS__UID_BUCKETS',
    },
    groupBuckets: {
      doc: 'Direct mode: 0 binds one key per group; N > 0 hashes groups onto N bucket keys.',
      format: 'nat',
      default: 0,
      env: 'GATEWIRE_BUS__GROUP_BUCKETS',
    },
    maxBufferedCommands: {
      doc: 'Commands that may wait while the broker is unreachable; past this, API calls reject with GW_ERR_BUS_BUFFER_FULL.',
      format: 'positive-int',
      default: 100000,
      env: 'GATEWIRE_BUS__MAX_BUFFERED_COMMANDS',
    },
    maxCommandsPerMessage: {
      doc: 'Most commands batched into one broker message.',
      format: 'positive-int',
      default: 500,
      env: 'GATEWIRE_BUS__MAX_COMMANDS_PER_MESSAGE',
    },
    maxMessageBytes: {
      doc: "Largest broker message in bytes; 0: the broker's default (RabbitMQ 8 MiB, below RabbitMQ 4's 16 MiB limit; Redis 1 MiB, far below its 32 MB pub/sub output buffer limit). A call whose one command cannot fit is refused with GW_ERR_MESSAGE_TOO_LARGE.",
      format: 'nat',
      default: 0,
      env: 'GATEWIRE_BUS__MAX_MESSAGE_BYTES',
    },
    maxClockSkew: {
      doc: 'Milliseconds the clocks of two nodes may differ (signed messages are refused when stamped further in the future, or before this node started minus this; deadlines allow for it).',
      format: 'nat',
      default: 1000,
      env: 'GATEWIRE_BUS__MAX_CLOCK_SKEW',
    },
    maxMessageAge: {
      doc: 'Milliseconds after which a signed bus message is refused as a replay (nothing legitimate waits longer in a broker); also how long the sequence state of a silent sender is kept.',
      format: 'positive-int',
      default: 300000,
      env: 'GATEWIRE_BUS__MAX_MESSAGE_AGE',
    },
    acceptSignedV1: {
      doc: 'Rolling upgrade from gatewire 0.1 with bus.secret set: also read and send signed wire version 1 (no replay protection) while a 0.1 node is live. Unsigned clusters do so without it.',
      format: Boolean,
      default: false,
      env: 'GATEWIRE_BUS__ACCEPT_SIGNED_V1',
    },
    connectTimeout: {
      doc: 'Milliseconds a node waits at start for its first broker connection; past it the start fails with GW_ERR_BUS_CONNECT_TIMEOUT (`gatewire start` exits non-zero). 0 waits for ever. Later reconnects are not bounded by it.',
      format: 'nat',
      default: 30000,
      env: 'GATEWIRE_BUS__CONNECT_TIMEOUT',
    },
    amqp: {
      url: {
        doc: 'RabbitMQ URL: amqp://user:password@host:port/vhost (amqps:// for TLS). A RabbitMQ cluster: the URLs of its nodes, comma-separated (a list in a config file); a node connects to one and moves to the next when it is lost (docs/cluster-rabbitmq.md).',
        format: amqpUrls,
        default: 'amqp://guest:guest@127.0.0.1:5672',
        env: 'GATEWIRE_BUS__AMQP__URL',
        sensitive: true,
      },
      exchange: {
        doc: 'Exchange name prefix; the mode is appended (<prefix>.fanout or <prefix>.direct) so the two types never collide.',
        format: 'non-empty',
        default: 'gatewire',
        env: 'GATEWIRE_BUS__AMQP__EXCHANGE',
      },
      prefetch: {
        doc: 'Unacknowledged broker messages one node may hold.',
        format: 'positive-int',
        default: 256,
        env: 'GATEWIRE_BUS__AMQP__PREFETCH',
      },
      maxQueueBytes: {
        doc: "Bytes of messages a node's queue holds while the node does not consume (frozen, disconnected, dead); past it the broker drops the oldest, which live nodes count (gatewire_bus_queue_dropped_total).",
        format: 'positive-int',
        default: 268435456,
        env: 'GATEWIRE_BUS__AMQP__MAX_QUEUE_BYTES',
      },
      queueType: {
        doc: "Type of each node's queue and of the split roles' event partitions: classic (kept in memory on one broker node, lost with that node), quorum (replicated on the cluster's nodes, survives the loss of a minority of them, costs fsyncs) or auto: quorum when bus.amqp.url lists several nodes, classic with one (docs/cluster-rabbitmq.md has the measured figures).",
        format: ['auto', 'classic', 'quorum'],
        default: 'auto',
        env: 'GATEWIRE_BUS__AMQP__QUEUE_TYPE',
      },
    },
    redis: {
      url: {
        doc: 'Redis URL: redis://[user:password@]host:port[/db] (rediss:// for TLS). With bus.redis.cluster, the seed nodes of the Redis Cluster: comma-separated (env), or a list in a config file; several URLs need bus.redis.cluster=true.',
        format: redisUrlFormat,
        default: 'redis://127.0.0.1:6379',
        env: 'GATEWIRE_BUS__REDIS__URL',
        sensitive: true,
      },
      cluster: {
        doc: 'Redis Cluster (Redis 7): channels and replay logs spread over the masters by hash tags, sharded pub/sub (SSUBSCRIBE, SPUBLISH), a shard failover survived (docs/cluster-redis.md).',
        format: Boolean,
        default: false,
        env: 'GATEWIRE_BUS__REDIS__CLUSTER',
      },
      waitReplicas: {
        doc: 'Replicas that must confirm every publish call (WAIT) before it counts as accepted; a call they do not confirm within bus.redis.waitTimeout rejects with GW_ERR_BUS_NOT_REPLICATED. -1: 1 with bus.redis.cluster, 0 (no WAIT) on a single Redis.',
        format: waitReplicasFormat,
        default: -1,
        env: 'GATEWIRE_BUS__REDIS__WAIT_REPLICAS',
      },
      waitTimeout: {
        doc: 'Milliseconds WAIT waits for bus.redis.waitReplicas replicas.',
        format: 'positive-int',
        default: 1000,
        env: 'GATEWIRE_BUS__REDIS__WAIT_TIMEOUT',
      },
      prefix: {
        doc: 'Prefix of every Redis channel name (<prefix>:<key>).',
        format: 'non-empty',
        default: 'gatewire',
        env: 'GATEWIRE_BUS__REDIS__PREFIX',
      },
      replayWindow: {
        doc: 'Milliseconds of published messages kept in the replay log (<prefix>:log), from which a node whose subscriber connection dropped gets what it missed, in order and once; 0: no log, plain PUBLISH (messages published while a node resubscribes are lost).',
        format: 'nat',
        default: 10000,
        env: 'GATEWIRE_BUS__REDIS__REPLAY_WINDOW',
      },
    },
  },
  cluster: {
    announceInterval: {
      doc: "Milliseconds between a node's membership announcements.",
      format: 'positive-int',
      default: 1000,
      env: 'GATEWIRE_CLUSTER__ANNOUNCE_INTERVAL',
    },
    nodeTimeout: {
      doc: 'Milliseconds of silence after which a node is taken for dead.',
      format: 'positive-int',
      default: 5000,
      env: 'GATEWIRE_CLUSTER__NODE_TIMEOUT',
    },
    queryTimeout: {
      doc: 'Milliseconds a cluster query waits for answers; nodes that miss it are named in a warning and counted (gatewire_queries_incomplete_total).',
      format: 'positive-int',
      default: 3000,
      env: 'GATEWIRE_CLUSTER__QUERY_TIMEOUT',
    },
    strictQueries: {
      doc: "Cluster queries that miss an answer reject with GW_ERR_QUERY_INCOMPLETE (naming the nodes) instead of answering from the nodes that answered; a call's { strict } overrides it.",
      format: Boolean,
      default: false,
      env: 'GATEWIRE_CLUSTER__STRICT_QUERIES',
    },
  },
  admin: {
    listen: {
      doc: 'host:port of /metrics, /healthz and /readyz; empty: no admin server. `:port` and 0.0.0.0 listen on every IPv4 interface, [::] on every interface; 127.0.0.1 keeps it on this machine.',
      format: 'host-port',
      default: '',
      env: 'GATEWIRE_ADMIN__LISTEN',
    },
    token: {
      doc: 'Bearer token every admin endpoint but /healthz and /readyz requires (`Authorization: Bearer <token>`; 401 otherwise; letters, digits and - . _ ~ + / only); empty: no authentication, and a warning when admin.listen is not a loopback address. Required under NODE_ENV=production when admin.listen is not a loopback address.',
      format: 'bearer-token',
      default: '',
      env: 'GATEWIRE_ADMIN__TOKEN',
      sensitive: true,
    },
  },
  log: {
    level: {
      doc: 'pino log level: fatal, error, warn, info, debug, trace or silent.',
      format: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      default: 'info',
      env: 'GATEWIRE_LOG__LEVEL',
    },
  },
};
