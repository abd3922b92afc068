-- json_validate.lua: refuse writes whose value is not valid JSON.
--
-- on_set decodes the value with ck.json.decode. When that fails the write
-- is rejected with the parser's message: the API answers 422 hook_rejected
-- and ckctl exits with status 5; nothing is stored. Deletes always pass.
-- A valid document is stored exactly as written (on_set returns nil).
--
-- Attach it in the ckd config (the path is relative to the config file):
--
--   hook "config/*" {
--     script = "hooks/json_validate.lua"
--   }

function on_set(key, value, meta)
  if meta.op == "del" then
    return nil
  end
  local doc, err = ck.json.decode(value)
  if doc == nil then
    return nil, "value is not valid JSON: " .. err
  end
  return nil
end
