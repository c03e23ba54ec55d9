package memcached

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/cachetest"
)

// perServerCache returns a namespaced cache with the default options over
// a Ring client of addrs (no I/O happens until it is used): per-server
// generations when withSelector passes the Ring as Options.Selector.
func perServerCache(t *testing.T, ns string, withSelector bool, addrs ...string) (*Cache, *Ring) {
	t.Helper()
	ring := mustRing(t, addrs...)
	client := memcache.NewFromSelector(ring)
	client.MaxIdleConns = 16
	client.Timeout = 2 * time.Second
	t.Cleanup(func() { client.Close() })
	opts := &Options{Namespace: ns}
	if withSelector {
		opts.Selector = ring
	}
	c := New(client, opts)
	t.Cleanup(func() { c.Close() })
	return c, ring
}

// TestRingRoutesGenerationKeys: every server's generation key of a
// namespace goes to that server, whatever the namespace; a generation key
// naming a server the ring lacks is placed like any other key.
func TestRingRoutesGenerationKeys(t *testing.T) {
	ring := mustRing(t, servers(5)...)
	for _, ns := range []string{"app", "a b", strings.Repeat("n", 100)} {
		part := namespacePart(ns)
		for _, addr := range servers(5) {
			if got := pick(t, ring, serverGenerationKey(part, addr)); got != addr {
				t.Fatalf("namespace %q: generation key of %s goes to %s", ns, addr, got)
			}
		}
	}
	stray := serverGenerationKey("app", "10.9.9.9:11211")
	if got, want := ring.addrs[ring.serverOf(stray)].String(), ring.addrs[ring.index(stray)].String(); got != want {
		t.Fatalf("generation key of an unknown server goes to %s; want %s (plain hashing)", got, want)
	}
}

// TestRingPlacesNamespacedKeysWithoutGeneration: a namespaced key lives on
// the same server in every generation (so a Clear moves no key), also for
// keys long enough to be encoded, and the cache's own idea of a key's
// server (its generation slot) is where the client sends it.
func TestRingPlacesNamespacedKeysWithoutGeneration(t *testing.T) {
	c, ring := perServerCache(t, "app", true, servers(4)...)
	gens := []uint64{1, 35, 36, 1 << 40, 1<<62 + 12345, 1<<64 - 1}
	perServer := map[string]int{}
	for i := range 4000 {
		key := "user:" + strconv.Itoa(i)
		switch i % 4 {
		case 1:
			key = strings.Repeat("k", 150+i%120) + key // near and past the plain budget
		case 2:
			key = "with space " + key
		}
		slot := c.slotFor(key)
		for _, g := range gens {
			sk := serverKey(generationPrefix(c.nsPart, g), key)
			if len(sk) > maxServerKey {
				t.Fatalf("server key of %q in generation %d is %d bytes", key, g, len(sk))
			}
			if got := pick(t, ring, sk); got != slot.addr {
				t.Fatalf("key %.40q in generation %d goes to %s; its generation slot is %s", key, g, got, slot.addr)
			}
		}
		if a, err := c.pickServer(key); err != nil || a.String() != slot.addr {
			t.Fatalf("pickServer(%.40q) = %v, %v; want %s", key, a, err, slot.addr)
		}
		perServer[slot.addr]++
	}
	if len(perServer) != 4 {
		t.Fatalf("keys spread over %d servers; want 4: %v", len(perServer), perServer)
	}
}

// TestGrowingKeepsGenerationPlacement: growing a pool from 4 to 5 servers
// moves only the keys the new server takes, and a key that stays keeps its
// server's generation key (the same name, on the same server).
func TestGrowingKeepsGenerationPlacement(t *testing.T) {
	four, _ := perServerCache(t, "app", true, servers(4)...)
	five, _ := perServerCache(t, "app", true, servers(5)...)
	const n = 10000
	stayed := 0
	for i := range n {
		key := "k" + strconv.Itoa(i)
		a, b := four.slotFor(key), five.slotFor(key)
		if a.addr == b.addr {
			stayed++
			if a.key != b.key {
				t.Fatalf("key %q stays on %s but its generation key changed from %q to %q", key, a.addr, a.key, b.key)
			}
		} else if b.addr != servers(5)[4] {
			t.Fatalf("key %q moved from %s to %s, not to the new server", key, a.addr, b.addr)
		}
	}
	if min := n * (4.0/5 - 0.05); float64(stayed) < min {
		t.Fatalf("%d of %d keys stayed; want at least %.0f", stayed, n, min)
	}
}

// TestPerServerGenerationsModes: per-server generations are the default
// with the Ring given as Options.Selector (one server included); with
// SingleGenerationKey, without the selector, or over another selector, the
// namespace keeps its single generation key.
func TestPerServerGenerationsModes(t *testing.T) {
	c, ring := perServerCache(t, "app", true, servers(3)...)
	if c.ring != ring || len(c.slots) != 3 {
		t.Fatalf("ring %p (want %p), %d slots (want 3)", c.ring, ring, len(c.slots))
	}
	for i, s := range c.slots {
		if s.addr != servers(3)[i] || s.key != "~app:gen@"+servers(3)[i] {
			t.Fatalf("slot %d = %s %q", i, s.addr, s.key)
		}
	}
	noSelector, _ := perServerCache(t, "app", false, servers(3)...)
	single, _ := perServerCache(t, "app", true, servers(1)...)
	if len(single.slots) != 1 || single.slots[0].key != "~app:gen@"+servers(1)[0] {
		t.Fatalf("one server: slots %v", single.slots)
	}
	ring = mustRing(t, servers(3)...)
	legacy := New(memcache.NewFromSelector(ring), &Options{Namespace: "app", Selector: ring, SingleGenerationKey: true})
	list := memcache.New(servers(3)...)
	var sl memcache.ServerList
	if err := sl.SetServers(servers(3)...); err != nil {
		t.Fatal(err)
	}
	other := New(list, &Options{Namespace: "app", Selector: &sl})
	for _, c := range []*Cache{legacy, other, noSelector} {
		if c.ring != nil || len(c.slots) != 1 || c.slots[0].key != "~app:gen" {
			t.Fatalf("single generation key expected: ring %v, slots %d", c.ring, len(c.slots))
		}
	}
}

// TestConformancePoolPerServerGenerations runs the conformance suite over a
// Ring passed as Options.Selector: with a generation on every server (the
// default), and with SingleGenerationKey.
func TestConformancePoolPerServerGenerations(t *testing.T) {
	addrs := testServers(t, 2)
	ring, err := NewRing(addrs...)
	if err != nil {
		t.Fatal(err)
	}
	client := memcache.NewFromSelector(ring)
	client.MaxIdleConns = 16
	client.Timeout = 2 * time.Second
	t.Cleanup(func() { client.Close() })
	for _, single := range []bool{false, true} {
		t.Run("SingleGenerationKey="+strconv.FormatBool(single), func(t *testing.T) {
			cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
				c := New(client, &Options{Namespace: ns, Selector: ring, SingleGenerationKey: single})
				if got := len(c.slots); ns != "" && got != map[bool]int{false: 2, true: 1}[single] {
					t.Fatalf("%d generation slots", got)
				}
				return c
			}, &cachetest.Options{MaxValueSize: DefaultMaxValueSize, UnnamespacedClear: cachetest.UnnamespacedClearRefused})
		})
	}
}
