package daemon

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/cloudknowledge/ck/rpc"
)

// TestRejoiningRefusesCalls: while a rejoin runs, every API call that
// would use the store or the node answers 503 syncing, before touching
// them (this daemon has neither).
func TestRejoiningRefusesCalls(t *testing.T) {
	d := &Daemon{}
	d.rejoining.Store(true)
	b := backend{d}
	ctx := context.Background()
	calls := map[string]func() error{
		"get":    func() error { _, _, err := b.Get(ctx, "k", rpc.GetOptions{}); return err },
		"put":    func() error { _, err := b.Put(ctx, "k", []byte("v"), rpc.WriteOptions{}); return err },
		"delete": func() error { _, err := b.Delete(ctx, "k", rpc.WriteOptions{}); return err },
		"list":   func() error { _, err := b.List(ctx, rpc.ListOptions{}); return err },
		"watch": func() error {
			return b.Watch(ctx, "", 0, true, func(rpc.Event) error { return nil })
		},
		"export": func() error { return b.Export(ctx, "", func(rpc.Record) error { return nil }) },
		"import": func() error {
			_, err := b.Import(ctx, false, func() (rpc.Record, int, error) { return rpc.Record{}, 0, io.EOF })
			return err
		},
		"members": func() error { _, err := b.Members(ctx); return err },
		"status":  func() error { _, err := b.Status(ctx); return err },
		"health":  func() error { return b.Health(ctx) },
		"reload":  func() error { return b.Reload(ctx) },
		"trust":   func() error { _, err := b.Trust(ctx, "00000000000000000000000000000001"); return err },
		"write":   func() error { return d.beginWrite() },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, rpc.ErrSyncing) {
			t.Errorf("%s while rejoining: %v, want %s", name, err, rpc.ErrSyncing.Code)
		}
	}
	// A second rejoin is refused while one runs.
	d.rejoinMu.Lock()
	defer d.rejoinMu.Unlock()
	if _, err := b.Rejoin(ctx); !errors.Is(err, rpc.ErrSyncing) {
		t.Errorf("a second rejoin: %v, want %s", err, rpc.ErrSyncing.Code)
	}
}
