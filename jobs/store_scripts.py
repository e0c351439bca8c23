"""The Lua scripts behind :class:`jobs.store.JobStore`: each status change is one script, so the
record, the per-status counters and the queue and running indexes move together even with the API
and several workers writing at once.

Key names are passed in ``KEYS`` (the store builds them); the exceptions are the ``cd:job:``
prefix CREATE uses to read an existing duplicate's status, and the per-owner status indexes
(``cd:jobs:<owner>:s:<status>``, one lexicographic sorted set per owner and status, what a filtered
listing pages through), which every status change moves with the status, by :data:`REINDEX`.
"""

# Prepended to every script that changes a status: move job ``id`` (hash ``job``) from owner status
# index ``from`` to ``to`` (either may be nil). Must match jobs.store.status_key.
REINDEX = """
local function reindex(job, id, from, to)
  local o = redis.call('HGET', job, 'owner')
  if not o then return end
  if from then redis.call('ZREM', 'cd:jobs:' .. o .. ':s:' .. from, id) end
  if to then redis.call('ZADD', 'cd:jobs:' .. o .. ':s:' .. to, 0, id) end
end
"""

# KEYS: job, owner index, dedup, queued, counts, idem ("" when none), link ("" when none), unsent
# ARGV: id, now, idem value, idem ttl, link field, field, value, ...
# The link is a watch's (checkpoint, fingerprint) -> job hash: a pair already linked returns that
# job, and whatever job this call returns is linked in the same step, so a pair gets one job however
# many checks race (watches.store).
CREATE = REINDEX + """
if KEYS[7] ~= '' then
  local linked = redis.call('HGET', KEYS[7], ARGV[5])
  if linked then return {'linked', linked} end
end
if KEYS[6] ~= '' then
  local v = redis.call('GET', KEYS[6])
  if v then return {'idem', v} end
end
local existing = redis.call('GET', KEYS[3])
if existing then
  local st = redis.call('HGET', 'cd:job:' .. existing, 'status')
  if st == 'queued' or st == 'running' or st == 'succeeded' then
    if KEYS[6] ~= '' then redis.call('SET', KEYS[6], ARGV[3] .. existing, 'EX', ARGV[4]) end
    if KEYS[7] ~= '' then redis.call('HSET', KEYS[7], ARGV[5], existing) end
    return {'dup', existing}
  end
end
local id = ARGV[1]
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[2], 0, id)
redis.call('SET', KEYS[3], id)
redis.call('ZADD', KEYS[4], ARGV[2], id)
redis.call('HINCRBY', KEYS[5], 'queued', 1)
redis.call('ZADD', KEYS[8], ARGV[2], id)
reindex(KEYS[1], id, nil, 'queued')
if KEYS[6] ~= '' then redis.call('SET', KEYS[6], ARGV[3] .. id, 'EX', ARGV[4]) end
if KEYS[7] ~= '' then redis.call('HSET', KEYS[7], ARGV[5], id) end
return {'new', id}
"""

# KEYS: job, counts, queued, running.
# ARGV: id, allowed from (comma list), to, expected worker ('' = any), field, value, ...
TRANSITION = REINDEX + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if not string.find(',' .. ARGV[2] .. ',', ',' .. st .. ',', 1, true) then return st end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'worker') ~= ARGV[4] then return 'not_owner' end
redis.call('HSET', KEYS[1], 'status', ARGV[3])
reindex(KEYS[1], ARGV[1], st, ARGV[3])
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('HINCRBY', KEYS[2], st, -1)
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
if ARGV[3] ~= 'queued' then redis.call('ZREM', KEYS[3], ARGV[1]) end
if ARGV[3] ~= 'running' then redis.call('ZREM', KEYS[4], ARGV[1]) end
return 'ok'
"""

# The worker's claim on a delivered message. KEYS: job, counts, queued, workers, running.
# ARGV: id, worker, now, max attempts, stale seconds, error json for "worker lost too often".
CLAIM = REINDEX + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'missing', ''} end
if st == 'succeeded' or st == 'failed' or st == 'cancelled' then return {'skip', st} end
local function move(to)
  redis.call('HSET', KEYS[1], 'status', to)
  reindex(KEYS[1], ARGV[1], st, to)
  redis.call('HINCRBY', KEYS[1], 'rev', 1)
  redis.call('HINCRBY', KEYS[2], st, -1)
  redis.call('HINCRBY', KEYS[2], to, 1)
  redis.call('ZREM', KEYS[3], ARGV[1])
  if to == 'running' then redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1]) else redis.call('ZREM', KEYS[5], ARGV[1]) end
end
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[3])
  move('cancelled')
  return {'skip', 'cancelled'}
end
if st == 'running' then
  -- a redelivery while the worker that holds the job still beats: not ours to run
  local w = redis.call('HGET', KEYS[1], 'worker')
  local seen = w and redis.call('ZSCORE', KEYS[4], w)
  if w ~= ARGV[2] and seen and tonumber(seen) > tonumber(ARGV[3]) - tonumber(ARGV[5]) then
    return {'busy', w}
  end
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts > tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[3], 'error', ARGV[6])
  move('failed')
  return {'failed', tostring(attempts)}
end
-- started_at is the first attempt's start, kept across retries; attempt_started_at the current one's
redis.call('HSETNX', KEYS[1], 'started_at', ARGV[3])
redis.call('HSET', KEYS[1], 'worker', ARGV[2], 'attempt_started_at', ARGV[3], 'progress', '{}')
move('running')
return {'run', tostring(attempts)}
"""

# KEYS: job, counts, queued.  ARGV: id, now.
CANCEL = REINDEX + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'cancel_requested', '1', 'finished_at', ARGV[2])
  reindex(KEYS[1], ARGV[1], 'queued', 'cancelled')
  redis.call('HINCRBY', KEYS[1], 'rev', 1)
  redis.call('HINCRBY', KEYS[2], 'queued', -1)
  redis.call('HINCRBY', KEYS[2], 'cancelled', 1)
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 'cancelled'
end
if st == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  redis.call('HINCRBY', KEYS[1], 'rev', 1)
  return 'requested'
end
return st
"""

# A record written before the status indexes existed: put it in the index of its status (and no
# other). KEYS: job.  ARGV: id, every status.
BACKFILL = REINDEX + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 0 end
for i = 2, #ARGV do reindex(KEYS[1], ARGV[1], ARGV[i], nil) end
reindex(KEYS[1], ARGV[1], nil, st)
return 1
"""
