-- Release a lock: delete it only if it still holds the value its holder stored (a holder
-- that ran past the TTL never removes the next holder's lock). Returns 1 if deleted.
-- KEYS[1] the lock; ARGV[1] the value its holder stored (framed).
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
