-- PUBLISH a near-cache message, then read who must acknowledge it: one atomic script, one
-- round trip. Returns {subscribers PUBLISH counted, the peers whose registration has not
-- expired, the registry's age in ms (since its marker; -1 if the registry or its marker
-- is missing)}.
-- KEYS[1] the registry; KEYS[2] its "born at" marker; ARGV[1] the channel; ARGV[2] the message.
local n = redis.call('PUBLISH', ARGV[1], ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local age = -1
local born = redis.call('GET', KEYS[2])
if born and redis.call('EXISTS', KEYS[1]) == 1 then
  age = now - tonumber(born)
end
return {n, redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf'), age}
