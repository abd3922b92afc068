package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/store"
)

// An import (a restore) applies records in batches through
// store.ApplyBatch, as a bootstrap does: one commit per batch, not per
// record. A batch is at most importBatch records or importBatchBytes of
// values (and one record more); each is validated whole before any of it
// is applied, so a refused line stops the import with exactly the lines
// before it imported (docs/ARCHITECTURE.md, "Import").
const (
	importBatch      = 512
	importBatchBytes = 4 << 20
)

// importItem is a validated record and its line.
type importItem struct {
	rec  store.Record
	line int
}

func (b backend) Import(ctx context.Context, asNew bool, next func() (rpc.Record, int, error)) (rpc.ImportResult, error) {
	inst, release, err := b.d.enter()
	if err != nil {
		return rpc.ImportResult{}, err
	}
	defer release()
	if asNew {
		return b.importAsNew(ctx, inst, next)
	}
	return b.importBatches(ctx, inst, next)
}

// importBatches reads and validates the next batch while the one before
// it is applied (one applier goroutine: the commit waits on the disk,
// the reading on the client and the JSON), so a restore moves at the
// rate of the slower of the two.
func (b backend) importBatches(ctx context.Context, inst *instance, next func() (rpc.Record, int, error)) (rpc.ImportResult, error) {
	var (
		res    rpc.ImportResult // the applier's until done
		failed atomic.Bool
		work   = make(chan []importItem) // unbuffered: a batch handed over is the applier's alone
		done   = make(chan error, 1)
	)
	go func() {
		var first error
		for batch := range work {
			if first == nil {
				if first = b.applyBatch(ctx, inst, batch, &res); first != nil {
					failed.Store(true)
				}
			}
		}
		done <- first
	}()
	var bufs [2][]importItem
	var line int
	var stop error
	for i := 0; stop == nil && !failed.Load(); i++ {
		var batch []importItem
		batch, line, stop = b.readBatch(inst, bufs[i%2][:0], next)
		bufs[i%2] = batch
		work <- batch // the applier is done with the other buffer when it takes this one
	}
	close(work)
	if err := <-done; err != nil {
		return res, err
	}
	if stop != nil && !errors.Is(stop, io.EOF) {
		res.Line = line
		return res, stop
	}
	return res, nil
}

// readBatch reads and validates records into batch until it is full, the
// body ends or a line is refused: then stop is that error (io.EOF at the
// end) and line the line it is about.
func (b backend) readBatch(inst *instance, batch []importItem, next func() (rpc.Record, int, error)) (_ []importItem, line int, stop error) {
	size := 0
	for len(batch) < importBatch && size < importBatchBytes {
		r, line, err := next()
		if err != nil {
			return batch, line, err
		}
		rec, err := fromRPC(r)
		if err != nil {
			return batch, line, rpc.Errorf(rpc.ErrBadRequest, "line %d (key %q): %v", line, r.Key, err)
		}
		if err := inst.store.ValidateRecord(&rec); err != nil {
			return batch, line, fmt.Errorf("line %d: %w", line, apiError(err))
		}
		inst.store.Observe(rec.Lamport) // as Apply does, record by record
		batch = append(batch, importItem{rec: rec, line: line})
		size += len(rec.Value)
	}
	return batch, 0, nil
}

// applyBatch applies a validated batch and counts it into res. A record
// that fails (a write that failed: a full disk, a stop) ends the import:
// res then counts every record that was stored, and Line is the first
// that was not.
func (b backend) applyBatch(ctx context.Context, inst *instance, batch []importItem, res *rpc.ImportResult) error {
	if len(batch) == 0 {
		return nil
	}
	if err := b.d.beginWrite(); err != nil {
		res.Line = batch[0].line
		return err
	}
	defer b.d.writes.Done()
	recs := make([]store.Record, len(batch))
	for i := range batch {
		recs[i] = batch[i].rec
	}
	out, errs, _ := inst.store.ApplyBatch(ctx, recs)
	var first error
	for i, err := range errs {
		if err != nil {
			if first == nil {
				first = fmt.Errorf("line %d: %w", batch[i].line, apiError(err))
				res.Line = batch[i].line
			}
			continue
		}
		res.Records++
		if o := out[i].Outcome; o == store.Applied || o == store.Resolved {
			res.Applied++
		}
	}
	return first
}

// importAsNew writes each record as a new local write, through on_set,
// one at a time (each its own commit, as a set's): values, not versions.
func (b backend) importAsNew(ctx context.Context, inst *instance, next func() (rpc.Record, int, error)) (rpc.ImportResult, error) {
	var res rpc.ImportResult
	for {
		r, line, err := next()
		if errors.Is(err, io.EOF) {
			return res, nil
		}
		if err == nil {
			_, err = b.write(ctx, inst, r.Key, r.Value, r.Deleted, rpc.WriteOptions{TTL: asNewTTL(r)})
			if err != nil {
				err = fmt.Errorf("line %d (key %q): %w", line, r.Key, err)
			}
		}
		if err != nil {
			res.Line = line
			return res, err
		}
		res.Records++
		res.Applied++
	}
}

// asNewTTL is the TTL a record imported as a new write gets: what the
// export said was left of its own (its whole TTL if it did not say), at
// least store.MinTTL.
func asNewTTL(r rpc.Record) rpc.Duration {
	left := r.TTLRemainingMS
	if left == 0 {
		left = r.TTLMS
	}
	if left <= 0 || r.Deleted {
		return 0
	}
	return rpc.Duration(max(time.Duration(left)*time.Millisecond, store.MinTTL))
}
