-- normalize.lua: store values trimmed of surrounding white space and in
-- lower case, so "  Alice@Example.COM " is stored as "alice@example.com".
--
-- on_set returns the normalized value, which is what every node stores
-- and replicates. Deletes pass unchanged. Lower-casing is ASCII-only:
-- bytes outside A-Z are kept as they are.
--
-- Attach it in the ckd config:
--
--   hook "users/*/email" {
--     script = "hooks/normalize.lua"
--   }

function on_set(key, value, meta)
  if meta.op == "del" then
    return nil
  end
  local trimmed = value:match("^%s*(.-)%s*$")
  return trimmed:lower()
end
