/**
 * Lua scripts of the Redis bus's delivery check (bus.redis.deliveryCheck, default on).
 *
 * Why: Redis pub/sub delivers a message to the connections subscribed at the moment of PUBLISH
 * and to no one else. A node whose subscriber connection is being re-established (a network blip,
 * CLIENT KILL, a failover) misses every message published meanwhile, and PUBLISH still succeeds,
 * so without a check a push the API accepted is lost silently. Resubscribing after a reconnect is
 * not enough: the other nodes keep publishing while it happens.
 *
 * How: every bus records in Redis that it is live (LIVENESS_SCRIPT, refreshed every
 * livenessTimeout/4 on the publisher connection) and, for each uid or group key it holds, adds
 * its instance to <prefix>:holders:<key>. PUBLISH_SCRIPT then publishes a whole batch of
 * messages atomically, and before each message compares the number of subscribers of its channel
 * (PUBSUB NUMSUB) with the number of live holders that should be subscribed. If it is short, the
 * message is NOT published (so nobody gets it twice) and is reported back: the sender holds it,
 * and every later message to the same channel behind it, and retries until the holder is back or
 * stops being live (it stops refreshing once its subscriber has been down for livenessTimeout, or
 * the process is gone). Checking and publishing in one script leaves no gap between them.
 *
 * A node that is live counts as a holder of its node channel and of the broadcast channel.
 * Control messages (announcements, queries, replies) skip the check: each has its own timeout.
 *
 * The check compares counts, not identities: an unrelated extra subscriber of a channel (say, a
 * redis-cli SUBSCRIBE, or a half-open connection Redis has not noticed yet) can stand in for a
 * missing holder. Programs in other languages may publish with plain PUBLISH (no check) or call
 * PUBLISH_SCRIPT themselves (docs/redis-wire-format.md).
 *
 * Exactly once across a lost reply: every call carries a call id (per process, increasing) and
 * stores its result under <prefix>:acks; a call that runs again (ioredis resends a command whose
 * reply the lost connection swallowed) returns the stored result without publishing again.
 */

/**
 * KEYS[1] <prefix>:live   KEYS[2] <prefix>:acks
 * ARGV[1] instance   ARGV[2] call id (0: no resend protection, nothing stored)   ARGV[3] number of messages n
 * then n times: channel, check ('n' | 'a' | 'h' | '' | '-', see channels.ts), check argument
 * (an instance for 'n', the holder set key for 'h'), payload
 * Returns a string of n characters: '1' published, '0' held back (not published).
 */
export const PUBLISH_SCRIPT = `
local live, acks = KEYS[1], KEYS[2]
local me = ARGV[1]
local tag = false
if ARGV[2] ~= '0' then
  tag = ARGV[2] .. ':'
  local previous = redis.call('HGET', acks, me)
  if previous and string.sub(previous, 1, #tag) == tag then
    return string.sub(previous, #tag + 1)
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local liveness = {}
local function isLive(instance)
  local known = liveness[instance]
  if known == nil then
    local untilMs = redis.call('HGET', live, instance)
    known = untilMs ~= false and tonumber(untilMs) > now
    liveness[instance] = known
  end
  return known
end
local liveCount = nil
local blocked = {}
local out = {}
local n = tonumber(ARGV[3])
local i = 4
for m = 1, n do
  local channel, check, arg, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local ok = true
  if check ~= '-' then
    ok = not blocked[channel]
    if ok and check ~= '' then
      local expected = 0
      if check == 'n' then
        if isLive(arg) then expected = 1 end
      elseif check == 'a' then
        if liveCount == nil then
          liveCount = 0
          local all = redis.call('HGETALL', live)
          for j = 2, #all, 2 do
            if tonumber(all[j]) > now then liveCount = liveCount + 1 end
          end
        end
        expected = liveCount
      elseif check == 'h' then
        local holders = redis.call('SMEMBERS', arg)
        for _, holder in ipairs(holders) do
          if isLive(holder) then
            expected = expected + 1
          else
            -- a holder that stopped being live: forget it (it registers again when it is back)
            redis.call('SREM', arg, holder)
          end
        end
      end
      if expected > 0 and redis.call('PUBSUB', 'NUMSUB', channel)[2] < expected then ok = false end
    end
  end
  if ok then
    redis.call('PUBLISH', channel, payload)
    out[m] = '1'
  else
    blocked[channel] = true
    out[m] = '0'
  end
end
local result = table.concat(out)
if tag then redis.call('HSET', acks, me, tag .. result) end
return result
`;

/**
 * KEYS[1] <prefix>:live   KEYS[2] <prefix>:acks
 * ARGV[1] instance   ARGV[2] ttl in ms, or 0 to leave   ARGV[3] grace in ms
 * Marks the instance live until now + ttl (Redis's clock, so hosts' clocks do not matter) and
 * forgets instances that have been dead for longer than the grace (crashed processes).
 */
export const LIVENESS_SCRIPT = `
local live, acks = KEYS[1], KEYS[2]
local me, ttl, grace = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ttl == 0 then
  redis.call('HDEL', live, me)
  redis.call('HDEL', acks, me)
  return now
end
redis.call('HSET', live, me, now + ttl)
local all = redis.call('HGETALL', live)
for j = 1, #all, 2 do
  if tonumber(all[j + 1]) + grace < now then
    redis.call('HDEL', live, all[j])
    redis.call('HDEL', acks, all[j])
  end
end
return now
`;

/**
 * KEYS: holder sets   ARGV[1] instance   ARGV[2] '1' to add it to every set, '0' to remove it
 * One command for a whole batch of (un)registrations instead of one SADD per key.
 */
export const REGISTER_SCRIPT = `
local add = ARGV[2] == '1'
for _, key in ipairs(KEYS) do
  if add then redis.call('SADD', key, ARGV[1]) else redis.call('SREM', key, ARGV[1]) end
end
return #KEYS
`;
