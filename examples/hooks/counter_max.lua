-- counter_max.lua: resolve concurrent writes of a number by keeping the
-- larger one.
--
-- Each value is a decimal number ("42", "-1.5"). When two nodes wrote the
-- key concurrently, on_conflict stores the maximum, written the way Lua's
-- tostring writes numbers ("7", not "007" or "7.0"). A deleted version
-- counts as absent, so a number wins over a concurrent delete; when both
-- are deleted the key stays deleted. max is commutative, associative and
-- idempotent, so three or more concurrent writers converge too. A value
-- that is not a number makes the hook fail and the node falls back to
-- last-writer-wins (logged and counted).
--
-- Use it for high-water marks: the largest offset seen, the latest epoch.
--
-- Attach it in the ckd config:
--
--   hook "counters/*" {
--     script = "hooks/counter_max.lua"
--   }

local function number(version)
  if version.deleted then
    return nil
  end
  local n = tonumber(version.value)
  if n == nil then
    error("not a number: " .. version.value)
  end
  return n
end

function on_conflict(key, winner, loser)
  local a, b = number(winner), number(loser)
  if a == nil and b == nil then
    return nil
  end
  return math.max(a or b, b or a)
end
