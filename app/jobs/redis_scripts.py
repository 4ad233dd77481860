"""The Lua scripts of the Redis job store: every write that has to be atomic is one of them.

Keys are those of `app.jobs.keys`. Lease deadlines are read from Redis's clock (`TIME`), so the
replicas' clocks need not agree. Status codes returned to Python: 0 done, 1 no such job,
2 the job has ended, 3 wrong seq (the second value is the seq Redis expects next).
"""

from __future__ import annotations

__all__ = ["APPEND", "CANCEL", "CREATE", "EXPIRED", "FETCH", "LIST", "LOSE", "PRUNE", "RENEW"]

_NOW_MS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

CREATE = (
    _NOW_MS
    + """
-- KEYS job, running, index, pipeline index; ARGV id, max_running, lost_ms, token, created_us,
-- then the record's field, value, ...
-- The running-job limit, counted across replicas, and the lease, taken in the same step; the
-- job enters the indexes of GET /jobs.
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'token') == ARGV[4] then return {0, 0} end  -- our retry
  return {1, 0}
end
local running = redis.call('ZCARD', KEYS[2])
if running >= tonumber(ARGV[2]) then return {2, running} end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[3]), ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
return {0, running + 1}
"""
)

APPEND = (
    _NOW_MS
    + """
-- KEYS job, events, running, expiring; ARGV id, ttl_ms, token, first seq, results +,
-- skipped +, end status ('' unless the batch ends with `end`), end stats, finished_at, event
-- JSON, ...
-- A batch of consecutive events: XADD each with id 0-(seq+1); extend the lease; an `end`
-- finishes the job: status, stats, finished_at, out of the running set, retention starts (and
-- its end is noted for the indexes).
local st = redis.call('HMGET', KEYS[1], 'status', 'next', 'token', 'lost_ms')
if not st[1] then return {1, 0} end
local first, count, nxt = tonumber(ARGV[4]), #ARGV - 9, tonumber(st[2])
if st[3] == ARGV[3] and nxt == first + count then return {0, nxt} end  -- our retry went through
if st[1] ~= 'running' then return {2, nxt} end
if first ~= nxt then return {3, nxt} end
for i = 1, count do
  redis.call('XADD', KEYS[2], '0-' .. (first + i), 'e', ARGV[9 + i])
end
redis.call('HSET', KEYS[1], 'next', first + count, 'token', ARGV[3])
if ARGV[5] ~= '0' then redis.call('HINCRBY', KEYS[1], 'results', ARGV[5]) end
if ARGV[6] ~= '0' then redis.call('HINCRBY', KEYS[1], 'skipped', ARGV[6]) end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'status', ARGV[7], 'stats', ARGV[8], 'finished_at', ARGV[9])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  local pipeline = redis.call('HGET', KEYS[1], 'pipeline')
  redis.call('ZADD', KEYS[4], now_ms() + tonumber(ARGV[2]), ARGV[1] .. ':' .. pipeline)
else
  redis.call('ZADD', KEYS[3], 'XX', now_ms() + tonumber(st[4]), ARGV[1])
end
return {0, first + count}
"""
)

FETCH = """
-- KEYS job, events; ARGV first entry id, count.  The job's status ('' when unknown or
-- expired), the number of events, the events as one JSON array (one reply to parse), and the
-- job's next seq (the number of events it has).
local st = redis.call('HMGET', KEYS[1], 'status', 'next')
if not st[1] then return {'', 0, '[]', 0} end
local entries = redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])
local parts = {}
for i, entry in ipairs(entries) do parts[i] = entry[2][2] end
return {st[1], #parts, '[' .. table.concat(parts, ',') .. ']', tonumber(st[2])}
"""

CANCEL = """
-- KEYS job; ARGV channel, id.  Flag a running job and tell every replica; the record after.
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
if redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return redis.call('HGETALL', KEYS[1])
"""

RENEW = (
    _NOW_MS
    + """
-- KEYS job, running; ARGV id.  -1: the job runs no more (lost or ended), 1: renewed and its
-- cancellation was requested, 0: renewed.
local lost = redis.call('HGET', KEYS[1], 'lost_ms')
if not lost or not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return -1 end
redis.call('ZADD', KEYS[2], 'XX', now_ms() + tonumber(lost), ARGV[1])
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then return 1 end
return 0
"""
)

