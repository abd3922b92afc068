package scripting

import (
	"strconv"
	"strings"
	"testing"
)

// The replaced string and table functions keep Lua 5.1's behaviour. Each
// line is a Lua expression and the text it must produce; the cases run in
// one hook call.
var luaCases = []struct{ expr, want string }{
	{`list(string.find("hello world", "o w"))`, "5,7"},
	{`list(string.find("hello", "l+"))`, "3,4"},
	{`list(string.find("hello", "xyz"))`, "nil"},
	{`list(string.find("a.b", ".", 1, true))`, "2,2"},
	{`list(string.find("a+b", "+", 1, true))`, "2,2"},
	{`list(string.find("a+b", "+"))`, "2,2"}, // '+' first is literal
	{`list(string.find("abc", "b", -1))`, "nil"},
	{`list(string.find("abc", "b", -2))`, "2,2"},
	{`list(string.find("abc", "", 10))`, "4,3"},
	{`list(("abcabc"):find("b", 3))`, "5,5"},
	{`list(string.find("key=value", "(%w+)=(%w+)"))`, "1,9,key,value"},
	{`list(string.find("abc", "()b()"))`, "2,2,2,3"},
	{`list(string.match("key=value", "(%w+)=(%w+)"))`, "key,value"},
	{`string.match("  trim me  ", "^%s*(.-)%s*$")`, "trim me"},
	{`list(string.match("hello", "()ll()"))`, "3,5"},
	{`string.match("THE (quick) fox", "%((%a+)%)")`, "quick"},
	{`string.match("f(a(b)c)d", "%b()")`, "(a(b)c)"},
	{`string.match("THE (quick) fox", "%f[%a]%a+", 5)`, "quick"},
	{`string.match("hello123", "%a+") .. string.match("hello123", "%d+")`, "hello123"},
	{`list(string.match("abcabc", "(a)(b)(c)%1%2%3"))`, "a,b,c"},
	{`list(string.match("abcab", "(a)(b)(c)%1%2%3"))`, "nil"},
	{`string.match("[test]", "^%[(.*)%]$")`, "test"},
	{`string.match("a]b", "[]]")`, "]"},
	{`string.match("-a", "[a-]")`, "-"},
	{`string.match("x-y", "[%-]")`, "-"},
	{`string.match("abc", "[^a]+")`, "bc"},
	{`string.match("AbC", "[A-Z]+")`, "A"},
	{`string.match("2024-01-02", "(%d+)-%d+-(%d+)$")`, "2024"},
	{`string.match("a.b", "^(.-)%.")`, "a"},
	{`string.match("aaab", "a-b")`, "aaab"},
	{`string.match("ab", "a?b")`, "ab"},
	{`string.match("b", "a?b")`, "b"},
	{`tostring(string.match("x$", "x$"))`, "nil"},
	{`string.match("x$", "x%$")`, "x$"},
	{`string.match("a$b", "$b")`, "$b"},
	{`list(string.gsub("hello world", "o", "0"))`, "hell0 w0rld,2"},
	{`list(string.gsub("hello world", "(%w+)", "<%1>"))`, "<hello> <world>,2"},
	{`list(string.gsub("abc", "%w", "%0%0"))`, "aabbcc,3"},
	{`list(string.gsub("abc", "", "-"))`, "-a-b-c-,4"},
	{`list(string.gsub("hello world", "%w+", {hello = "HI"}))`, "HI world,2"},
	{`list(string.gsub("hello world", "%w+", function(w) return w:upper() end, 1))`, "HELLO world,1"},
	{`list(string.gsub("hello", "l", function() return nil end))`, "hello,2"},
	{`list(string.gsub("aaa", "^a", "x"))`, "xaa,1"},
	{`list(string.gsub("x = 1", "%s*=%s*", "%%"))`, "x%1,1"},
	{`list(string.gsub("abc", "b", 7))`, "a7c,1"},
	{`list(string.gsub("a,b", "(%w)", "%1%1", 0))`, "a,b,0"},
	{`words("one two  three", "%a+")`, "one,two,three"},
	{`words("a=1, b=2", "(%w+)=(%w+)")`, "a1,b2"},
	{`words("abc", "x*")`, ",,,"},
	{`words("abc", "()")`, "1,2,3,4"},
	{`string.rep("ab", 3) .. "|" .. string.rep("x", 0) .. "|" .. string.rep("x", -1)`, "ababab||"},
	{`string.format("%5.2f|%d|%s|%x|%%|%-3s|", 3.14159, 42, "hi", 255, "a")`, " 3.14|42|hi|ff|%|a  |"},
	{`string.format("%q", 'a"b')`, `"a\"b"`},
	{`string.format("%%%d%%", 5)`, "%5%"},
	{`table.concat({1, 2, 3}, ", ")`, "1, 2, 3"},
	{`table.concat({}, "x") .. table.concat({"a", "b", "c"}, "", 2, 3)`, "bc"},
	{`err(string.find, "a", "[a")`, "malformed pattern (missing ']')"},
	{`err(string.find, "a", "%")`, "malformed pattern (ends with '%')"},
	{`err(string.match, "a", "(()")`, "unfinished capture"},
	{`err(string.match, "a", "%1")`, "invalid capture index"},
	{`err(string.gsub, "a", "a", "%2")`, "invalid capture index"},
	{`err(string.gsub, "a", "a", true)`, "string/function/table expected"},
	{`err(string.gsub, "a", "a", function() return {} end)`, "invalid replacement value (a table)"},
	{`err(string.find, string.rep("a", 300), string.rep("a?", 300) .. "b")`, "pattern too complex"},
	{`err(string.format, "%d")`, "no value"},
	{`err(string.format, "%y", 1)`, "invalid option"},
	{`err(table.concat, {1, {}, 3})`, "invalid value (at index 2)"},
	{`tostring(math.random(3) <= 3 and math.random(2, 4) >= 2)`, "true"},
	{`seeded()`, "true"},
	{`err(math.random, 0)`, "interval is empty"},
	{`tostring(type(getmetatable("")))`, "boolean"},
	{`("x"):rep(3):upper()`, "XXX"},
}

