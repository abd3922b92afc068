package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/rpctest"
	"github.com/cloudknowledge/ck/rpc"
)

const peer = "fedcba9876543210fedcba9876543210"

func TestMembersTrust(t *testing.T) {
	s := daemon(t)
	s.Backend.Lock()
	s.Backend.MembersList = []rpc.Member{
		{ID: rpctest.SelfID, Name: "a", State: "alive", Self: true},
		{ID: peer, Name: "b", Addr: "10.0.0.2:7946", State: "quarantined"},
	}
	s.Backend.Unlock()
	r := ck(t, s, "members")
	if r.code != 0 || !strings.Contains(r.stdout, "quarantined") {
		t.Errorf("members: %+v", r)
	}
	r = ck(t, s, "members", "trust", peer)
	if r.code != 0 || !strings.Contains(r.stdout, peer) || !strings.Contains(r.stdout, "alive") ||
		!strings.Contains(r.stderr, "trusted b") {
		t.Errorf("members trust: %+v", r)
	}
	// Trusting again: the peer is no longer quarantined.
	r = ck(t, s, "members", "trust", peer)
	if r.code != 1 || !strings.Contains(r.stderr, "not quarantined") {
		t.Errorf("members trust again: %+v", r)
	}
	if r := ck(t, s, "members", "trust", "00000000000000000000000000000001"); r.code != 3 {
		t.Errorf("members trust unknown: %+v", r)
	}
	for _, args := range [][]string{{"members", "trust"}, {"members", "forget", peer}, {"members", "trust", "a", "b"}} {
		if r := ck(t, s, args...); r.code != 2 {
			t.Errorf("%v: %+v", args, r)
		}
	}
	s.Backend.Lock()
	s.Backend.MembersList[1].State = "quarantined"
	s.Backend.Unlock()
	r = ck(t, s, "members", "trust", peer, "-o", "json")
	var m rpc.Member
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m.ID != peer || m.State != "alive" {
		t.Errorf("members trust -o json: %+v %v", r, err)
	}
}

func TestRejoin(t *testing.T) {
	s := daemon(t)
	s.Backend.Lock()
	s.Backend.RejoinResult = rpc.RejoinResult{StaleDir: "/d/stale-20250101T000000Z", Reapplied: 2, Skipped: 1,
		OldID: "old", NewID: "new", Peer: "alpha", Received: 40, LastInSync: "2025-01-01T00:00:00Z"}
	s.Backend.Unlock()
	r := ck(t, s, "rejoin")
	for _, want := range []string{"rejoined as new (was old)\n", "old data kept in /d/stale-20250101T000000Z\n",
		"pulled 40 records from alpha\n", "re-applied 2 of this node's writes", "1 already held"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("rejoin: stdout lacks %q: %+v", want, r)
		}
	}
	if r.code != 0 || r.stderr != "" {
		t.Errorf("rejoin answered at once: want no note on stderr: %+v", r)
	}
	r = ck(t, s, "rejoin", "-o", "json")
	var res rpc.RejoinResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res != s.Backend.RejoinResult || r.stderr != "" {
		t.Errorf("rejoin -o json: %+v %v", r, err)
	}
	s.Backend.Lock()
	s.Backend.RejoinErr = rpc.Errorf(rpc.ErrBadRequest, "no peer is quarantined: there is no long separation to settle")
	s.Backend.Unlock()
	// Refused: ckctl never said it was moving data aside.
	r = ck(t, s, "rejoin")
	if r.code != 1 || r.stderr != "ckctl: no peer is quarantined: there is no long separation to settle\n" {
		t.Errorf("rejoin refused: %+v", r)
	}
}

// A rejoin under way for a while is announced on stderr (text mode only).
func TestRejoinNote(t *testing.T) {
	b := &slowRejoin{Backend: rpctest.NewBackend(), delay: 300 * time.Millisecond}
	b.RejoinResult = rpc.RejoinResult{NewID: "new", OldID: "old"}
	s := rpctest.Serve(t, b, rpc.ServerOptions{})
	old := rejoinNoteAfter
	rejoinNoteAfter = 10 * time.Millisecond
	t.Cleanup(func() { rejoinNoteAfter = old })
	r := ckctlIn(t, "", "--socket", s.Socket, "rejoin")
	if r.code != 0 || !strings.HasPrefix(r.stderr, "ckctl: rejoining: this node's data is moved aside") {
		t.Errorf("rejoin: %+v", r)
	}
	if r := ckctlIn(t, "", "--socket", s.Socket, "rejoin", "-o", "json"); r.code != 0 || r.stderr != "" {
		t.Errorf("rejoin -o json: %+v", r)
	}
}

// slowRejoin is a daemon whose rejoins take a while.
type slowRejoin struct {
	*rpctest.Backend
	delay time.Duration
}

func (b *slowRejoin) Rejoin(ctx context.Context) (rpc.RejoinResult, error) {
	time.Sleep(b.delay)
	return b.Backend.Rejoin(ctx)
}
