
-- settle: replaces a reservation by the real usage, once per request id.
-- KEYS: expiries, reservation, settled marker, scope records...
-- ARGV: request_id, tokens_in, tokens_out, micro_usd, partial (0/1), release (0/1),
--       minute_len, day_len, month_len, ttl.
-- Returns {outcome, now}: settled | late (after its reaping) | unreserved (no reservation was
-- committed: served on local limits, or released before its reserve arrived) | duplicate.
local id = ARGV[1]
local tin, tout, usd = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local partial, release = ARGV[5] == '1', ARGV[6] == '1'
local now = now_secs()
local w = windows(now, tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]))
local ttl = tonumber(ARGV[10])
if redis.call('EXISTS', KEYS[3]) == 1 then return {'duplicate', now} end
local tokens = tin + tout
local res = load_res(KEYS[2])
local outcome
if res then
  local rt, ru = res[2], res[3]
  local rm, rd, rmo = res[4], res[5], res[6]
  local reaped = res[7] == 1
  for i = 4, #KEYS do
    local r = load(KEYS[i])
    roll(r, w)
    if r.m == rm then
      r.tm = math.max(0, r.tm - rt) + tokens
      if release then r.rm = math.max(0, r.rm - 1) end
    end
    if r.d == rd then
      r.td = math.max(0, r.td - rt) + tokens
      r.ud = math.max(0, r.ud - ru) + usd
    end
    if r.mo == rmo then r.um = math.max(0, r.um - ru) + usd end
    if reaped then
      -- Take back the estimate the reaper charged.
      r.ti = r.ti - rt
      r.tu = r.tu - ru
      r.tp = r.tp - 1
    else
      r.inf = r.inf - 1
    end
    if release then r.tr = r.tr - 1 end
    add_totals(r, tin, tout, usd, partial)
    save(KEYS[i], r)
  end
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[1], id)
  outcome = reaped and 'late' or 'settled'
else
  if not release then
    for i = 4, #KEYS do
      local r = load(KEYS[i])
      roll(r, w)
      add_windows(r, tokens, usd)
      add_totals(r, tin, tout, usd, partial)
      save(KEYS[i], r)
    end
  end
  outcome = 'unreserved'
end
-- Outlives any reserve still on its way, so that a late one cannot reserve again.
redis.call('SET', KEYS[3], outcome, 'EX', ttl * 2 + 60)
return {outcome, now}
