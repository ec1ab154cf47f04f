-- The current tokens of some tags, a missing one created from the caller's random
-- candidate (never a counter restarting at 0: a lost token causes a miss, never a stale hit).
-- KEYS: none, or (Cluster) the shard group's hash tag, only there to route the call.
-- ARGV[1] the token-key prefix, ARGV[2] a candidate token, ARGV[3] the token TTL,
-- ARGV[4..] the tags.
local out = {}
for i = 4, #ARGV do
  local k = ARGV[1] .. ARGV[i]
  local t = redis.call('GET', k)
  if not t then
    t = ARGV[2] .. '.' .. i
    redis.call('SET', k, t, 'EX', ARGV[3])
  end
  out[#out + 1] = t
end
return out
