package integration_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memcached"
	"github.com/cachekit/cachekit/cachetest"
)

// The memcached backend against real servers: the conformance suite on one
// server and on a pool of two spread by the backend's consistent-hashing
// Ring, then what is particular to memcached, checked on the wire with a
// raw gomemcache client where it matters. Tests share the servers, so each
// uses its own namespace or unique keys, and none calls Clear without a
// namespace (that would flush_all).

// mcClient returns a gomemcache client for addrs through a Ring, closed
// when t ends.
func mcClient(t *testing.T, addrs ...string) *memcache.Client {
	t.Helper()
	ring, err := memcached.NewRing(addrs...)
	if err != nil {
		t.Fatal(err)
	}
	client := memcache.NewFromSelector(ring)
	client.Timeout = 5 * time.Second
	client.MaxIdleConns = 16
	t.Cleanup(func() { client.Close() })
	return client
}

// mcPool returns a gomemcache client for addrs through a Ring, closed when
// t ends, and the Ring: pass it as Options.Selector for the layout a URL
// gets (per-server breakers and namespace generations).
func mcPool(t *testing.T, addrs ...string) (*memcache.Client, *memcached.Ring) {
	t.Helper()
	ring, err := memcached.NewRing(addrs...)
	if err != nil {
		t.Fatal(err)
	}
	client := memcache.NewFromSelector(ring)
	client.Timeout = 5 * time.Second
	client.MaxIdleConns = 16
	t.Cleanup(func() { client.Close() })
	return client, ring
}

// mcGenKey returns the server key of namespace ns's generation on server
// addr (the default layout over a Ring), or with addr "" the single
// generation key (Options.SingleGenerationKey); ns must be plain ASCII.
func mcGenKey(ns, addr string) string {
	if addr == "" {
		return "~" + ns + ":gen"
	}
	return "~" + ns + ":gen@" + addr
}

// mcUnique returns a string no other test or run uses.
func mcUnique(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// mcCache returns a cache over client, closed when t ends.
func mcCache(t *testing.T, client *memcache.Client, opts *memcached.Options) *memcached.Cache {
	t.Helper()
	if opts != nil && opts.Namespace != "" {
		sweepNamespace(opts.Namespace) // TestMain deletes its keys after the tests
	}
	c := memcached.New(client, opts)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

var mcBg = context.Background()

func TestMemcachedConformance(t *testing.T) {
	t.Parallel()
	client := mcClient(t, memcachedServers(t, 1)...)
	cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
		return memcached.New(client, &memcached.Options{Namespace: sweepNamespace(ns)})
	}, &cachetest.Options{MaxValueSize: memcached.DefaultMaxValueSize, UnnamespacedClear: cachetest.UnnamespacedClearRefused})
}

// TestMemcachedURLConformance runs the suite over caches opened from URLs,
// with auto-batching (concurrent Gets batched into one multi-get per server;
// the URL default) and without, on one server and on a pool.
func TestMemcachedURLConformance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		servers int
		batch   bool
	}{{1, true}, {2, true}, {1, false}, {2, false}} {
		addrs := memcachedServers(t, tc.servers)
		t.Run(fmt.Sprintf("servers=%d/auto_pipeline=%v", tc.servers, tc.batch), func(t *testing.T) {
			cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
				c, err := cachekit.Open(mcBg, "memcached://"+strings.Join(addrs, ",")+"?auto_pipeline="+strconv.FormatBool(tc.batch)+"&namespace="+url.QueryEscape(sweepNamespace(ns)))
				if err != nil {
					t.Fatal(err)
				}
				return c
			}, &cachetest.Options{MaxValueSize: memcached.DefaultMaxValueSize, UnnamespacedClear: cachetest.UnnamespacedClearRefused})
		})
	}
}

