package rpc

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"
)

// TestBudgetTakeWaits: a take that finds no room waits for a release (the
// wake-up channel is replaced only while someone waits), and gives up at
// its deadline or when its context ends; a release with nobody waiting
// wakes nobody and needs no channel.
func TestBudgetTakeWaits(t *testing.T) {
	t.Run("woken by a release", func(t *testing.T) {
		b := newBudget(100)
		if !b.tryTake(80) {
			t.Fatal("tryTake(80) of 100 failed")
		}
		got := make(chan bool, 1)
		go func() { got <- b.take(context.Background(), 50, time.Minute) }()
		poll.Until(t, 30*time.Second, time.Millisecond, func() error {
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.waiters != 1 {
				return fmt.Errorf("%d waiting", b.waiters)
			}
			return nil
		})
		b.release(40)
		select {
		case ok := <-got:
			if !ok {
				t.Fatal("take gave up though room was released")
			}
		case <-time.After(30 * time.Second):
			t.Fatal("take not woken by the release")
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.used != 90 || b.waiters != 0 {
			t.Fatalf("used %d, waiters %d: want 90 and 0", b.used, b.waiters)
		}
	})
	t.Run("a release with nobody waiting keeps the channel", func(t *testing.T) {
		b := newBudget(100)
		freed := b.freed
		b.tryTake(10)
		b.release(10)
		if b.freed != freed {
			t.Fatal("the wake-up channel was replaced with nobody waiting")
		}
	})
	for _, tc := range []struct {
		name string
		wait time.Duration
		ctx  func() context.Context
	}{
		{"deadline", 20 * time.Millisecond, context.Background},
		{"context ended", time.Minute, func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}},
	} {
		t.Run("gives up: "+tc.name, func(t *testing.T) {
			b := newBudget(100)
			b.tryTake(100)
			if b.take(tc.ctx(), 1, tc.wait) {
				t.Fatal("take succeeded with the budget full")
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.waiters != 0 || b.used != 100 {
				t.Fatalf("waiters %d, used %d after giving up: want 0 and 100", b.waiters, b.used)
			}
		})
	}
}
