package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/rpc"
)

const testOrigin = "00112233445566778899aabbccddeeff"

// importLine is line i of a restore: key imp/NNNNN, version i.
func importLine(i int) string {
	return fmt.Sprintf(`{"key":"imp/%05d","value":"v%d","version":%d,"origin":%q,"vv":{%q:%d}}`, i, i, i, testOrigin, testOrigin, i)
}

// TestImportStopsAtRefusedLine: a restore of 1,200 lines (three batches)
// with line N refused — bad JSON, a bad key, a record refused as hostile,
// an invalid record — imports exactly lines 1..N-1, nothing from N on,
// and its error names line N and the count, in the message and in
// Import; a hostile record is counted as refused.
func TestImportStopsAtRefusedLine(t *testing.T) {
	d, c := runTestDaemon(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		line int
		bad  string
		want string
	}{
		{"json in the first batch", 3, `{"key":`, "line 3"},
		{"key across a batch boundary", 513, fmt.Sprintf(`{"key":"a//b","value":"x","version":1,"origin":%q,"vv":{%q:1}}`, testOrigin, testOrigin), "line 513"},
		{"hostile clock jump", 700, fmt.Sprintf(`{"key":"imp/hostile","value":"x","version":%d,"origin":%q,"vv":{%q:%d}}`, uint64(1)<<50, testOrigin, testOrigin, uint64(1)<<50), "line 700"},
		{"tombstone with a value", 1200, fmt.Sprintf(`{"key":"imp/t","value":"x","deleted":true,"version":3,"origin":%q,"vv":{%q:3}}`, testOrigin, testOrigin), "line 1200"},
		{"no version", 1, `{"key":"imp/nv","value":"x"}`, "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refused := d.slot.peek().store.Stats().RefusedClockJump
			prefix := fmt.Sprintf("imp-%d/", tc.line)
			var body strings.Builder
			for i := 1; i <= 1200; i++ {
				line := strings.Replace(importLine(i), `"imp/`, `"`+prefix, 1)
				if i == tc.line {
					line = tc.bad
				}
				body.WriteString(line + "\n")
			}
			res, err := c.Import(ctx, strings.NewReader(body.String()), false)
			var e *rpc.Error
			if !errors.As(err, &e) || !errors.Is(err, rpc.ErrBadRequest) {
				t.Fatalf("import: %+v, %v; want bad_request", res, err)
			}
			wantMsg := fmt.Sprintf("imported %d records (%d applied) from the lines before line %d; nothing from line %d on", tc.line-1, tc.line-1, tc.line, tc.line)
			if !strings.Contains(e.Message, tc.want) || !strings.Contains(e.Message, wantMsg) {
				t.Errorf("message %q: want %q and %q", e.Message, tc.want, wantMsg)
			}
			if e.Import == nil || e.Import.Records != uint64(tc.line-1) || e.Import.Applied != uint64(tc.line-1) || e.Import.Line != tc.line {
				t.Errorf("error's import result %+v, want %d records before line %d", e.Import, tc.line-1, tc.line)
			}
			for i := 1; i <= 1200; i++ {
				_, found, err := d.slot.peek().store.Get(fmt.Sprintf("%s%05d", prefix, i))
				if err != nil {
					t.Fatal(err)
				}
				if found != (i < tc.line) {
					t.Fatalf("line %d: stored %v; want only the lines before %d", i, found, tc.line)
				}
			}
			if tc.name == "hostile clock jump" && d.slot.peek().store.Stats().RefusedClockJump != refused+1 {
				t.Errorf("refused clock jumps %d -> %d, want one more", refused, d.slot.peek().store.Stats().RefusedClockJump)
			}
		})
	}
}

// TestImportBatches: a restore of 2,000 lines, blank lines among them,
// stores every record with its version; again, it changes nothing.
func TestImportBatches(t *testing.T) {
	d, c := runTestDaemon(t)
	ctx := context.Background()
	var body strings.Builder
	for i := 1; i <= 2000; i++ {
		body.WriteString(importLine(i) + "\n")
		if i%700 == 0 {
			body.WriteString("\n")
		}
	}
	for _, want := range []uint64{2000, 0} {
		res, err := c.Import(ctx, strings.NewReader(body.String()), false)
		if err != nil || res.Records != 2000 || res.Applied != want || res.Line != 0 {
			t.Fatalf("import: %+v, %v; want 2000 records, %d applied", res, err, want)
		}
	}
	rec, found, err := d.slot.peek().store.Get("imp/01234")
	if err != nil || !found || rec.Lamport != 1234 || string(rec.Value) != "v1234" {
		t.Errorf("imp/01234: %+v %v %v: want version 1234 and its value", rec, found, err)
	}
	if n := d.slot.peek().store.Keys(); n != 2000 {
		t.Errorf("%d keys, want 2000", n)
	}
}