func TestMemcachedPoolConformance(t *testing.T) {
	t.Parallel()
	addrs := memcachedServers(t, 2)
	client := mcClient(t, addrs...)
	cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
		return memcached.New(client, &memcached.Options{Namespace: sweepNamespace(ns)})
	}, &cachetest.Options{MaxValueSize: memcached.DefaultMaxValueSize, UnnamespacedClear: cachetest.UnnamespacedClearRefused})

	// The pool is really used: keys of one cache land on both servers.
	c := mcCache(t, client, nil)
	prefix := "pool-" + mcUnique(t) + "-"
	var keys []string
	for i := range 50 {
		k := prefix + strconv.Itoa(i)
		keys = append(keys, k)
		if err := c.Set(mcBg, k, []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	defer c.Delete(mcBg, keys...)
	for _, addr := range addrs {
		direct := memcache.New(addr)
		found, err := direct.GetMulti(keys)
		direct.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(found) == 0 || len(found) == len(keys) {
			t.Errorf("server %s holds %d of %d keys; want some, not all", addr, len(found), len(keys))
		}
	}
}

// TestMemcachedKeysOnTheWire stores keys memcached can't hold as they are
// and reads the server with a raw client to see what was stored.
func TestMemcachedKeysOnTheWire(t *testing.T) {
	t.Parallel()
	client := mcClient(t, memcachedServers(t, 1)...)
	raw := client // the same servers, used without cachekit
	c := mcCache(t, client, nil)
	id := mcUnique(t)
	b64 := func(s string) string { return "~" + base64.RawURLEncoding.EncodeToString([]byte(s)) }
	long := strings.Repeat("L", 300) + id
	sum := sha256.Sum256([]byte(long))

	spaced := "a b " + id
	underscored := "a_b_" + id  // what a naive space-to-underscore scheme would produce
	looksEncoded := b64(spaced) // a key spelled like the encoding of another
	tests := []struct {
		key, wire string
	}{
		{"plain:" + id, "plain:" + id},
		{spaced, b64(spaced)},
		{underscored, underscored},
		{looksEncoded, b64(looksEncoded)},
		{"ctl\x00\r\n" + id, b64("ctl\x00\r\n" + id)},
		{"ünï " + id, b64("ünï " + id)},
		{long, "~~" + hex.EncodeToString(sum[:])},
	}
	var keys []string
	for i, tc := range tests {
		keys = append(keys, tc.key)
		if err := c.Set(mcBg, tc.key, []byte("value "+strconv.Itoa(i)), time.Minute); err != nil {
			t.Fatalf("Set(%.40q): %v", tc.key, err)
		}
	}
	defer c.Delete(mcBg, keys...)
	for i, tc := range tests {
		it, err := raw.Get(tc.wire)
		if err != nil {
			t.Fatalf("raw get of %q (for key %.40q): %v", tc.wire, tc.key, err)
		}
		if want := "value " + strconv.Itoa(i); string(it.Value) != want {
			t.Fatalf("raw get of %q = %q; want %q", tc.wire, it.Value, want)
		}
		got, err := c.Get(mcBg, tc.key)
		if err != nil || string(got) != "value "+strconv.Itoa(i) {
			t.Fatalf("Get(%.40q) = %q, %v", tc.key, got, err)
		}
	}

	// In a namespace, keys carry the namespace and its generation, which
	// the raw client can read from the reserved generation key: over a
	// Ring passed as Options.Selector (the default layout), the key
	// "~ns:gen@addr" of the server holding the key; with
	// SingleGenerationKey, the one "~ns:gen" of the namespace.
	addr := memcachedServers(t, 1)[0]
	pool, ring := mcPool(t, addr)
	for _, single := range []bool{false, true} {
		ns := "wire-" + strconv.FormatBool(single) + "-" + id
		nc := mcCache(t, pool, &memcached.Options{Namespace: ns, Selector: ring, SingleGenerationKey: single})
		if err := nc.Set(mcBg, "user:1", []byte("u1"), time.Minute); err != nil {
			t.Fatal(err)
		}
		genKey, otherKey := mcGenKey(ns, addr), mcGenKey(ns, "")
		if single {
			genKey, otherKey = otherKey, genKey
		}
		genItem, err := raw.Get(genKey)
		if err != nil {
			t.Fatalf("single=%v: raw get of the generation key %q: %v", single, genKey, err)
		}
		if _, err := raw.Get(otherKey); !errors.Is(err, memcache.ErrCacheMiss) {
			t.Fatalf("single=%v: raw get of %q, the other layout's generation key: %v; want a miss", single, otherKey, err)
		}
		gen, err := strconv.ParseUint(string(genItem.Value), 10, 64)
		if err != nil {
			t.Fatalf("generation %q: %v", genItem.Value, err)
		}
		wire := "~" + ns + ":" + strconv.FormatUint(gen, 36) + ":user:1"
		if it, err := raw.Get(wire); err != nil || string(it.Value) != "u1" {
			t.Fatalf("raw get of %q = %v, %v; want u1", wire, it, err)
		}
		// A cache without a namespace can't reach it, even by spelling it out.
		if _, err := c.Get(mcBg, wire); !errors.Is(err, cachekit.ErrNotFound) {
			t.Fatalf("Get(%q) without a namespace: %v; want ErrNotFound", wire, err)
		}
	}
}

// TestMemcachedItemSizeLimit checks values over the limit, refused by the
// backend's own check or by the server, and that the client stays usable.
func TestMemcachedItemSizeLimit(t *testing.T) {
	t.Parallel()
	client := mcClient(t, memcachedServers(t, 1)...)
	ns := "size-" + mcUnique(t)
	c := mcCache(t, client, &memcached.Options{Namespace: ns})
	max := make([]byte, memcached.DefaultMaxValueSize)
	if err := c.Set(mcBg, strings.Repeat("k", 4000), max, time.Minute); err != nil {
		t.Fatalf("Set of DefaultMaxValueSize bytes under the longest key: %v", err)
	}
	err := c.Set(mcBg, "over", make([]byte, memcached.DefaultMaxValueSize+1), time.Minute)
	if !errors.Is(err, cachekit.ErrTooLarge) {
		t.Fatalf("Set of DefaultMaxValueSize+1 bytes: %v; want ErrTooLarge", err)
	}

	// Without the backend's check, the server refuses (default -I 1m) and
	// that is ErrTooLarge too, with the client's error still reachable.
	unchecked := mcCache(t, client, &memcached.Options{Namespace: ns, MaxValueSize: -1})
	for _, op := range []string{"Set", "Add", "SetMany"} {
		big := make([]byte, 1<<20+1)
		var err error
		switch op {
		case "Set":
			err = unchecked.Set(mcBg, "huge", big, time.Minute)
		case "Add":
			err = unchecked.Add(mcBg, "huge", big, time.Minute)
		case "SetMany":
			err = unchecked.SetMany(mcBg, map[string][]byte{"huge": big}, time.Minute)
		}
		if !errors.Is(err, cachekit.ErrTooLarge) {
			t.Fatalf("%s of 1MiB+1 refused by the server: %v; want ErrTooLarge", op, err)
		}
		if !strings.Contains(err.Error(), "SERVER_ERROR") {
			t.Errorf("%s: %v; want the server's reply in the error", op, err)
		}
		// Still usable.
		if err := unchecked.Set(mcBg, "small", []byte("ok"), time.Minute); err != nil {
			t.Fatalf("Set after a refused value: %v", err)
		}
		if v, err := unchecked.Get(mcBg, "small"); err != nil || string(v) != "ok" {
			t.Fatalf("Get after a refused value = %q, %v", v, err)
		}
	}
	if _, err := c.Get(mcBg, "huge"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get(huge) = %v; want ErrNotFound", err)
	}
	if err := c.Clear(mcBg); err != nil {
		t.Fatal(err)
	}
}

// TestMemcachedLongTTL checks a TTL over memcached's 30-day relative limit:
// sent as an absolute time, the entry is alive right after Set (a naive
// client sends 3456000 as "a Unix time in 1970": expired at once).
func TestMemcachedLongTTL(t *testing.T) {
	t.Parallel()
	client := mcClient(t, memcachedServers(t, 1)...)
	id := mcUnique(t)
	c := mcCache(t, client, nil)
	for _, ttl := range []time.Duration{30 * 24 * time.Hour, 40 * 24 * time.Hour, 365 * 24 * time.Hour} {
		key := "long-ttl-" + ttl.String() + "-" + id
		before := time.Now().Unix()
		if err := c.Set(mcBg, key, []byte("v"), ttl); err != nil {
			t.Fatal(err)
		}
		if v, err := c.Get(mcBg, key); err != nil || string(v) != "v" {
			t.Fatalf("Get right after Set with ttl %v = %q, %v; want v", ttl, v, err)
		}
		if ok, err := c.Exists(mcBg, key); err != nil || !ok {
			t.Fatalf("Exists right after Set with ttl %v = %v, %v", ttl, ok, err)
		}
		// The flags record the absolute expiry, about now+ttl.
		it, err := client.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		want := before + int64(ttl/time.Second)
		if d := int64(it.Flags) - want; d < 0 || d > 3 {
			t.Errorf("ttl %v: flags %d; want the absolute expiry ~%d", ttl, it.Flags, want)
		}
		c.Delete(mcBg, key)
	}
	// Increment keeps the long TTL too.
	key := "long-ttl-counter-" + id
	if err := c.Set(mcBg, key, []byte("1"), 40*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	defer c.Delete(mcBg, key)
	if n, err := c.Increment(mcBg, key, 1); err != nil || n != 2 {
		t.Fatalf("Increment = %d, %v", n, err)
	}
	if v, err := c.Get(mcBg, key); err != nil || string(v) != "2" {
		t.Fatalf("Get after Increment = %q, %v; want 2", v, err)
	}
}

// TestMemcachedSubSecondTTL checks that a sub-second TTL is rounded up:
// alive right after Set (not 0 = "forever", not already expired), gone
// within 5s (it lives 1 to 2s on the server; the bound leaves room for a
// loaded machine).
func TestMemcachedSubSecondTTL(t *testing.T) {
	t.Parallel()
	client := mcClient(t, memcachedServers(t, 1)...)
	c := mcCache(t, client, &memcached.Options{Namespace: "subsec-" + mcUnique(t)})
	var wg sync.WaitGroup
	for i := range 5 { // several, spread over memcached's one-second tick
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 190 * time.Millisecond)
			key := "k" + strconv.Itoa(i)
			if err := c.Set(mcBg, key, []byte("v"), 100*time.Millisecond); err != nil {
				t.Error(err)
				return
			}
			start := time.Now()
			if _, err := c.Get(mcBg, key); err != nil {
				t.Errorf("Get right after Set with ttl 100ms: %v", err)
				return
			}
			for {
				_, err := c.Get(mcBg, key)
				if errors.Is(err, cachekit.ErrNotFound) {
					lived := time.Since(start)
					if lived < 100*time.Millisecond {
						t.Errorf("ttl 100ms: gone after %v", lived)
					}
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				if time.Since(start) > 5*time.Second {
					t.Errorf("ttl 100ms: still there after %v", time.Since(start))
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
}

// TestMemcachedClearGeneration checks Clear through the namespace
// generation: one namespace empties, for every cache object and client on
// it at once, and other namespaces (and keys without one) keep their keys.
// It runs with the default layout over a pool (a generation on every
// server, the Ring passed as Options.Selector) and with
// SingleGenerationKey; losing a generation key empties what it covered:
// one server's keys, or the whole namespace.
func TestMemcachedClearGeneration(t *testing.T) {
	t.Parallel()
	addrs := memcachedServers(t, 2)
	for _, single := range []bool{false, true} {
		t.Run("SingleGenerationKey="+strconv.FormatBool(single), func(t *testing.T) {
			mcClearGeneration(t, addrs, single)
		})
	}
}

func mcClearGeneration(t *testing.T, addrs []string, single bool) {
	client, ring := mcPool(t, addrs...)
	id := mcUnique(t)
	nsA := "clear-a-" + id
	opts := func(ns string) *memcached.Options {
		return &memcached.Options{Namespace: ns, Selector: ring, SingleGenerationKey: single}
	}
	a := mcCache(t, client, opts(nsA))
	b := mcCache(t, client, opts("clear-b-"+id))
	plain := mcCache(t, client, nil)
	// Another process: its own client, same servers and namespace.
	client2, ring2 := mcPool(t, addrs...)
	a2 := mcCache(t, client2, &memcached.Options{Namespace: nsA, Selector: ring2, SingleGenerationKey: single})

	keys := []string{"k1", "k2", "k3", "k 4"}
	for _, k := range keys {
		for _, c := range []*memcached.Cache{a, b} {
			if err := c.Set(mcBg, k, []byte("v"), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
	}
	plainKey := "clear-plain-" + id
	if err := plain.Set(mcBg, plainKey, []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	defer plain.Delete(mcBg, plainKey)
	if got, err := a2.GetMany(mcBg, keys); err != nil || len(got) != len(keys) {
		t.Fatalf("a2 sees %d of a's keys, %v", len(got), err)
	}
	if err := a2.Set(mcBg, "from-a2", []byte("v"), time.Minute); err != nil { // a2 now trusts the generation for writes
		t.Fatal(err)
	}

	if err := a.Clear(mcBg); err != nil {
		t.Fatal(err)
	}
	// a2 confirmed the old generation a moment ago, so its writes still
	// trust it; Add must nonetheless not find the cleared key.
	if err := a2.Add(mcBg, "k2", []byte("new"), time.Minute); err != nil {
		t.Fatalf("Add of a cleared key from another cache: %v", err)
	}
	for _, c := range []*memcached.Cache{a, a2} {
		got, err := c.GetMany(mcBg, []string{"k1", "k3", "k 4", "from-a2"})
		if err != nil || len(got) != 0 {
			t.Fatalf("after Clear: %d keys left, %v; want none", len(got), err)
		}
		if ok, err := c.Exists(mcBg, "k1"); err != nil || ok {
			t.Fatalf("Exists after Clear = %v, %v", ok, err)
		}
	}
	// Increment trusts the generation it last saw for generation_ttl, as
	// the writes do; a read of the key (Exists) sees the Clear at once.
	for _, c := range []*memcached.Cache{a, a2} {
		if ok, err := c.Exists(mcBg, "k3-counter"); err != nil || ok {
			t.Fatalf("Exists(k3-counter) after Clear = %v, %v", ok, err)
		}
	}
	for _, c := range []*memcached.Cache{a, a2} {
		if n, err := c.Increment(mcBg, "k3-counter", 1); err != nil || n < 1 {
			t.Fatalf("Increment after Clear = %d, %v", n, err)
		}
	}
	if v, err := a.Get(mcBg, "k2"); err != nil || string(v) != "new" {
		t.Fatalf("Get(k2) after Clear and Add = %q, %v; want new", v, err)
	}
	if n, err := a.Increment(mcBg, "k3-counter", 0); err != nil || n != 2 {
		t.Fatalf("counter made after Clear = %d, %v; want 2 (one Increment from each cache)", n, err)
	}
	if got, err := b.GetMany(mcBg, keys); err != nil || len(got) != len(keys) {
		t.Fatalf("other namespace after Clear: %d of %d keys, %v", len(got), len(keys), err)
	}
	if v, err := plain.Get(mcBg, plainKey); err != nil || string(v) != "v" {
		t.Fatalf("key without a namespace after Clear = %q, %v", v, err)
	}

	// Losing a generation key (evicted, flushed) empties what it covered
	// and never brings old keys back: the keys of its server (default),
	// or the whole namespace (single key).
	var onFirst, onSecond []string
	for i := 0; len(onFirst) < 3 || len(onSecond) < 3; i++ {
		k := "survivor-" + strconv.Itoa(i)
		a, err := ring.PickServer("~" + nsA + "::" + k) // where the Ring places namespaced keys
		if err != nil {
			t.Fatal(err)
		}
		if a.String() == addrs[0] {
			onFirst = append(onFirst, k)
		} else {
			onSecond = append(onSecond, k)
		}
	}
	survivors := append(append([]string(nil), onFirst...), onSecond...)
	for _, k := range survivors {
		if err := a.Set(mcBg, k, []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	lost := mcGenKey(nsA, addrs[0])
	if single {
		lost = mcGenKey(nsA, "")
	}
	if err := client.Delete(lost); err != nil {
		t.Fatalf("deleting the generation key %q: %v", lost, err)
	}
	wantLeft := onSecond
	if single {
		wantLeft = nil
	}
	for _, c := range []*memcached.Cache{a2, a} {
		got, err := c.GetMany(mcBg, survivors)
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, k := range survivors {
			if _, ok := got[k]; ok {
				left = append(left, k)
			}
		}
		if fmt.Sprint(left) != fmt.Sprint(wantLeft) {
			t.Fatalf("after losing %q: keys %q left; want %q", lost, left, wantLeft)
		}
		for _, k := range onFirst {
			if _, err := c.Get(mcBg, k); !errors.Is(err, cachekit.ErrNotFound) {
				t.Fatalf("Get(%q) after its generation key was lost: %v; want ErrNotFound", k, err)
			}
		}
	}
	for _, c := range []*memcached.Cache{a, b} {
		if err := c.Clear(mcBg); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMemcachedIncrementKeepsTTL checks that Increment keeps the TTL (in
// the flags, on the wire) and the entry still expires.
func TestMemcachedIncrementKeepsTTL(t *testing.T) {
	t.Parallel()
	client := mcClient(t, memcachedServers(t, 1)...)
	c := mcCache(t, client, nil)
	key := "incr-ttl-" + mcUnique(t)
	if err := c.Set(mcBg, key, []byte("10"), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	set := time.Now()
	before, err := client.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if n, err := c.Increment(mcBg, key, -5); err != nil || n != int64(5-5*i) {
			t.Fatalf("Increment #%d = %d, %v", i, n, err)
		}
	}
	after, err := client.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	if before.Flags == 0 || after.Flags != before.Flags {
		t.Fatalf("flags %d before Increment, %d after; want the same absolute expiry", before.Flags, after.Flags)
	}
	if string(after.Value) != "-5" {
		t.Fatalf("stored value %q; want -5", after.Value)
	}
	for {
		_, err := c.Get(mcBg, key)
		if errors.Is(err, cachekit.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(set) > 8*time.Second { // lives 2 to 3s; room for a loaded machine
			t.Fatal("the incremented counter outlived its 2s TTL")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A new counter has no expiry: flags 0 on the wire.
	key2 := key + "-new"
	if _, err := c.Increment(mcBg, key2, 7); err != nil {
		t.Fatal(err)
	}
	defer c.Delete(mcBg, key2)
	if it, err := client.Get(key2); err != nil || it.Flags != 0 || string(it.Value) != "7" {
		t.Fatalf("new counter on the wire = %+v, %v; want 7 with flags 0", it, err)
	}
}

// TestMemcachedDeadline checks, against a TCP peer on 127.0.0.1 that
// accepts and never replies, that a context deadline ends a call although
// gomemcache takes no context, with an error that is
// context.DeadlineExceeded, long before the client's own timeout: within a
// second of the deadline (a bound a loaded machine meets; the client's
// timeout is three times that).
func TestMemcachedDeadline(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(io.Discard, conn) }()
		}
	}()
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()

	client := memcache.New(ln.Addr().String())
	client.Timeout = 3 * time.Second // well past the deadlines; Close waits for it
	defer client.Close()
	c := memcached.New(client, &memcached.Options{Namespace: "deadline"})
	defer c.Close()
	// Timing on a shared machine can stall a goroutine: the bound must hold
	// in one of two attempts, the error kind in all of them.
	const slack = time.Second
	for _, d := range []time.Duration{20 * time.Millisecond, 200 * time.Millisecond} {
		for name, op := range map[string]func(ctx context.Context) error{
			"Set": func(ctx context.Context) error { return c.Set(ctx, "k", []byte("v"), 0) },
			"Get": func(ctx context.Context) error { _, err := c.Get(ctx, "k"); return err },
		} {
			var took time.Duration
			for attempt := 0; attempt < 2; attempt++ {
				ctx, cancel := context.WithTimeout(mcBg, d)
				start := time.Now()
				err := op(ctx)
				took = time.Since(start)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("%s against a silent server with a %v deadline: %v; want DeadlineExceeded", name, d, err)
				}
				if took <= d+slack {
					break
				}
			}
			if took > d+slack {
				t.Fatalf("%s returned %v after its %v deadline; want within %v, before the client's %v timeout", name, took-d, d, slack, client.Timeout)
			}
		}
	}
}

// TestMemcachedOpenURL opens caches with cachekit.Open.
func TestMemcachedOpenURL(t *testing.T) {
	t.Parallel()
	addrs := memcachedServers(t, 2)
	ns := "url-" + mcUnique(t)
	u := "memcached://" + strings.Join(addrs, ",") + "?namespace=" + ns +
		"&timeout=2s&max_idle_conns=4&max_value_size=64KiB&generation_ttl=100ms"
	c, err := cachekit.Open(mcBg, u)
	if err != nil {
		t.Fatalf("Open(%q): %v", u, err)
	}
	if err := c.Set(mcBg, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(mcBg, "k"); err != nil || string(v) != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if err := c.Set(mcBg, "big", make([]byte, 64<<10+1), 0); !errors.Is(err, cachekit.ErrTooLarge) {
		t.Fatalf("Set over max_value_size=64KiB: %v; want ErrTooLarge", err)
	}
	// The same namespace through a client built by hand sees the same keys
	// when it is given its Ring (the layout a URL gets: the generation of
	// "k" on k's server), and not with the single generation key of
	// per_server_generations=false, nor does such a URL's cache.
	client, ring := mcPool(t, addrs...)
	same := mcCache(t, client, &memcached.Options{Namespace: ns, Selector: ring})
	if v, err := same.Get(mcBg, "k"); err != nil || string(v) != "v" {
		t.Fatalf("Get through another client = %q, %v", v, err)
	}
	kOn, err := ring.PickServer("~" + ns + "::k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get(mcGenKey(ns, kOn.String())); err != nil {
		t.Fatalf("raw get of the generation key of %s: %v", kOn, err)
	}
	if _, err := client.Get(mcGenKey(ns, "")); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("raw get of the single generation key: %v; want a miss", err)
	}
	singleURL, err := cachekit.Open(mcBg, "memcached://"+strings.Join(addrs, ",")+"?namespace="+ns+"&per_server_generations=false")
	if err != nil {
		t.Fatal(err)
	}
	defer singleURL.Close()
	singleNew := mcCache(t, client, &memcached.Options{Namespace: ns, Selector: ring, SingleGenerationKey: true})
	for _, c := range []cachekit.Cache{singleURL, singleNew} {
		if _, err := c.Get(mcBg, "k"); !errors.Is(err, cachekit.ErrNotFound) {
			t.Fatalf("Get with the single generation key: %v; want ErrNotFound (the layouts don't share keys)", err)
		}
	}
	if err := singleURL.Set(mcBg, "s", []byte("single"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := singleNew.Get(mcBg, "s"); err != nil || string(v) != "single" {
		t.Fatalf("single generation key, URL to New: Get = %q, %v", v, err)
	}
	if _, err := client.Get(mcGenKey(ns, "")); err != nil {
		t.Fatalf("raw get of the single generation key after a write with it: %v", err)
	}
	if _, err := c.Get(mcBg, "s"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get of a key written with the single generation key: %v; want ErrNotFound", err)
	}
	if err := singleURL.Clear(mcBg); err != nil {
		t.Fatal(err)
	}
	if err := c.Clear(mcBg); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(mcBg, "k"); !errors.Is(err, cachekit.ErrClosed) {
		t.Fatalf("Get after Close: %v; want ErrClosed", err)
	}

	// memcache:// works too, with one server.
	c2, err := cachekit.Open(mcBg, "memcache://"+addrs[0]+"?namespace="+ns)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Get(mcBg, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get after Clear: %v; want ErrNotFound", err)
	}

	for _, bad := range []string{
		"memcached://" + addrs[0] + "?namespace=x&bogus=1",
		"memcached://" + addrs[0] + "?timeout=soon",
		"memcached://user:secret@" + addrs[0],
	} {
		c, err := cachekit.Open(mcBg, bad)
		if err == nil {
			c.Close()
			t.Fatalf("Open(%q): no error", bad)
		}
		if !errors.Is(err, cachekit.ErrInvalidURL) || strings.Contains(err.Error(), "secret") {
			t.Fatalf("Open(%q): %v; want ErrInvalidURL without the password", bad, err)
		}
	}
}

// TestMemcachedExpireRewritesFlags checks Expire on the wire: the new
// absolute expiry is in the flags, and 0 persists.
func TestMemcachedExpireRewritesFlags(t *testing.T) {
	t.Parallel()
	client := mcClient(t, memcachedServers(t, 1)...)
	c := mcCache(t, client, nil)
	key := "expire-" + mcUnique(t)
	if err := c.Set(mcBg, key, []byte("value"), 0); err != nil {
		t.Fatal(err)
	}
	defer c.Delete(mcBg, key)
	if ok, err := c.Expire(mcBg, key, time.Hour); err != nil || !ok {
		t.Fatalf("Expire = %v, %v", ok, err)
	}
	it, err := client.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	if d := int64(it.Flags) - time.Now().Add(time.Hour).Unix(); d < -1 || d > 3 || !bytes.Equal(it.Value, []byte("value")) {
		t.Fatalf("after Expire(1h): flags %d (now+1h is %d), value %q", it.Flags, time.Now().Add(time.Hour).Unix(), it.Value)
	}
	if ok, err := c.Expire(mcBg, key, 0); err != nil || !ok {
		t.Fatalf("Expire(0) = %v, %v", ok, err)
	}
	if it, err := client.Get(key); err != nil || it.Flags != 0 {
		t.Fatalf("after Expire(0): %+v, %v; want flags 0", it, err)
	}
}
