package rpc

import (
	"encoding/base64"
	"slices"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/cloudknowledge/ck/internal/jsonstr"
)

// A record's JSON is on the path of every write's answer and of every
// listed or exported record; encoding/json gets there by reflection,
// through MarshalJSON, a second pass that checks and compacts its output,
// and a sort of the version vector. appendRecordJSON writes the same bytes
// directly (TestRecordJSONMatches compares it with encoding/json).

// appendRecordJSON appends r as MarshalJSON writes it.
func appendRecordJSON(b []byte, r *Record) []byte {
	b = append(b, `{"key":`...)
	b = jsonstr.Append(b, r.Key, true)
	b = append(b, `,"value":`...)
	if utf8.Valid(r.Value) {
		b = jsonstr.Append(b, bytesString(r.Value), true)
	} else {
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, r.Value)
		b = append(b, `","encoding":"base64"`...)
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, r.Version, 10)
	b = append(b, `,"origin":`...)
	b = jsonstr.Append(b, r.Origin, true)
	b = append(b, `,"vv":{`...)
	if len(r.VV) == 1 { // the usual case: no sort, no slice
		for k, v := range r.VV {
			b = strconv.AppendUint(append(jsonstr.Append(b, k, true), ':'), v, 10)
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
			b = strconv.AppendUint(append(jsonstr.Append(b, k, true), ':'), r.VV[k], 10)
		}
	}
	b = append(b, `},"deleted":`...)
	b = strconv.AppendBool(b, r.Deleted)
	if r.LWW != nil {
		b = append(b, `,"lww":{"lamport":`...)
		b = strconv.AppendUint(b, r.LWW.Lamport, 10)
		b = append(b, `,"origin":`...)
		b = append(jsonstr.Append(b, r.LWW.Origin, true), '}')
	}
	if r.At != 0 {
		b = strconv.AppendInt(append(b, `,"at":`...), r.At, 10)
	}
	if r.Fallback {
		b = append(b, `,"fallback":true`...)
	}
	if r.TTLMS != 0 {
		b = strconv.AppendInt(append(b, `,"ttl_ms":`...), r.TTLMS, 10)
	}
	if r.TTLRemainingMS != 0 {
		b = strconv.AppendInt(append(b, `,"ttl_remaining_ms":`...), r.TTLRemainingMS, 10)
	}
	if r.Ephemeral != 0 {
		b = strconv.AppendUint(append(b, `,"ephemeral":`...), r.Ephemeral, 10)
	}
	return append(b, '}')
}

// bytesString is b as a string without a copy, for a call that only reads
// it while b does not change (string(b) copies a value of more than 32
// bytes to the heap, on every answer).
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
