package scripting

import (
	"container/list"
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
// included, and so bounds how much runaway Lua can exist at once.
//
// When every state is busy a call queues, first come first served: a
// state that comes back is handed straight to the oldest waiter (never
// put up for grabs), and the place of an abandoned state that ends goes to
// the oldest waiter too, which builds a fresh state. Under ordinary load
// more clients than states is normal and a state is busy for
// microseconds, so the queue drains at the pool's pace and no call waits
// long. A waiter gives up ("hook pool exhausted") only when its own hook's
// timeout passes first — that is, when the states ahead of it are held by
// runaway scripts — or when its caller's context ends. An earlier pool
// woke every waiter at once and let them race for the state, with a fixed
// 100 ms budget; unlucky callers lost every race and fast hooks failed
// writes under 64 clients (docs/ARCHITECTURE.md, "Lua hooks").

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
	eng     *Engine
	size    int
	mu      sync.Mutex
	idle    []*state
	live    int       // states created and not yet closed, abandoned ones included
	waiters list.List // of *waiter, oldest first; non-empty only while no state is idle and live == size
	closed  bool
}

// A waiter is a call queued for a state. The pool hands it exactly one
// grant, under p.mu, and removes it from the queue as it does.
type waiter struct {
	grant chan grant // buffered (1): the pool never blocks handing it over
	elem  *list.Element
}

// grant is what a waiter is handed: a state, a place to build one in
// (s == nil, err == nil), or the pool's closing.
type grant struct {
	s   *state
	err error
}

func newPool(e *Engine, size int) *pool {
	return &pool{eng: e, size: size}
}

// get returns a state: an idle one, a new one if the pool has room, or the
// next one to come back, waiting behind the calls that asked before, for at
// most timeout or until ctx ends.
func (p *pool) get(ctx context.Context, timeout time.Duration) (*state, error) {
	s, w, err := p.tryGet()
	if s != nil || err != nil {
		return s, err
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case g := <-w.grant:
		return p.take(g)
	case <-timer.C:
	case <-ctx.Done():
	}
	if g, ok := p.leave(w); ok {
		if ctx.Err() == nil {
			// Handed a state as the timer fired: its turn came in time.
			return p.take(g)
		}
		p.pass(g) // the caller has gone: do not spend a state on it
	}
	return nil, ErrPoolExhausted
}

// tryGet returns a state at once, or queues the caller and returns its
// waiter.
func (p *pool) tryGet() (*state, *waiter, error) {
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
		w := &waiter{grant: make(chan grant, 1)}
		w.elem = p.waiters.PushBack(w)
		p.mu.Unlock()
		return nil, w, nil
	}
	p.live++
	p.mu.Unlock()
	return p.newState(), nil, nil
}

// leave takes a waiter whose wait ended out of the queue; if the pool had
// already handed it a grant, it returns that instead.
func (p *pool) leave(w *waiter) (grant, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.elem != nil {
		p.waiters.Remove(w.elem)
		w.elem = nil
		return grant{}, false
	}
	return <-w.grant, true
}

// take turns a grant into a state, building one when the grant is a place.
func (p *pool) take(g grant) (*state, error) {
	if g.err != nil {
		return nil, g.err
	}
	if g.s == nil {
		return p.newState(), nil
	}
	return g.s, nil
}

// pass hands a grant its waiter will not use to the next waiter.
func (p *pool) pass(g grant) {
	switch {
	case g.err != nil:
	case g.s != nil:
		p.put(g.s)
	default:
		p.mu.Lock()
		if p.closed || !p.handOff(grant{}) {
			p.live--
		}
		p.mu.Unlock()
	}
}

func (p *pool) newState() *state {
	s := &state{sb: newSandbox(p.eng), in: make(chan *request), out: make(chan response, 1)}
	go s.loop(p)
	return s
}

// handOff gives g to the oldest waiter, if there is one. p.mu must be held.
func (p *pool) handOff(g grant) bool {
	front := p.waiters.Front()
	if front == nil {
		return false
	}
	w := p.waiters.Remove(front).(*waiter)
	w.elem = nil
	w.grant <- g
	return true
}

// put returns a state whose call finished: to the oldest waiter, or to
// the idle states.
func (p *pool) put(s *state) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.live--
		close(s.in)
		return
	}
	if !p.handOff(grant{s: s}) {
		p.idle = append(p.idle, s)
	}
}

// gone records that an abandoned state's goroutine has ended: its place
// goes to the oldest waiter, which builds a fresh state in it (pass).
func (p *pool) gone() {
	p.pass(grant{})
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
	for p.handOff(grant{err: ErrClosed}) {
	}
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
