package natsbridge_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloudknowledge/ck/daemon/natsbridge"
)

func TestParseURLs(t *testing.T) {
	got, err := natsbridge.ParseURLs(" nats://127.0.0.1:4222, tls://nats.example.com:4443 ,localhost:4222")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"nats://127.0.0.1:4222", "tls://nats.example.com:4443", "nats://localhost:4222"}
	if len(got) != len(want) {
		t.Fatalf("ParseURLs = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("URL %d = %q, want %q", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"", " , ", "http://x:1", "nats://:4222", "nats://h:port"} {
		if _, err := natsbridge.ParseURLs(bad); err == nil {
			t.Errorf("ParseURLs(%q) accepted", bad)
		}
	}
	for u, loop := range map[string]bool{"nats://127.0.0.1:4222": true, "nats://localhost": true, "127.1.2.3:4222": true,
		"nats://10.0.0.1:4222": false, "tls://nats.example.com": false} {
		if got := natsbridge.LoopbackURL(u); got != loop {
			t.Errorf("LoopbackURL(%q) = %v", u, got)
		}
	}
	if !natsbridge.TLSURL("tls://h:1") || !natsbridge.TLSURL("wss://h") || natsbridge.TLSURL("nats://h") {
		t.Error("TLSURL")
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	st := openStore(t)
	dir := t.TempDir()
	badCreds := filepath.Join(dir, "bad.creds")
	os.WriteFile(badCreds, []byte("not creds"), 0o600)
	ok := natsbridge.Config{URLs: []string{"nats://127.0.0.1:4222"}, NodeName: "n"}
	for name, mut := range map[string]func(*natsbridge.Config){
		"no url":         func(c *natsbridge.Config) { c.URLs = nil },
		"bad url":        func(c *natsbridge.Config) { c.URLs = []string{"http://x"} },
		"bad publish":    func(c *natsbridge.Config) { c.Publish = "some" },
		"bad prefix":     func(c *natsbridge.Config) { c.Prefix = "a..b" },
		"wildcard":       func(c *natsbridge.Config) { c.Prefix = "ck.*" },
		"negative":       func(c *natsbridge.Config) { c.BufferBytes = -1 },
		"cert alone":     func(c *natsbridge.Config) { c.CertFile = "c.pem" },
		"missing ca":     func(c *natsbridge.Config) { c.CAFile = filepath.Join(dir, "none.pem") },
		"missing creds":  func(c *natsbridge.Config) { c.CredsFile = filepath.Join(dir, "none.creds") },
		"bad creds":      func(c *natsbridge.Config) { c.CredsFile = badCreds },
		"no writer":      func(c *natsbridge.Config) { c.Subscribe = true },
		"queue group ws": func(c *natsbridge.Config) { c.QueueGroup = "a b" },
	} {
		cfg := ok
		mut(&cfg)
		if _, err := natsbridge.New(cfg, st, nil, nil); !errors.Is(err, natsbridge.ErrBadConfig) {
			t.Errorf("%s: New: %v, want ErrBadConfig", name, err)
		}
	}
	b, err := natsbridge.New(ok, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := b.Config()
	if c.Name != "ckd-n" || c.Prefix != "ck" || c.Publish != "local" || c.QueueGroup != "ck" || c.BufferBytes != 8<<20 {
		t.Errorf("defaults %+v", c)
	}
}

func TestRunOnce(t *testing.T) {
	srv := startServer(t)
	st := openStore(t)
	b, _ := startBridge(t, natsbridge.Config{URLs: []string{srv.ClientURL()}}, st, nil)
	waitState(t, b, "connected")
	if err := b.Run(context.Background()); !errors.Is(err, natsbridge.ErrRunning) {
		t.Errorf("second Run: %v, want ErrRunning", err)
	}
}

func TestCollector(t *testing.T) {
	srv := startServer(t)
	st := openStore(t)
	b, _ := startBridge(t, natsbridge.Config{URLs: []string{srv.ClientURL()}}, st, nil)
	waitState(t, b, "connected")
	if _, err := st.Set(context.Background(), "k", []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	settled(t, b, 1)
	reg := prometheus.NewRegistry()
	reg.MustRegister(b.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, lp := range m.GetLabel() {
				name += "{" + lp.GetValue() + "}"
			}
			got[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	for name, want := range map[string]float64{
		"ck_nats_changes_total{published}": 1, "ck_nats_changes_total{selected}": 1,
		"ck_nats_changes_total{dropped}": 0, "ck_nats_connected{connected}": 1,
		"ck_nats_connects_total": 1, "ck_nats_unconfirmed_messages": 0, "ck_nats_inbound_total{received}": 0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
}
