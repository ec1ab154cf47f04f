-- (Re-)register a process in the near cache's peer registry, a sorted set: member = the
-- process's origin id, score = when its registration expires (ms, Redis's clock).
-- A registry found missing (never made, or lost: restart without persistence, FLUSHALL,
-- eviction) or a marker found missing restarts the "born at" marker: peers registered
-- before may be missing. Both keys get the same expiry with each registration, so the
-- marker never expires while the registry lives. Expired members are trimmed.
-- KEYS[1] the registry; KEYS[2] its "born at" marker (ms, Redis's clock);
-- ARGV[1] the origin; ARGV[2] the registration's lifetime in ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2]) + 1000
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], now)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
