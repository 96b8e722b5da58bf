-- Shared by every Sluice quota script. A scope's record is one string, a MessagePack array of
-- the fields of sluice_core::quota::Record in order (one GET and one SET per scope: several
-- times cheaper in Lua than a hash of 15 fields); windows are computed from Redis's clock so
-- that every Envoy and every quota replica agrees on them. All counters are integers below
-- 2^53 (Lua numbers are doubles); MessagePack stores integral numbers as integers, exactly.

local F = {'m', 'rm', 'tm', 'd', 'td', 'ud', 'mo', 'um', 'inf', 'tr', 'ti', 'to', 'tu', 'tp', 'tf'}

local function now_secs()
  return tonumber(redis.call('TIME')[1])
end

-- Days since 1970-01-01 -> year, month (Howard Hinnant's civil_from_days).
local function civil(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m
end

local function days_from_civil(y, m)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mm = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mm + 2) / 5)
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- The windows of an instant: lengths in seconds, month 0 = the UTC calendar month.
local function windows(secs, ml, dl, mol)
  local w = {secs = secs}
  w.minute = math.floor(secs / ml)
  w.minute_end = (w.minute + 1) * ml
  w.day = math.floor(secs / dl)
  w.day_end = (w.day + 1) * dl
  if mol > 0 then
    w.month = math.floor(secs / mol)
    w.month_end = (w.month + 1) * mol
  else
    local y, m = civil(math.floor(secs / 86400))
    w.month = y * 12 + m - 1
    local ny, nm = y, m + 1
    if nm == 13 then ny, nm = y + 1, 1 end
    w.month_end = days_from_civil(ny, nm) * 86400
  end
  return w
end

local NF = #F

local function load(key)
  local raw = redis.call('GET', key)
  local v = raw and cmsgpack.unpack(raw) or {}
  local r = {}
  for i = 1, NF do r[F[i]] = tonumber(v[i]) or 0 end
  return r
end

local function roll(r, w)
  if r.m ~= w.minute then r.m = w.minute; r.rm = 0; r.tm = 0 end
  if r.d ~= w.day then r.d = w.day; r.td = 0; r.ud = 0 end
  if r.mo ~= w.month then r.mo = w.month; r.um = 0 end
end

local function save(key, r)
  local v = {}
  for i = 1, NF do v[i] = math.max(0, r[F[i]]) end
  redis.call('SET', key, cmsgpack.pack(v))
end

-- What a request's real usage adds to the lifetime totals.
local function add_totals(r, tin, tout, usd, partial)
  r.ti = r.ti + tin
  r.to = r.to + tout
  r.tu = r.tu + usd
  if partial then r.tp = r.tp + 1 end
end

-- What one admitted request adds to the current windows (a reservation, or a charge that
-- had none).
local function add_windows(r, tokens, usd)
  r.rm = r.rm + 1
  r.tm = r.tm + tokens
  r.td = r.td + tokens
  r.ud = r.ud + usd
  r.um = r.um + usd
  r.tr = r.tr + 1
end

local function flat(out, r)
  for _, f in ipairs(F) do out[#out + 1] = math.max(0, r[f]) end
end

-- Reservations of this team that outlived their TTL: the request never settled (its Envoy died,
-- or the settle was lost). Its parallel-request lease is returned; its reservation stays charged
-- in the windows and is counted as an estimate (partial) in the totals, so a lost settle can
-- over-charge by at most the reservation and never under-charge. The record is kept, marked,
-- so that a settle arriving late still corrects the charge to the real usage.
-- A reservation record: {scope keys joined by newlines, tokens, micro-USD, minute, day, month,
-- reaped (0/1)}, MessagePack in one string with the reservation's TTL.
local function load_res(key)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  return cmsgpack.unpack(raw)
end

local function reap(expiries, res_prefix, now, limit)
  local ids = redis.call('ZRANGEBYSCORE', expiries, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    local key = res_prefix .. id
    local res = load_res(key)
    if res and res[7] == 0 then
      for scope in string.gmatch(res[1], '[^\n]+') do
        local r = load(scope)
        r.inf = r.inf - 1
        r.ti = r.ti + res[2]
        r.tu = r.tu + res[3]
        r.tp = r.tp + 1
        save(scope, r)
      end
      res[7] = 1
      redis.call('SET', key, cmsgpack.pack(res), 'KEEPTTL')
    end
    redis.call('ZREM', expiries, id)
  end
  return #ids
end
