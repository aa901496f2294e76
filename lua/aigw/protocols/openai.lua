-- aigw.protocols.openai -- small readers of OpenAI chat values shared by
-- the translators (OpenAI chat is the hub format they all go through).

local concat = table.concat

local M = {}

-- The text of an OpenAI message content: a string, or the text parts of a
-- list of parts joined (other part types ignored).
function M.text(content)
  if type(content) == "string" then return content end
  if type(content) ~= "table" then return "" end
  local out = {}
  for _, p in ipairs(content) do
    if type(p) == "table" and p.type == "text" and type(p.text) == "string" then
      out[#out + 1] = p.text
    end
  end
  return concat(out)
end

return M
