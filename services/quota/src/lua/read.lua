
-- read: a team's scope records as of now (windows rolled, nothing written but reaping).
-- KEYS: expiries, scope records...  ARGV: minute_len, day_len, month_len, reservation prefix.
-- Returns {now, record fields...}.
local now = now_secs()
local w = windows(now, tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
reap(KEYS[1], ARGV[4], now, 64)
local out = {now}
for i = 2, #KEYS do
  local r = load(KEYS[i])
  roll(r, w)
  flat(out, r)
end
return out
