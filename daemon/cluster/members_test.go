package cluster

import (
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
