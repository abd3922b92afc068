-- set_union.lua: resolve concurrent writes of a set by taking the union.
--
-- Each value is a JSON array of strings and numbers, used as a set. When
-- two nodes wrote the key concurrently, on_conflict stores the union of
-- both arrays, without duplicates and sorted (numbers first, then strings)
-- so every node computes the same bytes. A deleted version counts as the
-- empty set, so an addition wins over a concurrent delete; when both are
-- deleted the key stays deleted.
--
-- Union is commutative, associative and idempotent, so the result is the
-- same however three or more concurrent writers meet (docs/PROTOCOL.md, Resolve). A value
-- that is not such an array makes the hook fail, and the node falls back
-- to last-writer-wins (logged and counted).
--
-- Attach it in the ckd config:
--
--   hook "sets/*" {
--     script = "hooks/set_union.lua"
--   }

local function members(version)
  if version.deleted then
    return {}
  end
  local arr = ck.json.decode(version.value)
  if type(arr) ~= "table" then
    error("not a JSON array")
  end
  for k, v in pairs(arr) do
    if type(k) ~= "number" then
      error("not a JSON array")
    end
    if type(v) ~= "string" and type(v) ~= "number" then
      error("set members must be strings or numbers")
    end
  end
  return arr
end

local function before(a, b)
  if type(a) ~= type(b) then
    return type(a) == "number"
  end
  return a < b
end

function on_conflict(key, winner, loser)
  if winner.deleted and loser.deleted then
    return nil
  end
  local seen, out = {}, {}
  for _, version in ipairs({ winner, loser }) do
    for _, v in ipairs(members(version)) do
      local id = type(v) .. ":" .. tostring(v)
      if not seen[id] then
        seen[id] = true
        out[#out + 1] = v
      end
    end
  end
  table.sort(out, before)
  return ck.json.encode(ck.json.array(out))
end
