package scripting

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// The pool of Lua states. Each state has a goroutine of its own that runs
// its calls, so that a caller can stop waiting the moment its deadline
// passes: the call is then abandoned — the caller gets its error at once,
// and the state, whatever its Lua code is still doing, is never used
// again; its goroutine closes it when the code notices the cancelled
// context (at the next VM instruction, or the next poll of a capped
// built-in) and only then frees its place in the pool.
//
// The pool's size bounds the live states, abandoned ones still running
// included, and so bounds how much runaway Lua can exist at once. When
// every state is busy a call waits briefly (poolWait) for one to come
// back — under ordinary load more clients than states is normal, and a
// state is busy for microseconds — and then fails ("hook pool exhausted")
// rather than queue behind runaway scripts. States are created lazily, so
// an abandoned one is replaced by the next call that needs it.

const (
	stateIdle int32 = iota
	stateBusy
	stateAbandoned
)

type state struct {
	sb     *sandbox
	status atomic.Int32
	in     chan *request
	out    chan response // buffered: the goroutine never waits on a caller
}

type pool struct {
	eng    *Engine
	size   int
	mu     sync.Mutex
	idle   []*state
	live   int           // states created and not yet closed, abandoned ones included
	freed  chan struct{} // closed and replaced whenever a state comes back or goes
	closed bool
}

// poolWait bounds how long a call waits for a busy pool (the call's own
// timeout bounds it too): far above what ordinary calls hold a state for,
// even on a loaded machine, yet short enough that runaway scripts fail the
// calls behind them quickly rather than queue them.
const poolWait = 100 * time.Millisecond

func newPool(e *Engine, size int) *pool {
	return &pool{eng: e, size: size, freed: make(chan struct{})}
}

// get returns an idle state, or creates one if the pool has room; when
// every state is busy it waits for one up to poolWait or timeout, whichever
// is shorter, or until ctx ends.
func (p *pool) get(ctx context.Context, timeout time.Duration) (*state, error) {
	var timer *time.Timer
	for {
		s, freed, err := p.tryGet()
		if s != nil || err != nil {
			return s, err
		}
		if timer == nil {
			timer = time.NewTimer(min(poolWait, timeout))
			defer timer.Stop()
		}
		select {
		case <-freed:
		case <-timer.C:
			return nil, ErrPoolExhausted
		case <-ctx.Done():
			return nil, ErrPoolExhausted
		}
	}
}

// tryGet returns a state, or the channel that says one came back.
func (p *pool) tryGet() (*state, <-chan struct{}, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, nil, ErrClosed
	}
	if n := len(p.idle); n > 0 {
		s := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return s, nil, nil
	}
	if p.live >= p.size {
		freed := p.freed
		p.mu.Unlock()
		return nil, freed, nil
	}
	p.live++
	p.mu.Unlock()

	s := &state{sb: newSandbox(p.eng), in: make(chan *request), out: make(chan response, 1)}
	go s.loop(p)
	return s, nil, nil
}

// signal wakes the calls waiting for a state. p.mu must be held.
func (p *pool) signal() {
	close(p.freed)
	p.freed = make(chan struct{})
}

// put returns a state whose call finished.
func (p *pool) put(s *state) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.live--
		close(s.in)
		return
	}
	p.idle = append(p.idle, s)
	p.signal()
}

// gone records that an abandoned state's goroutine has ended.
func (p *pool) gone() {
	p.mu.Lock()
	p.live--
	p.signal()
	p.mu.Unlock()
	p.eng.stats.abandonedRunning.Add(-1)
}

// busy is the number of states in use, abandoned ones still running included.
func (p *pool) busy() (busy, live int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live - len(p.idle), p.live
}

func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for _, s := range p.idle {
		close(s.in)
		p.live--
	}
	p.idle = nil
}

// loop runs the state's calls until the pool closes it or a call is
// abandoned.
func (s *state) loop(p *pool) {
	for req := range s.in {
		resp := s.sb.run(req)
		if !s.status.CompareAndSwap(stateBusy, stateIdle) {
			// Abandoned: the caller has left. Never reuse this state; free
			// its place in the pool only once it is closed.
			s.sb.L.Close()
			p.gone()
			return
		}
		s.out <- resp
	}
	s.sb.L.Close()
}
