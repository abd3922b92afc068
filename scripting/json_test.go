package scripting

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

var jsonCases = []struct{ expr, want string }{
	// Round trips: decode then encode gives the canonical form (sorted keys).
	{`rt('{"b":1,"a":[1,2.5,null,true,false,"x"],"c":{}}')`, `{"a":[1,2.5,null,true,false,"x"],"b":1,"c":{}}`},
	{`rt('[]')`, `[]`},
	{`rt('{}')`, `{}`},
	{`rt(' [ {"x" : [ ] } , -0.5e1 , 1E2 ] ')`, `[{"x":[]},-5,100]`},
	{`rt('"\\u00e9\\ud83d\\ude00\\n"')`, "\"é😀\\n\""},
	{`rt('"a\\"b\\\\c\\/d\\b\\f\\r\\t"')`, `"a\"b\\c/d\b\f\r\t"`},
	{`rt('"\\ud800"')`, "\"\uFFFD\""},
	{`rt('12345678901234')`, `12345678901234`},
	{`rt('0.1')`, `0.1`},
	// Encoding Lua values.
	{`enc({1, 2, 3})`, `[1,2,3]`},
	{`enc({b = true, a = "x"})`, `{"a":"x","b":true}`},
	{`enc({})`, `{}`},
	{`enc(ck.json.array())`, `[]`},
	{`enc(ck.json.array({}))`, `[]`},
	{`enc(ck.json.object({}))`, `{}`},
	{`enc({{}, {1}, {x = {y = {}}}})`, `[{},[1],{"x":{"y":{}}}]`},
	{`enc(nil)`, `null`},
	{`enc(ck.json.null)`, `null`},
	{`enc({1, ck.json.null, 3})`, `[1,null,3]`},
	{`enc(1e20)`, `1e+20`},
	{`enc(-0.5)`, `-0.5`},
	{`enc(3)`, `3`},
	{`enc("\1\127<>&")`, "\"\\u0001\x7f<>&\""},
	{`enc("\255x")`, `"\ufffdx"`}, // as encoding/json writes it
	{`err(enc, {[1] = "a", [3] = "b"})`, "mixed or non-string keys"},
	{`err(enc, {1, x = 2})`, "mixed or non-string keys"},
	{`err(enc, {f = print or function() end})`, "cannot encode a function"},
	{`err(enc, 0/0)`, "NaN"},
	{`err(enc, 1/0)`, "infinity"},
	{`err(enc, ck.json.object({[1] = 1}))`, "keys must be strings"},
	{`err(ck.json.array, 5)`, "table expected"},
	// Decoding.
	{`tostring(ck.json.decode("[1,null]")[2] == ck.json.null)`, "true"},
	{`tostring(#ck.json.decode("[1,null,3]"))`, "3"},
	{`tostring(ck.json.decode(" 1 "))`, "1"},
	{`tostring(ck.json.decode('"x"'))`, "x"},
	{`tostring(ck.json.decode('{"a":{"b":[10,20]}}').a.b[2])`, "20"},
	{`tostring(ck.json.null)`, "null"},
	{`dec("nul")`, "invalid character"},
	{`dec("[1,]")`, "invalid character"},
	{`dec('{"a" 1}')`, "expected ':'"},
	{`dec('{"a":1,}')`, "expected a string key"},
	{`dec("01")`, "unexpected data"},
	{`dec("1.")`, "invalid number"},
	{`dec("-")`, "invalid number"},
	{`dec('"\\x"')`, "invalid escape"},
	{`dec('"\\u12"')`, "invalid \\u escape"},
	{`dec('"a\tb"')`, "control character"},
	{`dec("tru")`, "invalid character"},
	{`dec("")`, "unexpected end"},
	{`dec("[1] [2]")`, "unexpected data"},
	{`dec("1e400")`, "out of range"},
	{`dec('"abc')`, "unterminated string"},
}

const jsonHelpers = `
local function enc(v) return ck.json.encode(v) end
local function rt(s)
  local v, e = ck.json.decode(s)
  if e then error(e) end
  return ck.json.encode(v)
end
local function dec(s)
  local v, e = ck.json.decode(s)
  if v ~= nil then return "decoded" end
  return e
end
`

func TestJSON(t *testing.T) {
	cases := append([]struct{ expr, want string }(nil), jsonCases...)
	for i := range cases {
		if strings.HasPrefix(cases[i].expr, "dec(") {
			cases[i].expr = "err(function() error(" + cases[i].expr + ") end)"
		}
	}
	saved := luaCaseHelpers
	luaCaseHelpers += jsonHelpers
	defer func() { luaCaseHelpers = saved }()
	runLuaCases(t, cases)
}

// Every document Go's encoding/json accepts decodes, and encodes back to
// JSON that means the same.
func TestJSONAgainstEncodingJSON(t *testing.T) {
	docs := []string{
		`{"user":{"name":"Ada","tags":["x","y"],"age":36,"ratio":0.25,"admin":false,"boss":null}}`,
		`[[[[]]],{"":{"":""}},-1.5e-7,1e300,"\u2028\u0000"]`,
		`"\ud834\udd1e"`,
	}
	e := engine(t, `function on_set(k, v) return ck.json.encode(assert(ck.json.decode(v))) end`)
	for _, doc := range docs {
		out, err := e.OnSet(bg, "k", []byte(doc), Meta{Op: "set"})
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		var a, b any
		if err := json.Unmarshal([]byte(doc), &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatalf("re-encoded %s is not JSON: %v", out, err)
		}
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) {
			t.Errorf("round trip of %s gave %s", doc, out)
		}
	}
}

// FuzzJSONDecode: ck.json.decode accepts exactly what encoding/json
// accepts, and what it accepts encodes back to equivalent JSON.
func FuzzJSONDecode(f *testing.F) {
	for _, seed := range []string{`{"a":[1,2,{"b":null}]}`, `"\ud83d\ude00"`, `-0.0e-0`, `[`, `{"a" 1}`, `01`, `"\x"`, "\"\xff\""} {
		f.Add(seed)
	}
	e := engine(f, `function on_set() end`)
	f.Fuzz(func(t *testing.T, doc string) {
		if len(doc) > 256 {
			return
		}
		sb := newSandbox(e)
		defer sb.L.Close()
		sb.call = callState{ctx: context.Background(), budget: 1 << 20}
		d := jsonDecoder{sb: sb, L: sb.L, s: doc}
		v, msg := d.decode()
		if strings.HasPrefix(msg, "number out of range") {
			return // valid syntax, but no float64 holds it (encoding/json refuses it too)
		}
		if ok := msg == ""; ok != json.Valid([]byte(doc)) {
			t.Fatalf("decode(%q): error %q; encoding/json.Valid = %v", doc, msg, json.Valid([]byte(doc)))
		}
		if msg != "" {
			return
		}
		enc := jsonEncoder{sb: sb, limit: 1 << 20}
		enc.value(v)
		var a, b any
		if err := json.Unmarshal([]byte(doc), &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(enc.buf, &b); err != nil {
			t.Fatalf("decode(%q) encodes to invalid JSON %q", doc, enc.buf)
		}
		if !reflect.DeepEqual(a, b) { // numbers compare with ==, so -0 equals 0
			t.Fatalf("%q encodes back as %q", doc, enc.buf)
		}
	})
}
