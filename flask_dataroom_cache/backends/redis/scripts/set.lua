-- Store an entry only if every token it was computed under is still current (capture
-- before compute), and keep those tokens alive longer than the entry. Returns 1 if stored.
-- KEYS[1] the entry; ARGV[1] the token-key prefix, ARGV[2] the entry TTL, ARGV[3] the
-- token TTL, ARGV[4] the framed entry, ARGV[5] n, ARGV[6..5+n] the tags,
-- ARGV[6+n..5+2n] their tokens.
local prefix = ARGV[1]
local n = tonumber(ARGV[5])
local ttl = tonumber(ARGV[2])
for i = 1, n do
  if redis.call('GET', prefix .. ARGV[5 + i]) ~= ARGV[5 + n + i] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[4], 'EX', ttl)
local want = math.max(ttl + 60, tonumber(ARGV[3]))
for i = 1, n do
  local k = prefix .. ARGV[5 + i]
  if redis.call('TTL', k) < want then redis.call('EXPIRE', k, want) end
end
return 1
