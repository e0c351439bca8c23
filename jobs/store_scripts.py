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

# A job's line in the turn order (jobs.turns; key names must match its wait_key, owners_key, pass_key).
# join: a new queued job enters its owner's line; an owner whose line was empty joins at the pool's
# current pass. leave: a job that stops being queued leaves its line (the line's owner too, once empty).
TURNS = """
local function fmt(n) return string.format('%.0f', n) end
local function join(pool, o, id, t)
  local pk = 'cd:pass:' .. pool
  if redis.call('SADD', 'cd:waiters:' .. pool, o) == 1 then
    local now = tonumber(redis.call('HGET', pk, '') or '0')
    if tonumber(redis.call('HGET', pk, o) or '0') < now then redis.call('HSET', pk, o, fmt(now)) end
  end
  redis.call('ZADD', 'cd:wait:' .. pool .. ':' .. o, t, id)
end
-- The job whose turn it is in ``pool``: (head job id, its owner, the owner's pass), or nil. Lines left
-- behind empty, and entries whose record moved on without leaving, are dropped on the way.
local function next_turn(pool)
  local pk = 'cd:pass:' .. pool
  while true do
    local best, best_pass
    for _, o in ipairs(redis.call('SMEMBERS', 'cd:waiters:' .. pool)) do
      local p = tonumber(redis.call('HGET', pk, o) or '0')
      if best == nil or p < best_pass or (p == best_pass and o < best) then best, best_pass = o, p end
    end
    if not best then return nil end
    local line = 'cd:wait:' .. pool .. ':' .. best
    local head = redis.call('ZRANGE', line, 0, 0)[1]
    if not head then
      redis.call('SREM', 'cd:waiters:' .. pool, best)
    elseif redis.call('HGET', 'cd:job:' .. head, 'status') ~= 'queued' then
      redis.call('ZREM', line, head)
    else
      return head, best, best_pass
    end
  end
end
local function leave(job, id)
  local o = redis.call('HGET', job, 'owner')
  if not o then return false end
  local pool = redis.call('HGET', job, 'pool')
  if not pool or pool == '' then pool = 'gpu' end
  local line = 'cd:wait:' .. pool .. ':' .. o
  if redis.call('ZREM', line, id) == 0 then return false end
  if redis.call('ZCARD', line) == 0 then redis.call('SREM', 'cd:waiters:' .. pool, o) end
  return true
end
"""

# KEYS: job, owner index, dedup, queued, counts, idem ("" when none), link ("" when none), unsent
# ARGV: id, now, idem value, idem ttl, link field, pool, queued limit (0: none), every pool (comma list),
#       field, value, ...
# The limit counts the owner's queued jobs in every pool (a watch's jobs included): {'limit', count}.
# The link is a watch's (checkpoint, fingerprint) -> job hash: a pair already linked returns that
# job, and whatever job this call returns is linked in the same step, so a pair gets one job however
# many checks race (watches.store).
CREATE = REINDEX + TURNS + """
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
local limit = tonumber(ARGV[7])
if limit > 0 then
  local owner
  for i = 9, #ARGV, 2 do if ARGV[i] == 'owner' then owner = ARGV[i + 1] end end
  local n = 0
  for pool in string.gmatch(ARGV[8], '[^,]+') do n = n + redis.call('ZCARD', 'cd:wait:' .. pool .. ':' .. owner) end
  if n >= limit then return {'limit', tostring(n)} end
end
for i = 9, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'pool', ARGV[6])
join(ARGV[6], redis.call('HGET', KEYS[1], 'owner'), id, ARGV[2])
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
TRANSITION = REINDEX + TURNS + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if not string.find(',' .. ARGV[2] .. ',', ',' .. st .. ',', 1, true) then return st end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'worker') ~= ARGV[4] then return 'not_owner' end
if st == 'queued' and ARGV[3] ~= 'queued' then leave(KEYS[1], ARGV[1]) end
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

# The worker's claim on a delivered message. KEYS: counts, queued, workers, running.
# ARGV: message's job id, worker, now, max attempts, stale seconds, error json for "worker lost too
#       often", the worker's pool, strides json (owner -> stride), default stride.
# Returns {kind, info, job id}. A message naming a running job is a redelivery of that job (its worker
# died, or is still alive: 'busy'). Any other message is a turn (jobs.turns): the job run is the oldest
# of the owner with the smallest pass in the worker's pool, which moves that owner's pass on. A queued
# job outside every line (written before the turn order existed) runs on its own message.
CLAIM = REINDEX + TURNS + """
local strides = cjson.decode(ARGV[8])
local function job_of(id) return 'cd:job:' .. id end
local function claim(id)
  local job = job_of(id)
  local st = redis.call('HGET', job, 'status')
  if not st then return {'missing', '', id} end
  if st == 'succeeded' or st == 'failed' or st == 'cancelled' then return {'skip', st, id} end
  local function move(to)
    redis.call('HSET', job, 'status', to)
    reindex(job, id, st, to)
    redis.call('HINCRBY', job, 'rev', 1)
    redis.call('HINCRBY', KEYS[1], st, -1)
    redis.call('HINCRBY', KEYS[1], to, 1)
    redis.call('ZREM', KEYS[2], id)
    if to == 'running' then redis.call('ZADD', KEYS[4], ARGV[3], id) else redis.call('ZREM', KEYS[4], id) end
  end
  if st == 'queued' then
    local o = redis.call('HGET', job, 'owner')
    local pool = redis.call('HGET', job, 'pool')
    if not pool or pool == '' then pool = 'gpu' end
    if leave(job, id) then  -- its owner's turn is used
      local pk = 'cd:pass:' .. pool
      redis.call('HSET', pk, o, fmt(tonumber(redis.call('HGET', pk, o) or '0') + (strides[o] or tonumber(ARGV[9]))))
    end
  end
  if redis.call('HGET', job, 'cancel_requested') == '1' then
    redis.call('HSET', job, 'finished_at', ARGV[3])
    move('cancelled')
    return {'skip', 'cancelled', id}
  end
  if st == 'running' then
    -- a redelivery while the worker that holds the job still beats: not ours to run
    local w = redis.call('HGET', job, 'worker')
    local seen = w and redis.call('ZSCORE', KEYS[3], w)
    if w ~= ARGV[2] and seen and tonumber(seen) > tonumber(ARGV[3]) - tonumber(ARGV[5]) then
      return {'busy', w, id}
    end
  end
  local attempts = redis.call('HINCRBY', job, 'attempts', 1)
  if attempts > tonumber(ARGV[4]) then
    redis.call('HSET', job, 'finished_at', ARGV[3], 'error', ARGV[6])
    move('failed')
    return {'failed', tostring(attempts), id}
  end
  -- started_at is the first attempt's start, kept across retries; attempt_started_at the current one's
  redis.call('HSETNX', job, 'started_at', ARGV[3])
  redis.call('HSET', job, 'worker', ARGV[2], 'attempt_started_at', ARGV[3], 'progress', '{}')
  move('running')
  return {'run', tostring(attempts), id}
