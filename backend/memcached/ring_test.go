package memcached

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"
)

func servers(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = "10.0.0." + strconv.Itoa(i+1) + ":11211"
	}
	return s
}

func mustRing(t testing.TB, addrs ...string) *Ring {
	t.Helper()
	r, err := NewRing(addrs...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func pick(t testing.TB, s memcache.ServerSelector, key string) string {
	t.Helper()
	a, err := s.PickServer(key)
	if err != nil {
		t.Fatal(err)
	}
	return a.String()
}

const ringKeys = 10000

func TestRingDistribution(t *testing.T) {
	for _, n := range []int{2, 4, 5, 8} {
		r := mustRing(t, servers(n)...)
		count := map[string]int{}
		for i := range ringKeys {
			count[pick(t, r, "key:"+strconv.Itoa(i))]++
		}
		if len(count) != n {
			t.Fatalf("%d servers: keys went to %d of them", n, len(count))
		}
		ideal := float64(ringKeys) / float64(n)
		for s, c := range count {
			if f := float64(c) / ideal; f < 0.7 || f > 1.3 {
				t.Errorf("%d servers: %s got %d keys, %.2f of an even share", n, s, c, f)
			}
		}
	}
}

func TestRingMovesAboutOneNth(t *testing.T) {
	before := mustRing(t, servers(4)...)
	after := mustRing(t, servers(5)...)
	moved, movedToOld := 0, 0
	for i := range ringKeys {
		k := "key:" + strconv.Itoa(i)
		a, b := pick(t, before, k), pick(t, after, k)
		if a != b {
			moved++
			if b != servers(5)[4] {
				movedToOld++
			}
		}
	}
	frac := float64(moved) / ringKeys
	t.Logf("4 -> 5 servers: %.1f%% of %d keys moved (ideal 20%%)", 100*frac, ringKeys)
	if frac < 0.1 || frac > 0.3 {
		t.Fatalf("%.3f of the keys moved; want within [0.1, 0.3]", frac)
	}
	if movedToOld != 0 {
		t.Fatalf("%d keys moved between old servers; want every moved key on the new one", movedToOld)
	}

	// gomemcache's ServerList, for comparison, moves most keys.
	var sl4, sl5 memcache.ServerList
	if err := sl4.SetServers(servers(4)...); err != nil {
		t.Fatal(err)
	}
	if err := sl5.SetServers(servers(5)...); err != nil {
		t.Fatal(err)
	}
	slMoved := 0
	for i := range ringKeys {
		k := "key:" + strconv.Itoa(i)
		if pick(t, &sl4, k) != pick(t, &sl5, k) {
			slMoved++
		}
	}
	t.Logf("gomemcache ServerList: %.1f%% moved", 100*float64(slMoved)/ringKeys)

	// Removing a server moves only its own keys.
	less := mustRing(t, servers(3)...)
	for i := range ringKeys {
		k := "key:" + strconv.Itoa(i)
		if a := pick(t, before, k); a != servers(4)[3] && a != pick(t, less, k) {
			t.Fatalf("key %q moved from %s although its server stayed", k, a)
		}
	}
}

func TestRingOrderIndependent(t *testing.T) {
	s := servers(4)
	a := mustRing(t, s...)
	b := mustRing(t, s[3], s[1], s[0], s[2])
	for i := range 2000 {
		k := fmt.Sprintf("k%d", i)
		if pick(t, a, k) != pick(t, b, k) {
			t.Fatalf("key %q placed differently when the servers are listed in another order", k)
		}
	}
}

func TestRingServers(t *testing.T) {
	r := mustRing(t, "b:1", "a:2", "/tmp/mc.sock", "[::1]:11211")
	if got := fmt.Sprint(r.Servers()); got != "[b:1 a:2 /tmp/mc.sock [::1]:11211]" {
		t.Fatalf("Servers() = %s", got)
	}
	var got []string
	if err := r.Each(func(a net.Addr) error {
		got = append(got, a.Network()+" "+a.String())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[tcp b:1 tcp a:2 unix /tmp/mc.sock tcp [::1]:11211]" {
		t.Fatalf("Each saw %q", got)
	}
	stop := errors.New("stop")
	calls := 0
	if err := r.Each(func(net.Addr) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("Each returned %v after %d calls; want the first error after 1", err, calls)
	}
	one := mustRing(t, "solo:11211")
	if pick(t, one, "anything") != "solo:11211" {
		t.Fatal("a one-server ring must pick that server")
	}
}

func TestRingErrors(t *testing.T) {
	for _, bad := range [][]string{
		nil,
		{"no-port"},
		{":11211"},
		{"h:notaport"},
		{"h:0"},
		{"h:70000"},
		{"h:1", "h:1"},
	} {
		if _, err := NewRing(bad...); err == nil {
			t.Errorf("NewRing(%q): no error", bad)
		}
	}
}

func BenchmarkRingPickServer(b *testing.B) {
	r := mustRing(b, servers(4)...)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := r.PickServer("user:profile:12345678"); err != nil {
			b.Fatal(err)
		}
	}
}
