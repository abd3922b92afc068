-- pn_counter.lua: a counter that is exact on every node: increments made
-- on different nodes at the same time all count.
--
-- Write increments, not values: `ckctl set counters/x +1` (or +10; a
-- decrement after "--", which ends ckctl's flags: `ckctl set -- counters/x -3`).
-- on_set reads the key as this node holds it (ck.get) and adds the
-- increment to this node's own part (ck.node), never to another node's.
-- The stored value is JSON of per-node parts, increments and decrements
-- apart: {"n":{"b":1},"p":{"a":5,"b":2}}. When two nodes wrote the key
-- concurrently, on_conflict keeps for each node the larger of its two
-- parts: a part only grows, so the larger one has seen every increment of
-- that node. That merge is commutative, associative and idempotent, so
-- any number of concurrent writers converge to the same state, which
-- counts every increment once (a PN-counter, a CRDT). on_get shows the
-- count — the p parts' sum minus the n parts' — so `ckctl get counters/x`
-- prints 6; `ckctl export` keeps the parts.
--
-- Compare-and-set (`--if-version`) is exact on one node only: two nodes
-- that read the same version both succeed, and one update is lost when
-- their writes meet. This merge is exact on every node. (ckd reruns an
-- on_set hook when the key changed while it ran, so two increments on the
-- same node cannot both read the same part either.)
--
-- A JSON state written to the key (`ckctl import --as-new` of an export)
-- is merged in the same way; any other value is refused (exit 5). Node
-- names (node_name, the host name by default) must differ: two nodes of
-- one name would share a part. Deleting a counter does not reset it
-- cluster-wide: a delete concurrent with increments loses to them, and a
-- node's part written before the delete can come back over one written
-- after it. Start a new key instead.
--
-- Attach it in the ckd config:
--
--   hook "counters/*" {
--     script = "hooks/pn_counter.lua"
--   }

-- parts checks one {"node": n} map of a state.
local function parts(t, what)
  if t == nil then
    return {}
  end
  if type(t) ~= "table" then
    error("counter state: " .. what .. " is not an object")
  end
  for node, n in pairs(t) do
    if type(node) ~= "string" or type(n) ~= "number" or n < 0 or n ~= math.floor(n) then
      error("counter state: " .. what .. " parts must be whole numbers >= 0 by node name")
    end
  end
  return t
end

-- state decodes a stored value; nil (absent or deleted) is the zero state.
local function state(value)
  if value == nil then
    return { p = {}, n = {} }
  end
  local s = ck.json.decode(value)
  if type(s) ~= "table" then
    error("counter state: not a JSON object")
  end
  return { p = parts(s.p, "p"), n = parts(s.n, "n") }
end

local function encode(s)
  return ck.json.encode({ p = ck.json.object(s.p), n = ck.json.object(s.n) })
end

-- merge keeps, for each node, the larger of its parts in a and b.
local function merge(a, b)
  local out = { p = {}, n = {} }
  for _, side in ipairs({ "p", "n" }) do
    for _, s in ipairs({ a, b }) do
      for node, n in pairs(s[side]) do
        out[side][node] = math.max(out[side][node] or 0, n)
      end
    end
  end
  return out
end

local function sum(t)
  local total = 0
  for _, n in pairs(t) do
    total = total + n
  end
  return total
end

function on_set(key, value, meta)
  if meta.op == "del" then
    return nil
  end
  local cur = state(ck.get(key))
  local sign, digits = string.match(value, "^([+-])(%d+)$")
  if sign ~= nil then
    if #digits > 15 then
      error("counter increment too large: " .. value)
    end
    local side = sign == "+" and "p" or "n"
    cur[side][ck.node] = (cur[side][ck.node] or 0) + tonumber(digits)
    return encode(cur)
  end
  if string.sub(value, 1, 1) == "{" then
    return encode(merge(cur, state(value)))
  end
  error("a counter takes an increment, +N or -N (or a JSON state to merge), not " .. string.format("%q", string.sub(value, 1, 40)))
end

function on_get(key, value, meta)
  local s = state(value)
  return sum(s.p) - sum(s.n)
end

function on_conflict(key, winner, loser)
  if winner.deleted and loser.deleted then
    return nil
  end
  local a, b = state(not winner.deleted and winner.value or nil), state(not loser.deleted and loser.value or nil)
  return encode(merge(a, b))
end
