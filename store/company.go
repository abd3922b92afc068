package store

import (
	"sync/atomic"
	"time"
)

// Batches under load. With many writers and nothing to hold the committer,
// they split into two groups that take turns: while one group's batch is
// in the log write the other queues, and the moment the write ends the
// queued group's batch starts, before the first group is back. 16 writers
// gave batches of 15 and 1, or 10 and 6, in turn: two log writes for 16
// writes, where one would do if the batch waited for the group coming
// back. So a batch smaller than the recent ones waits for that company,
// at most as long as a log write takes (what the split costs), and a lone
// writer — recent batches of one — never waits.
//
// "The recent ones" are the last two batches. With four, 16 writers on
// one node made fuller batches (a set ~10 % less CPU), but replicated
// writers come back at different times, each after its ACK, and the
// committer waited out its timer for them: fewer puts/s on three nodes,
// and one node's sets no faster (docs/ARCHITECTURE.md, "Waiting for
// company").
type company struct {
	recent [companyWindow]atomic.Int32 // the sizes of the last batches, newest first
	took   atomic.Int64                // how long the last batch's commit took, ns
	waits  atomic.Uint64               // batches that waited for company
}

// companyWindow is how many recent batches set the size a batch waits for.
const companyWindow = 2

// maxLinger bounds the wait for company whatever a commit took.
const maxLinger = time.Millisecond

// expect is how many requests a batch should hold to end the split: the
// largest of the recent batches.
func (c *company) expect() int {
	m := int32(0)
	for i := range c.recent {
		m = max(m, c.recent[i].Load())
	}
	return int(m)
}

// lone reports whether the last batch was one request (or none yet): a
// writer that finds nothing committing may commit on its own goroutine.
// Otherwise it leaves the batch to the committer, which waits for company.
func (c *company) lone() bool { return c.recent[0].Load() <= 1 }

// committed records a batch of n requests whose commit took took.
func (c *company) committed(n int, took time.Duration) {
	for i := len(c.recent) - 1; i > 0; i-- { // only the committing goroutine stores
		c.recent[i].Store(c.recent[i-1].Load())
	}
	c.recent[0].Store(int32(min(n, maxBatch)))
	c.took.Store(int64(took))
}

// await adds to batch the requests that arrive from reqs until it holds
// want, or for as long as the last commit took (at most maxLinger).
func (c *company) await(reqs <-chan *request, batch []*request, want int) []*request {
	wait := min(time.Duration(c.took.Load()), maxLinger)
	if len(batch) >= want || wait <= 0 {
		return batch
	}
	c.waits.Add(1)
	t := time.NewTimer(wait)
	defer t.Stop()
	size := 0
	for _, r := range batch {
		size += r.size()
	}
	for len(batch) < want && size < maxBatchBytes {
		select {
		case r := <-reqs:
			batch = append(batch, r)
			size += r.size()
		case <-t.C:
			return batch
		}
	}
	return batch
}
