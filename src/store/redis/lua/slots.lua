-- CRONLOCK_CONCURRENCY: KEYS are the semaphore's slots, tried in order.
-- Returns take()'s answer plus the slot's index for the first slot taken,
-- or {0, now, the soonest expiry of any slot} when every slot is held.
local soonest
for i = 1, #KEYS do
  local answer = take(KEYS[i])
  if answer[1] ~= 0 then
    answer[4] = i
    return answer
  end
  local value = tonumber(answer[3]) or 0
  if not soonest or value < soonest then soonest = value end
end
return {0, now, string.format('%d', soonest)}