EXPIRED = (
    _NOW_MS
    + """
-- KEYS running; ARGV limit.  Running jobs whose lease deadline has passed.
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
"""
)

LOSE = (
    _NOW_MS
    + """
-- KEYS job, events, running, expiring; ARGV id, error message as a JSON string, ttl_ms,
-- finished_at.
-- The reaper's claim: if the lease is still past its deadline, `error` (WorkerLost) then `end`
-- (failed) in one step; a script runs alone, so exactly one replica writes them.
local deadline = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not deadline or tonumber(deadline) > now_ms() then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
local st = redis.call('HMGET', KEYS[1], 'status', 'next', 'items', 'created_at', 'results',
                      'skipped')
if st[1] ~= 'running' then return 0 end
local n = tonumber(st[2])
local elapsed = math.max(0, tonumber(ARGV[4]) - tonumber(st[4]))
local stats = '{"inputs":' .. st[3] .. ',"results":' .. st[5] .. ',"skipped":' .. st[6]
  .. ',"dropped":0,"elapsed_s":' .. string.format('%.6f', elapsed) .. '}'
redis.call('XADD', KEYS[2], '0-' .. (n + 1), 'e',
  '{"type":"error","seq":' .. n .. ',"stage":null,"error":' .. ARGV[2] .. '}')
redis.call('XADD', KEYS[2], '0-' .. (n + 2), 'e',
  '{"type":"end","seq":' .. (n + 1) .. ',"status":"failed","stats":' .. stats .. '}')
redis.call('HSET', KEYS[1], 'next', n + 2, 'status', 'failed', 'stats', stats,
           'finished_at', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local pipeline = redis.call('HGET', KEYS[1], 'pipeline')
redis.call('ZADD', KEYS[4], now_ms() + tonumber(ARGV[3]), ARGV[1] .. ':' .. pipeline)
return 1
"""
)

LIST = """
-- KEYS index (all jobs, or one pipeline's); ARGV before score ('+inf': from the newest),
-- before id ('': none), limit, status ('': any), job key prefix, scan budget.
-- Newest first, the jobs before the cursor (score, then id, descending): up to limit + 1
-- records (flat HGETALL replies), and the score and id of the last entry looked at, and 1 if
-- the budget ran out first. An entry whose job is gone (expired) leaves the index.
local before, before_id = ARGV[1], ARGV[2]
local limit, status, prefix = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local budget = tonumber(ARGV[6])
local out, offset, scanned, last_score, last_id = {}, 0, 0, '', ''
while #out <= limit and scanned < budget do
  local entries = redis.call('ZREVRANGEBYSCORE', KEYS[1], before, '-inf', 'WITHSCORES',
                             'LIMIT', offset, 64)
  if #entries == 0 then return {out, '', '', 0} end
  for i = 1, #entries, 2 do
    local id, score = entries[i], entries[i + 1]
    offset = offset + 1
    if before_id == '' or tonumber(score) ~= tonumber(before) or id < before_id then
      scanned = scanned + 1
      last_score, last_id = score, id
      local record = redis.call('HGETALL', prefix .. id)
      if #record == 0 then
        redis.call('ZREM', KEYS[1], id)
        offset = offset - 1
      elseif status == '' or redis.call('HGET', prefix .. id, 'status') == status then
        out[#out + 1] = record
      end
      if #out > limit or scanned >= budget then break end
    end
  end
end
return {out, last_score, last_id, (#out <= limit) and 1 or 0}
"""

PRUNE = (
    _NOW_MS
    + """
-- KEYS expiring, index; ARGV key prefix, limit.  Finished jobs whose retention is over leave
-- the indexes (theirs is `{prefix}index:{pipeline}`); how many did.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[2]))
local done = 0
for _, member in ipairs(due) do
  local cut = string.find(member, ':', 1, true)
  local id, pipeline = string.sub(member, 1, cut - 1), string.sub(member, cut + 1)
  if redis.call('EXISTS', ARGV[1] .. 'job:' .. id) == 0 then
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', ARGV[1] .. 'index:' .. pipeline, id)
    redis.call('ZREM', KEYS[1], member)
    done = done + 1
  end
end
return done
"""
)