end

local named = job_of(ARGV[1])
local st = redis.call('HGET', named, 'status')
if st == 'running' then return claim(ARGV[1]) end
if st == 'queued' then
  local pool = redis.call('HGET', named, 'pool')
  if not pool or pool == '' then pool = 'gpu' end
  local o = redis.call('HGET', named, 'owner') or ''
  if not redis.call('ZSCORE', 'cd:wait:' .. pool .. ':' .. o, ARGV[1]) then return claim(ARGV[1]) end
end
-- a turn: the next job of the worker's pool
local head, best, best_pass = next_turn(ARGV[7])
if not head then return {'skip', st or 'missing', ARGV[1]} end
local pk = 'cd:pass:' .. ARGV[7]
if best_pass > tonumber(redis.call('HGET', pk, '') or '0') then redis.call('HSET', pk, '', fmt(best_pass)) end
return claim(head)
"""

# KEYS: job, counts, queued.  ARGV: id, now.
CANCEL = REINDEX + TURNS + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st == 'queued' then
  leave(KEYS[1], ARGV[1])
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

# Which job a message would run in ``pool`` if claimed now (CLAIM's choice, nothing claimed): the
# named job when it is running or queued outside every line, else the job whose turn it is; '' if none.
# ARGV: message's job id, pool.
PEEK = TURNS + """
local named = 'cd:job:' .. ARGV[1]
local st = redis.call('HGET', named, 'status')
if st == 'running' then return '' end
if st == 'queued' then
  local pool = redis.call('HGET', named, 'pool')
  if not pool or pool == '' then pool = 'gpu' end
  local o = redis.call('HGET', named, 'owner') or ''
  if not redis.call('ZSCORE', 'cd:wait:' .. pool .. ':' .. o, ARGV[1]) then return ARGV[1] end
end
local head = next_turn(ARGV[2])
return head or ''
"""

# One model's side of a comparison run by another worker (worker/tasks.py, split jobs): a hash per job,
# ``cd:half:<job>`` {role, attempt, status, worker}. status: sent -> running -> done | failed |
# cancelled; sent -> abandoned (the dispatcher stopped waiting before any worker took it).
# KEYS: half.  ARGV: allowed from (comma list), to, the job attempt that sent it, worker ('' = any; the
# new holder when moving to running, else the holder the move expects).
HALF_MOVE = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[3] then return 'stale' end
if not string.find(',' .. ARGV[1] .. ',', ',' .. st .. ',', 1, true) then return st end
if ARGV[2] == 'running' then
  redis.call('HSET', KEYS[1], 'worker', ARGV[4])
elseif ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'worker') ~= ARGV[4] then
  return 'not_owner'
end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
return 'ok'
"""
