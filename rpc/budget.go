package rpc

import (
	"context"
	"sync"
	"time"
)

// DefaultMaxRequestBytes is the budget for request bodies in flight when
// ServerOptions.MaxRequestBytes is 0: eight 4 MiB values at once.
const DefaultMaxRequestBytes = 32 << 20

// budget counts the bytes of request bodies the server holds in memory,
// across all connections (docs/ARCHITECTURE.md, Bounded resources). A body
// is read only into room reserved here first, so that many large requests
// at once cost at most the budget, not their sum: a request that finds no
// room is answered 503 busy instead of growing the heap.
type budget struct {
	mu      sync.Mutex
	size    int64
	used    int64
	waiters int           // in take, waiting for room
	freed   chan struct{} // closed and replaced on a release while someone waits: wakes them
}

func newBudget(size int64) *budget {
	return &budget{size: size, freed: make(chan struct{})}
}

// tryTake reserves n bytes if there is room, and reports whether it did.
func (b *budget) tryTake(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > b.size-b.used {
		return false
	}
	b.used += n
	return true
}

// take reserves n bytes, waiting at most wait for room to be released.
// It returns false when there is still no room then, or ctx ended.
func (b *budget) take(ctx context.Context, n int64, wait time.Duration) bool {
	if b.tryTake(n) {
		return true
	}
	if n > b.size || wait <= 0 {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		b.mu.Lock()
		if n <= b.size-b.used {
			b.used += n
			b.mu.Unlock()
			return true
		}
		freed := b.freed
		b.waiters++
		b.mu.Unlock()
		var ok bool
		select {
		case <-freed:
			ok = true
		case <-t.C:
		case <-ctx.Done():
		}
		b.mu.Lock()
		b.waiters--
		b.mu.Unlock()
		if !ok {
			return false
		}
	}
}

// release gives back n bytes taken before.
func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.used < 0 {
		panic("rpc: request budget released more than was taken")
	}
	if b.waiters > 0 { // a new channel per release only when someone waits
		close(b.freed)
		b.freed = make(chan struct{})
	}
}
