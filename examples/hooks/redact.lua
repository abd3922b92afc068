-- redact.lua: hide secrets when JSON values are read.
--
-- on_get decodes the value and replaces the value of every object field
-- named like a secret (password, secret, token, api_key; any case, at any
-- depth) with "[redacted]". The stored value is untouched: only what GET
-- and `list --values` show changes (export, watch and NATS see the
-- original). A value that is not JSON, or has nothing to redact, is shown
-- exactly as stored.
--
-- Attach it in the ckd config:
--
--   hook "accounts/*" {
--     script = "hooks/redact.lua"
--   }

local SECRET = { password = true, secret = true, token = true, api_key = true }

-- redact rewrites t in place and reports whether it changed anything.
local function redact(t)
  local changed = false
  for k, v in pairs(t) do
    if type(k) == "string" and SECRET[k:lower()] then
      t[k] = "[redacted]"
      changed = true
    elseif type(v) == "table" then
      changed = redact(v) or changed
    end
  end
  return changed
end

function on_get(key, value, meta)
  local doc = ck.json.decode(value)
  if type(doc) ~= "table" or not redact(doc) then
    return nil
  end
  return ck.json.encode(doc)
end
