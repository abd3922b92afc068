package scripting

import (
	"sync"
	"sync/atomic"
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
// every state is busy a call fails at once ("hook pool exhausted") rather
// than queue behind runaway scripts. States are created lazily, so an
// abandoned one is replaced by the next call that needs it.

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
	live   int // states created and not yet closed, abandoned ones included
	closed bool
}

func newPool(e *Engine, size int) *pool { return &pool{eng: e, size: size} }

// get returns an idle state, creates one if the pool has room, or fails.
func (p *pool) get() (*state, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if n := len(p.idle); n > 0 {
		s := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return s, nil
	}
	if p.live >= p.size {
		p.mu.Unlock()
		return nil, ErrPoolExhausted
	}
	p.live++
	p.mu.Unlock()

	s := &state{sb: newSandbox(p.eng), in: make(chan *request), out: make(chan response, 1)}
	go s.loop(p)
	return s, nil
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
}

// gone records that an abandoned state's goroutine has ended.
func (p *pool) gone() {
	p.mu.Lock()
	p.live--
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
