-- The grace counts from the start, the hold (0: none) from the end, which
-- is now; the later one wins (Keep::until).
local function kept_until(start, grace, hold)
  local kept = start + grace + 1
  if hold > 0 and now + hold + 1 > kept then kept = now + hold + 1 end
  return kept
end
