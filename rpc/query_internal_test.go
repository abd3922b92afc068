package rpc

import (
	"math/rand/v2"
	"net/http"
	"net/url"
	"reflect"
	"testing"
)

// parseQuery splits simple queries itself; it must agree with
// url.ParseQuery on every query, simple or not.
func TestParseQueryMatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "raw", "wait", "=", "&", "&&", "==", "1", "%", "%41", "%zz", "+", ";", " ", "é", ""}
	for range 20000 {
		var raw string
		for range rng.IntN(8) {
			raw += alphabet[rng.IntN(len(alphabet))]
		}
		r := &http.Request{URL: &url.URL{RawQuery: raw}}
		got, gotErr := parseQuery(r)
		want, wantErr := url.ParseQuery(raw)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: error %v, url.ParseQuery: %v", raw, gotErr, wantErr)
		}
		if gotErr == nil && len(want) > 0 && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: %v, url.ParseQuery: %v", raw, got, want)
		}
		if gotErr == nil && len(want) == 0 && len(got) != 0 {
			t.Fatalf("%q: %v, url.ParseQuery: nothing", raw, got)
		}
	}
}
