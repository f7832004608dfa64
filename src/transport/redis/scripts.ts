/**
 * The Lua script the Redis bus publishes with (bus.redis.replayWindow > 0, the default).
 *
 * Why: Redis pub/sub delivers a message to the connections subscribed at the moment of PUBLISH
 * and to no one else, and PUBLISH succeeds either way. A node whose subscriber connection drops
 * (a network blip, CLIENT KILL, a failover) loses what is published until it has resubscribed,
 * and also what was already on its way to it: messages Redis had queued on the old connection
 * are discarded with it. Resubscribing after a reconnect does not bring either back.
 *
 * How: the script appends every message to one capped stream, the replay log <prefix>:log
 * (fields c = the channel's key, m = the envelope), and publishes it wrapped with the id the
 * stream gave it (wrapped form below). Both happen in one script, so the order of the ids is the
 * order of publication. Each node remembers the id of the last message it applied; after its
 * subscriber reconnects and has resubscribed, it reads the log from that id on and applies what
 * was for its channels and what it had not seen, in order, before any message that arrived live
 * meanwhile (RedisBus.replayGap). Entries older than the replay window are trimmed at every call,
 * and the log expires when nobody has published for max(60 s, twice the window).
 *
 * Exactly once across a lost reply: a call carries a call id (per process, increasing) and records
 * it under <prefix>:ack:<instance> (expiring); a call that runs a second time (ioredis resends a
 * command whose reply a dropped connection swallowed) does nothing. Call id 0 records nothing.
 *
 * Wrapped form (what subscribers receive): the MessagePack array [id, envelope] with
 *   id        str 8 (0xd9, length, bytes): the stream id, "<ms>-<seq>"
 *   envelope  bin (0xc4/0xc5/0xc6): the envelope bytes as given (docs/wire-format.md)
 * so it begins with 0x92 0xd9, while a plain envelope (what other programs may PUBLISH) begins
 * with 0x97 (version 2; 0x94 for version 1).
 */

/**
 * KEYS[1] <prefix>:log   KEYS[2] <prefix>:ack:<instance>
 * ARGV[1] call id (0: none)   ARGV[2] replay window in ms   then the messages, in one of two forms:
 *   ARGV[3] number of messages n, then n times: key (after the prefix, e.g. u.alice or fanout),
 *           channel, envelope;
 *   ARGV[3] 'packed', ARGV[4] the prefix, ARGV[5] one MessagePack array of 2n str items: key,
 *           envelope, key, envelope, … (each channel is <prefix>:<key>). What gatewire sends:
 *           one argument instead of 3n, each of which the client would encode on its own.
 * Returns n, or -1 if this call id already ran.
 */
export const PUBLISH_SCRIPT = `
local log, ack = KEYS[1], KEYS[2]
local call, window = ARGV[1], tonumber(ARGV[2])
if call ~= '0' and redis.call('GET', ack) == call then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XTRIM', log, 'MINID', string.format('%.0f', now - window) .. '-0')
local function binHeader(size)
  if size < 256 then return string.char(0xc4, size) end
  if size < 65536 then return string.char(0xc5, math.floor(size / 256), size % 256) end
  return string.char(0xc6, math.floor(size / 16777216), math.floor(size / 65536) % 256, math.floor(size / 256) % 256, size % 256)
end
local function publish(key, channel, envelope)
  local id = redis.call('XADD', log, '*', 'c', key, 'm', envelope)
  redis.call('PUBLISH', channel, string.char(0x92, 0xd9, #id) .. id .. binHeader(#envelope) .. envelope)
end
local n
if ARGV[3] == 'packed' then
  local prefix, items = ARGV[4] .. ':', cmsgpack.unpack(ARGV[5])
  n = #items / 2
  for i = 1, #items, 2 do publish(items[i], prefix .. items[i], items[i + 1]) end
else
  n = tonumber(ARGV[3])
  local i = 4
  for _ = 1, n do
    publish(ARGV[i], ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  end
end
if n > 0 then redis.call('PEXPIRE', log, math.max(60000, 2 * window)) end
if call ~= '0' then redis.call('SET', ack, call, 'PX', math.max(60000, window)) end
return n
`;

/**
 * The same script on a Redis Cluster (bus.redis.cluster): SPUBLISH, so the message goes only to
 * the shard of the lane's slot and its subscribers, not over the whole cluster bus. KEYS are the
 * lane's log and ack keys, the packed prefix is the lane's prefix (channels.ts), so the log, the
 * ack key and every channel of a call are in one slot.
 */
export const SHARDED_PUBLISH_SCRIPT = PUBLISH_SCRIPT.replace("redis.call('PUBLISH',", "redis.call('SPUBLISH',");

/** KEYS[1] any key of the slot whose master's clock is wanted: TIME (on a cluster, TIME has no key). */
export const TIME_SCRIPT = `return redis.call('TIME')`;

/** KEYS[1] a sharded channel: PUBSUB SHARDNUMSUB asked of the shard that owns its slot. */
export const SHARDNUMSUB_SCRIPT = `return redis.call('PUBSUB', 'SHARDNUMSUB', KEYS[1])`;
