package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

// importTest measures a restore: -n records of -d bytes, as 'ckctl
// export' writes them (new keys under a fresh prefix, versions and
// vectors of a made-up origin), streamed to POST /v1/import as they are
// generated, as 'ckctl import FILE' sends a file.
func importTest(ctx context.Context, cfg config) (result, error) {
	c := rpc.NewClient(cfg.socket)
	defer c.Close()
	var id [16]byte
	rand.Read(id[:])
	origin := hex.EncodeToString(id[:])
	prefix := fmt.Sprintf("%simport-%d/", cfg.prefix, time.Now().UnixNano())
	value := makeValue(cfg.size, cfg.jsonValues)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeImport(pw, prefix, origin, value, cfg.requests)) }()
	start := time.Now()
	res, err := c.Import(ctx, pr, false)
	pr.Close()
	if err != nil {
		return result{}, err
	}
	elapsed := time.Since(start)
	if res.Records != uint64(cfg.requests) {
		return result{}, fmt.Errorf("imported %d records, want %d", res.Records, cfg.requests)
	}
	return result{Test: "import", Clients: 1, Requests: cfg.requests, Size: cfg.size,
		Seconds: elapsed.Seconds(), OpsPerSec: float64(cfg.requests) / elapsed.Seconds()}, nil
}

// writeImport writes n export lines to w.
func writeImport(w io.Writer, prefix, origin string, value []byte, n int) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	val := strconv.Quote(string(value)) // makeValue's values are printable ASCII, as JSON wants them
	for i := 1; i <= n; i++ {
		v := strconv.Itoa(i)
		fmt.Fprintf(bw, `{"key":"%s%08d","value":%s,"version":%s,"origin":"%s","vv":{"%s":%s},"deleted":false}`+"\n",
			prefix, i, val, v, origin, origin, v)
	}
	return bw.Flush()
}
