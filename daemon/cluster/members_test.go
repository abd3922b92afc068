package cluster

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// A BYE is news once: a leaving node's BYE can arrive twice (the group and
// unicast), and "member left" is logged once, with the name.
func TestMembersByeOnce(t *testing.T) {
	ms := newMembers(time.Second, 30*time.Second)
	id := store.NodeID{1}
	now := time.Now()
	addr := netip.MustParseAddrPort("127.0.0.1:1")
	if _, _, ok := ms.hello(&wire.Hello{ID: id, Name: "beta", Epoch: 5}, addr, now); !ok {
		t.Fatal("hello refused")
	}
	m, news := ms.bye(id, 5, now)
	if !news || m.Name != "beta" {
		t.Fatalf("first bye: %+v, news %v", m, news)
	}
	if _, news := ms.bye(id, 5, now); news {
		t.Error("a second BYE of the same boot is news")
	}
	if _, news := ms.bye(id, 4, now); news {
		t.Error("a BYE of an older boot is news")
	}
}

// A member heard again after dead_after is a return even though heard,
// which runs first for every message, has refreshed its last-heard time.
func TestMembersReturnFromGone(t *testing.T) {
	ms := newMembers(time.Second, 30*time.Second)
	id := store.NodeID{1}
	t0 := time.Now()
	addr := netip.MustParseAddrPort("127.0.0.1:1")
	h := &wire.Hello{ID: id, Name: "beta", Epoch: 5}
	if _, isNew, _ := ms.hello(h, addr, t0); !isNew {
		t.Fatal("first hello is not new")
	}
	if _, isNew, _ := ms.hello(h, addr, t0.Add(time.Second)); isNew {
		t.Fatal("a HELLO a heartbeat later is a return")
	}
	back := t0.Add(time.Minute)
	if !ms.heard(id, back) {
		t.Error("heard: a member silent for a minute is not back")
	}
	if _, isNew, _ := ms.hello(h, addr, back); !isNew {
		t.Error("a HELLO after dead_after is not a return once heard ran first")
	}
	if _, isNew, _ := ms.hello(h, addr, back.Add(time.Second)); isNew {
		t.Error("the return is reported twice")
	}
}

// TestStretch: the heartbeat stays as configured up to helloBudget
// members and then grows with them, so that the HELLOs each node receives
// a second stay near helloBudget however many nodes there are (and within
// issue 16's 20 at 100 nodes).
func TestStretch(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{
		{1, time.Second},
		{3, time.Second},
		{helloBudget, time.Second},
		{40, 2500 * time.Millisecond},
		{100, 6250 * time.Millisecond},
		{100000, maxStretch * time.Second},
	} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			got := stretch(time.Second, tc.n)
			if got != tc.want {
				t.Errorf("stretch(1s, %d) = %v, want %v", tc.n, got, tc.want)
			}
			if rate := float64(tc.n-1) / got.Seconds(); tc.n <= 100 && rate > 20 {
				t.Errorf("%d nodes: %.1f HELLOs received a second", tc.n, rate)
			}
		})
	}
}

// TestMembersStretchedHeartbeat: a member is suspect after 3 of its own
// heartbeats, as its HELLO announced them, and gone after dead_after
// counted in them; one that announces none (an older node) is judged by
// ours, and keeps this node's heartbeat unstretched.
func TestMembersStretchedHeartbeat(t *testing.T) {
	t0 := time.Now()
	addr := netip.MustParseAddrPort("127.0.0.1:1")
	fill := func(ms *members, n int, interval time.Duration) {
		for i := range n {
			h := &wire.Hello{ID: store.NodeID{byte(i + 1)}, Name: fmt.Sprint("n", i), Epoch: 5, Interval: interval.Milliseconds()}
			if _, _, ok := ms.hello(h, addr, t0); !ok {
				t.Fatal("hello refused")
			}
		}
	}
	ms := newMembers(time.Second, 30*time.Second)
	fill(ms, 99, 6250*time.Millisecond)
	if got := ms.interval(t0); got != 6250*time.Millisecond {
		t.Errorf("100 members announcing intervals: ours %v, want 6.25s", got)
	}
	id := store.NodeID{1}
	for _, tc := range []struct {
		after time.Duration
		want  State
	}{
		{3 * time.Second, Alive},
		{18 * time.Second, Alive},
		{19 * time.Second, Suspect},
		{180 * time.Second, Suspect},
		{188 * time.Second, Gone},
	} {
		if m := find(ms.list(t0.Add(tc.after)), id); m.State != tc.want {
			t.Errorf("%v after its last HELLO (heartbeat 6.25s): %s, want %s", tc.after, m.State, tc.want)
		}
	}
	if over := ms.overdue([]Member{{ID: id}}, t0.Add(12*time.Second)); over {
		t.Error("overdue after 12 s, less than 2 of its heartbeats")
	}
	if over := ms.overdue([]Member{{ID: id}}, t0.Add(13*time.Second)); !over {
		t.Error("not overdue after 13 s, more than 2 of its heartbeats")
	}

	old := newMembers(time.Second, 30*time.Second)
	fill(old, 99, 0)
	if got := old.interval(t0); got != time.Second {
		t.Errorf("members announcing no interval: ours %v, want the configured 1s", got)
	}
	if m := find(old.list(t0.Add(4*time.Second)), id); m.State != Suspect {
		t.Errorf("a member announcing no interval, unheard 4 s: %s, want suspect", m.State)
	}
	hostile := newMembers(time.Second, 30*time.Second)
	fill(hostile, 1, time.Hour)
	if m := find(hostile.list(t0.Add(3*maxStretch*time.Second)), id); m.State != Suspect {
		t.Errorf("a member announcing an hour: %s after 3×%d of our heartbeats, want suspect", m.State, maxStretch)
	}
}

func find(list []Member, id store.NodeID) Member {
	for _, m := range list {
		if m.ID == id {
			return m
		}
	}
	return Member{}
}
