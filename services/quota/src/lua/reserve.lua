
-- reserve: all-or-nothing over every scope of one request.
-- KEYS: expiries, reservation, settled marker, scope records...
-- ARGV: request_id, tokens, micro_usd, minute_len, day_len, month_len, ttl, reservation prefix,
--       then per scope: name and six limits (-1 = none) in quota::Limits order.
-- Returns {status, now, limit, scope, retry_after, budget, too_large, record fields...};
-- status 1 admitted, 0 refused, 2 already settled (a reserve that arrived after its release).
local id, tokens, usd = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_secs()
local w = windows(now, tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))
local ttl = tonumber(ARGV[7])
reap(KEYS[1], ARGV[8], now, 16)

local n = #KEYS - 3
local recs = {}
for i = 1, n do
  recs[i] = load(KEYS[3 + i])
  roll(recs[i], w)
end
local function reply(status, limit, scope, retry, budget, large)
  local out = {status, now, limit or '', scope or '', retry or 0, budget and 1 or 0, large and 1 or 0}
  for i = 1, n do flat(out, recs[i]) end
  return out
end
if redis.call('EXISTS', KEYS[3]) == 1 then return reply(2) end
-- A retried reserve (same request id) is answered as the first one was, once.
if redis.call('EXISTS', KEYS[2]) == 1 then return reply(1) end

local to_minute = math.max(1, w.minute_end - now)
local to_day = math.max(1, w.day_end - now)
local to_month = math.max(1, w.month_end - now)
for i = 1, n do
  local base = 8 + (i - 1) * 7
  local name = ARGV[base + 1]
  local function lim(j)
    local v = tonumber(ARGV[base + 1 + j])
    if v == nil or v < 0 then return nil end
    return v
  end
  local r = recs[i]
  local refusal = nil
  local par, rpm = lim(6), lim(1)
  if par and r.inf >= par then
    refusal = {'parallel_requests', 1, false, false}
  elseif rpm and r.rm >= rpm then
    refusal = {'requests_per_minute', to_minute, false, false}
  else
    local checks = {
      {'tokens_per_minute', lim(2), r.tm, tokens, to_minute, false},
      {'tokens_per_day', lim(3), r.td, tokens, to_day, true},
      {'usd_per_day', lim(4), r.ud, usd, to_day, true},
      {'usd_per_month', lim(5), r.um, usd, to_month, true},
    }
    for _, c in ipairs(checks) do
      local l = c[2]
      if l then
        if c[4] > l and not c[6] then refusal = {c[1], c[5], false, true}; break end
        if c[3] + c[4] > l then refusal = {c[1], c[5], c[6], false}; break end
      end
    end
  end
  if refusal then
    r.tf = r.tf + 1
    save(KEYS[3 + i], r)
    return reply(0, refusal[1], name, refusal[2], refusal[3], refusal[4])
  end
end

local keys = {}
for i = 1, n do
  local r = recs[i]
  r.inf = r.inf + 1
  add_windows(r, tokens, usd)
  save(KEYS[3 + i], r)
  keys[i] = KEYS[3 + i]
end
redis.call('SET', KEYS[2], cmsgpack.pack({table.concat(keys, '\n'), tokens, usd, w.minute, w.day, w.month, 0}),
  'EX', ttl * 2 + 60)
redis.call('ZADD', KEYS[1], now + ttl, id)
return reply(1)
