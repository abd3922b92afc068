package daemon

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkImport restores 10,000 records of 256 B per op through a real
// daemon's socket (POST /v1/import), each op new keys; it reports
// records/s. The figure for docs/BENCHMARKS.md comes from the real
// binaries (ckbench -t import), this keeps the path profiled:
//
//	go test -run - -bench Import -benchtime 10x -cpuprofile cpu.out ./daemon/
func BenchmarkImport(b *testing.B) {
	_, c := runTestDaemon(b)
	ctx := context.Background()
	const n = 10000
	value := bytes.Repeat([]byte("v"), 256)
	origin := "00112233445566778899aabbccddeeff"
	b.ResetTimer()
	var took time.Duration
	for i := range b.N {
		var body bytes.Buffer
		for j := 1; j <= n; j++ {
			fmt.Fprintf(&body, `{"key":"bench/%d/%06d","value":%q,"version":%d,"origin":%q,"vv":{%q:%d}}`+"\n",
				i, j, value, j, origin, origin, j)
		}
		start := time.Now()
		res, err := c.Import(ctx, &body, false)
		took += time.Since(start)
		if err != nil || res.Records != n {
			b.Fatalf("import: %+v, %v", res, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/took.Seconds(), "records/s")
}