var luaCaseHelpers = `
local function list(...)
  local t = {...}
  for i = 1, select("#", ...) do t[i] = tostring(t[i]) end
  if select("#", ...) == 0 then return "" end
  return table.concat(t, ",")
end
local function words(s, p)
  local out = {}
  for a, b in string.gmatch(s, p) do out[#out + 1] = tostring(a) .. (b and tostring(b) or "") end
  return table.concat(out, ",")
end
local function err(f, ...)
  local ok, e = pcall(f, ...)
  if ok then return "no error" end
  return e
end
local function seeded()
  math.randomseed(7) local a, b = math.random(), math.random(100)
  math.randomseed(7) return tostring(a == math.random() and b == math.random(100))
end
`

func TestLuaStringFunctions(t *testing.T) { runLuaCases(t, luaCases) }

// runLuaCases evaluates each expression in its own call of one hook.
func runLuaCases(t *testing.T, cases []struct{ expr, want string }) {
	t.Helper()
	var src strings.Builder
	src.WriteString(luaCaseHelpers)
	src.WriteString("function on_set(key, value)\n  local i = tonumber(key)\n")
	for i, c := range cases {
		src.WriteString("  if i == " + strconv.Itoa(i) + " then return " + c.expr + " end\n")
	}
	src.WriteString("end\n")
	e := engine(t, src.String())
	for i, c := range cases {
		out, err := e.OnSet(bg, strconv.Itoa(i), []byte("v"), Meta{Op: "set"})
		got := string(out)
		if err != nil {
			got = "error: " + err.Error()
		}
		if strings.HasPrefix(c.expr, "err(") {
			if !strings.Contains(got, c.want) {
				t.Errorf("%s = %q; want an error containing %q", c.expr, got, c.want)
			}
			continue
		}
		if got != c.want {
			t.Errorf("%s = %q; want %q", c.expr, got, c.want)
		}
	}
}
