package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cloudknowledge/ck/rpc"
)

// One node's set, get and compare-and-set are linearizable
// (docs/ARCHITECTURE.md, "The request path"): concurrent clients of a real
// daemon's API, on a few keys, record when each call started and ended
// and what it answered, and porcupine checks that some order of the calls
// within those intervals explains every answer under a key-value model
// with versions. Plain gets and sets take the API's fast path, sets with
// if_version net/http's: the check covers both and their interleaving.
func TestLinearizable(t *testing.T) {
	_, c := runTestDaemon(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	const (
		clients  = 8
		keys     = 3
		duration = 2 * time.Second
	)
	start := time.Now()
	now := func() int64 { return time.Since(start).Nanoseconds() }
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		wg      sync.WaitGroup
	)
	for id := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(id)))
			cl := rpc.NewClient(c.Socket()) // a client, so connections, of its own
			defer cl.Close()
			seen := map[string]uint64{} // the last version this client saw of each key
			for n := 0; time.Since(start) < duration; n++ {
				in := linInput{key: fmt.Sprintf("lin/%d", rng.IntN(keys)), value: fmt.Sprintf("c%d-%d", id, n)}
				switch p := rng.IntN(10); {
				case p < 4:
					in.op = "get"
				case p < 7:
					in.op = "set"
				default:
					in.op, in.ifVersion = "cas", seen[in.key]
				}
				call := now()
				out, err := linCall(cl, in)
				ret := now()
				if err != nil {
					t.Errorf("client %d: %s %s: %v", id, in.op, in.key, err)
					return
				}
				if out.ok {
					seen[in.key] = out.version
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	res, info := porcupine.CheckOperationsVerbose(linModel, history, time.Minute)
	t.Logf("%d operations checked: %s", len(history), res)
	if res != porcupine.Ok {
		file := filepath.Join(t.TempDir(), "history.html")
		if f, err := os.Create(file); err == nil {
			porcupine.Visualize(linModel, info, f)
			f.Close()
		}
		t.Fatalf("the history is not linearizable (%s; seed %d)", res, seed)
	}
}

// linInput is a call: a get, a set, or a set if the key is at ifVersion
// (0: absent).
type linInput struct {
	op, key, value string
	ifVersion      uint64
}

// linOutput is an answer: ok is a get that found the key or a write that
// was stored; value and version are what the get read or the write made.
type linOutput struct {
	ok      bool
	value   string
	version uint64
}

// linState is one key as the model holds it.
type linState struct {
	present bool
	value   string
	version uint64
}

func linCall(c *rpc.Client, in linInput) (linOutput, error) {
	ctx := context.Background()
	switch in.op {
	case "get":
		v, version, _, err := c.GetRaw(ctx, in.key, false)
		if errors.Is(err, rpc.ErrNotFound) {
			return linOutput{}, nil
		}
		return linOutput{ok: true, value: string(v), version: version}, err
	case "set":
		rec, err := c.Put(ctx, in.key, []byte(in.value), rpc.WriteOptions{})
		return linOutput{ok: true, value: in.value, version: rec.Version}, err
	}
	rec, err := c.Put(ctx, in.key, []byte(in.value), rpc.WriteOptions{IfVersion: &in.ifVersion})
	if errors.Is(err, rpc.ErrVersionMismatch) {
		return linOutput{}, nil
	}
	return linOutput{ok: true, value: in.value, version: rec.Version}, err
}

// linModel is a key-value store with versions, one key per partition: a
// write makes a version above the key's last (the node's clock is shared
// by all keys, so only the order is known), a conditional write succeeds
// exactly when the key is at the version it names.
var linModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(linInput).key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return linState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(linState), input.(linInput), output.(linOutput)
		switch in.op {
		case "get":
			if !out.ok {
				return !st.present, st
			}
			return st.present && out.value == st.value && out.version == st.version, st
		case "set":
			return out.version > st.version, linState{present: true, value: in.value, version: out.version}
		}
		cur := uint64(0)
		if st.present {
			cur = st.version
		}
		if !out.ok {
			return cur != in.ifVersion, st
		}
		return cur == in.ifVersion && out.version > st.version, linState{present: true, value: in.value, version: out.version}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		return fmt.Sprintf("%s(%s %q if %d) -> %v %q v%d", in.op, in.key, in.value, in.ifVersion, out.ok, out.value, out.version)
	},
}
