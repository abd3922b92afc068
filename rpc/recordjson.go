package rpc

import (
	"encoding/base64"
	"slices"
	"strconv"
	"unicode/utf8"
)

// A record's JSON is on the path of every write's answer and of every
// listed or exported record; encoding/json gets there by reflection,
// through MarshalJSON, a second pass that checks and compacts its output,
// and a sort of the version vector. appendRecordJSON writes the same bytes
// directly (TestRecordJSONMatches compares it with encoding/json).

// appendRecordJSON appends r as MarshalJSON writes it.
func appendRecordJSON(b []byte, r *Record) []byte {
	b = append(b, `{"key":`...)
	b = appendJSONString(b, r.Key)
	b = append(b, `,"value":`...)
	if utf8.Valid(r.Value) {
		b = appendJSONString(b, string(r.Value))
	} else {
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, r.Value)
		b = append(b, `","encoding":"base64"`...)
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, r.Version, 10)
	b = append(b, `,"origin":`...)
	b = appendJSONString(b, r.Origin)
	b = append(b, `,"vv":{`...)
	if len(r.VV) == 1 { // the usual case: no sort, no slice
		for k, v := range r.VV {
			b = strconv.AppendUint(append(appendJSONString(b, k), ':'), v, 10)
		}
	} else {
		keys := make([]string, 0, len(r.VV))
		for k := range r.VV {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(append(appendJSONString(b, k), ':'), r.VV[k], 10)
		}
	}
	b = append(b, `},"deleted":`...)
	b = strconv.AppendBool(b, r.Deleted)
	if r.LWW != nil {
		b = append(b, `,"lww":{"lamport":`...)
		b = strconv.AppendUint(b, r.LWW.Lamport, 10)
		b = append(b, `,"origin":`...)
		b = append(appendJSONString(b, r.LWW.Origin), '}')
	}
	if r.At != 0 {
		b = strconv.AppendInt(append(b, `,"at":`...), r.At, 10)
	}
	if r.Fallback {
		b = append(b, `,"fallback":true`...)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as encoding/json writes a string: HTML
// characters, control characters, U+2028 and U+2029 escaped, invalid
// UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
