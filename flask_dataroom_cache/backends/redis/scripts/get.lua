-- The authoritative read (Cluster: every read; standalone/Sentinel: when the MGET fast
-- path cannot decide). Returns {1, payload, PTTL of the entry, 1 when the entry's tags
-- are exactly the ones asked about else 0} on a valid hit, else
-- {0, token_1, ..., token_n}: the current tokens of the tags asked about, created from
-- the caller's random candidate where missing.
-- KEYS[1] the entry; ARGV[1] the token-key prefix, ARGV[2] a candidate token,
-- ARGV[3] the token TTL, ARGV[4..] the tags whose tokens a miss returns.
local entry = redis.call('GET', KEYS[1])
local prefix = ARGV[1]
if entry then
  -- A malformed entry (not written by us) is dropped and read as a miss, never an error.
  local ok = false
  local same = false
  local p = string.find(entry, '\n', 1, true)
  local n = p and tonumber(string.sub(entry, 1, p - 1))
  local pos = p and p + 1
  if n and n >= 0 and n <= 64 and n == math.floor(n) then
    ok = true
    -- same: the entry's tags are exactly the ones asked about (ARGV[4..]); a caller
    -- that indexes a copy by the tags it asked about (the near cache) must know
    same = (n == #ARGV - 3)
    if n > 0 then
      local token_keys = {}
      for i = 1, n do
        local q = string.find(entry, '\n', pos, true)
        if not q then ok = false break end
        local tag = string.sub(entry, pos, q - 1)
        if same and tag ~= ARGV[3 + i] then same = false end
        token_keys[i] = prefix .. tag
        pos = q + 1
      end
      if ok then
        local current = redis.call('MGET', unpack(token_keys))
        for i = 1, n do
          local q = string.find(entry, '\n', pos, true)
          if not q or current[i] ~= string.sub(entry, pos, q - 1) then ok = false break end
          pos = q + 1
        end
      end
    end
  end
  if ok then return {1, string.sub(entry, pos), redis.call('PTTL', KEYS[1]), same and 1 or 0} end
  redis.call('DEL', KEYS[1])
end
local out = {0}
for i = 4, #ARGV do
  local k = prefix .. ARGV[i]
  local t = redis.call('GET', k)
  if not t then
    t = ARGV[2] .. '.' .. i
    redis.call('SET', k, t, 'EX', ARGV[3])
  end
  out[#out + 1] = t
end
return out
