package rpc_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/rpc"
)

func TestRecordJSON(t *testing.T) {
	tests := []struct {
		value    []byte
		json     string // the value's JSON
		encoding bool
	}{
		{[]byte("hello"), `"value":"hello"`, false},
		{[]byte{}, `"value":""`, false},
		{[]byte("line\nnext\t\"q\""), `"value":"line\nnext\t\"q\""`, false},
		{[]byte{0xff, 0x00, 0xfe}, `"value":"/wD+"`, true},
		{[]byte("ok\xc3"), `"value":"b2vD"`, true},
	}
	for _, tt := range tests {
		r := rpc.Record{Key: "k", Value: tt.value, Version: 3, Origin: "o", VV: map[string]uint64{"o": 3},
			LWW: &rpc.Stamp{Lamport: 3, Origin: "o"}, At: 42, Fallback: true}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), tt.json) || strings.Contains(string(b), `"encoding":"base64"`) != tt.encoding {
			t.Errorf("%q: %s", tt.value, b)
		}
		var back rpc.Record
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if string(back.Value) != string(r.Value) {
			t.Errorf("value %q came back as %q", r.Value, back.Value)
		}
		back.Value = r.Value
		if !reflect.DeepEqual(back, r) {
			t.Errorf("round trip: %+v, want %+v", back, r)
		}
	}
	var r rpc.Record
	if err := json.Unmarshal([]byte(`{"key":"k","value":"x","encoding":"rot13"}`), &r); err == nil {
		t.Error("unknown encoding accepted")
	}
	b, _ := json.Marshal(rpc.Record{Key: "k"})
	if !strings.Contains(string(b), `"vv":{}`) {
		t.Errorf("nil vv: %s", b)
	}
}

func TestGetResponseJSON(t *testing.T) {
	g := rpc.GetResponse{Record: rpc.Record{Key: "k", Value: []byte{0xff}}, Answered: 2, Alive: 3, Asked: 2}
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	var back rpc.GetResponse
	if err := json.Unmarshal(b, &back); err != nil || back.Answered != 2 || back.Alive != 3 || back.Asked != 2 || back.Value[0] != 0xff {
		t.Errorf("%s -> %+v %v", b, back, err)
	}
}

func TestAsError(t *testing.T) {
	wrapped := fmt.Errorf("put k: %w", rpc.ErrNotFound)
	e := rpc.AsError(wrapped)
	if e.Status != 404 || e.Code != "not_found" || e.Message != "put k: key not found" {
		t.Errorf("wrapped: %+v", e)
	}
	if rpc.ErrNotFound.Message != "key not found" {
		t.Error("AsError changed the sentinel")
	}
	if e := rpc.AsError(errors.New("boom")); e.Status != 500 || e.Code != "internal" {
		t.Errorf("plain: %+v", e)
	}
	if !errors.Is(&rpc.Error{Code: "version_mismatch"}, rpc.ErrVersionMismatch) {
		t.Error("Is by code")
	}
}
