package integration_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memcached"
	"github.com/cachekit/cachekit/internal/testserver"
)

// Memcached pool changes (issue #11, item 3): by default (URL
// per_server_generations=true) a namespace keeps a generation on every
// server, beside the keys that server holds, so growing the pool or losing
// a server touches only the keys of that server. The tests open their
// caches with the URL's defaults, and compare with the single generation
// key of per_server_generations=false where it says something. Servers are
// processes of the test's own (internal/testserver).
//
// The figures in BENCHMARKS.md ("Memcached pool changes") come from
//
//	cd integration_test && go test -race -count=1 -v -run MemcachedTopology ./...

// topoServers starts n memcached servers and returns them with their
// addresses.
func topoServers(t *testing.T, n int) ([]*testserver.Server, []string) {
	t.Helper()
	srvs := make([]*testserver.Server, n)
	addrs := make([]string, n)
	for i := range srvs {
		srvs[i] = testserver.StartMemcached(t)
		addrs[i] = srvs[i].Addr()
	}
	return srvs, addrs
}

// topoURL is the URL of a cache over addrs in namespace ns, with the
// default layout (a generation on every server) or, with single, the
// opt-out per_server_generations=false.
func topoURL(addrs []string, ns string, single bool, extra string) string {
	u := "memcached://" + strings.Join(addrs, ",") + "?namespace=" + ns + "&timeout=500ms" + extra
	if single {
		u += "&per_server_generations=false"
	}
	return u
}

// topoKeys returns n keys of one test.
func topoKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = prefix + ":" + strconv.Itoa(i)
	}
	return keys
}

func topoValue(key string) []byte { return []byte("value of " + key) }

// topoServerOf returns the server of a Ring that holds namespaced key (a
// plain key in a plain namespace): the Ring places "~ns:<gen>:key" by
// "~ns::key".
func topoServerOf(t *testing.T, ring *memcached.Ring, ns, key string) string {
	t.Helper()
	a, err := ring.PickServer("~" + ns + "::" + key)
	if err != nil {
		t.Fatal(err)
	}
	return a.String()
}

// topoHits reads keys in chunks and returns how many hit, failing on a
// wrong value.
func topoHits(t *testing.T, c cachekit.Cache, keys []string) int {
	t.Helper()
	hits := 0
	for i := 0; i < len(keys); i += 200 {
		chunk := keys[i:min(i+200, len(keys))]
		got, err := c.GetMany(mcBg, chunk)
		if err != nil {
			t.Fatalf("GetMany: %v", err)
		}
		for k, v := range got {
			if string(v) != string(topoValue(k)) {
				t.Fatalf("key %q holds %q; want %q", k, v, topoValue(k))
			}
		}
		hits += len(got)
	}
	return hits
}

// topoGrow writes keys through a cache over the first four servers, then
// reads them through one over all five, and returns the hit ratio.
func topoGrow(t *testing.T, addrs []string, ns string, single bool, keys []string) float64 {
	t.Helper()
	four := mcOpen(t, topoURL(addrs[:4], ns, single, ""))
	items := make(map[string][]byte, len(keys))
	for _, k := range keys {
		items[k] = topoValue(k)
	}
	if err := four.SetMany(mcBg, items, time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := topoHits(t, four, keys); n != len(keys) {
		t.Fatalf("before growing: %d of %d keys hit", n, len(keys))
	}
	five := mcOpen(t, topoURL(addrs, ns, single, ""))
	return float64(topoHits(t, five, keys)) / float64(len(keys))
}

// TestMemcachedTopologyGrowth: a pool of 4 grows to 5; at least 4/5 - 5%
// of the keys of a namespace still hit, whichever namespace (several are
// tried, so a namespace whose single generation key would have moved to
// the new server is among them with high probability), and the keys the
// new server does not take all hit.
func TestMemcachedTopologyGrowth(t *testing.T) {
	t.Parallel()
	_, addrs := topoServers(t, 5)
	ring5, err := memcached.NewRing(addrs...)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	worst := 1.0
	for i := range 4 {
		ns := "grow" + strconv.Itoa(i) + "-" + mcUnique(t)
		keys := topoKeys("g", n)
		ratio := topoGrow(t, addrs, ns, false, keys)
		stay := 0
		for _, k := range keys {
			if topoServerOf(t, ring5, ns, k) != addrs[4] {
				stay++
			}
		}
		t.Logf("namespace %d: %.1f%% of %d keys hit after growing from 4 to 5 servers (%.1f%% stayed on their server)",
			i, 100*ratio, n, 100*float64(stay)/n)
		if want := 4.0/5 - 0.05; ratio < want {
			t.Errorf("namespace %d: hit ratio %.3f after growing; want at least %.3f", i, ratio, want)
		}
		if got := int(ratio*n + 0.5); got != stay {
			t.Errorf("namespace %d: %d keys hit; want the %d that stayed on their server", i, got, stay)
		}
		worst = min(worst, ratio)
	}
	t.Logf("RESULT growth (default layout): worst hit ratio %.3f of 4 namespaces", worst)
	// For comparison, the opt-out (per_server_generations=false): a
	// namespace keeps every key that stays on its server while its single
	// generation key stays too, and reads as empty when the new server
	// takes that key.
	var legacy []string
	for i := range 4 {
		ns := "growlegacy" + strconv.Itoa(i) + "-" + mcUnique(t)
		keys := topoKeys("g", n)
		ratio := topoGrow(t, addrs, ns, true, keys)
		legacy = append(legacy, fmt.Sprintf("%.3f", ratio))
		genOn, err := ring5.PickServer("~" + ns + ":gen")
		if err != nil {
			t.Fatal(err)
		}
		stay := 0
		for _, k := range keys {
			if topoServerOf(t, ring5, ns, k) != addrs[4] {
				stay++
			}
		}
		want := stay
		if genOn.String() == addrs[4] {
			want = 0
		}
		if got := int(ratio*n + 0.5); got != want {
			t.Errorf("single generation key, namespace %d (key on %s): %d keys hit; want %d", i, genOn, got, want)
		}
	}
	t.Logf("RESULT growth per_server_generations=false: hit ratios %s", strings.Join(legacy, " "))
}

// topoStats collects the outcomes of operations in one phase.
type topoStats struct {
	mu        sync.Mutex
	lat       []time.Duration
	ops, errs int // on keys of live servers
	deadOps   int // on keys of the killed server
	deadErrs  int
	slowest   time.Duration
	firstErrs []string
}

func (s *topoStats) add(d time.Duration, onDead bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slowest = max(s.slowest, d)
	if onDead {
		s.deadOps++
		if err != nil {
			s.deadErrs++
		}
		return
	}
	s.lat = append(s.lat, d)
	s.ops++
	if err != nil {
		s.errs++
		if len(s.firstErrs) < 5 {
			s.firstErrs = append(s.firstErrs, err.Error())
		}
	}
}

func (s *topoStats) p(q float64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lat) == 0 {
		return 0
	}
	l := append([]time.Duration(nil), s.lat...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[min(len(l)-1, int(q*float64(len(l))))]
}

// TestMemcachedTopologyNodeLoss: in a pool of 4, one server is killed under
// load (8 goroutines of Gets and Sets, each with a 1s deadline). Operations
// on keys of the other three keep succeeding (at least 99%), operations on
// keys of the dead one fail fast (the breaker), nothing takes longer than
// its deadline, no Get returns another key's value, and once the server is
// back its keys work again.
func TestMemcachedTopologyNodeLoss(t *testing.T) {
	t.Parallel()
	srvs, addrs := topoServers(t, 4)
	ns := "loss-" + mcUnique(t)
	c := mcOpen(t, topoURL(addrs, ns, false, ""))
	ring, err := memcached.NewRing(addrs...)
	if err != nil {
		t.Fatal(err)
	}
	keys := topoKeys("l", 2000)
	victim := addrs[1]
	onVictim := map[string]bool{}
	for _, k := range keys {
		onVictim[k] = topoServerOf(t, ring, ns, k) == victim
	}
	items := make(map[string][]byte, len(keys))
	for _, k := range keys {
		items[k] = topoValue(k)
	}
	if err := c.SetMany(mcBg, items, time.Hour); err != nil {
		t.Fatal(err)
	}

	const deadline = time.Second
	phases := []string{"before", "during", "after"}
	stats := map[string]*topoStats{}
	for _, p := range phases {
		stats[p] = &topoStats{}
	}
	var (
		phaseMu    sync.Mutex
		phase      = "before"
		victimDown bool
		stop       = make(chan struct{})
		wg         sync.WaitGroup
	)
	current := func() (string, bool) {
		phaseMu.Lock()
		defer phaseMu.Unlock()
		return phase, victimDown
	}
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, down := current()
				k := keys[r.IntN(len(keys))]
				ctx, cancel := context.WithTimeout(mcBg, deadline)
				start := time.Now()
				var err error
				if r.IntN(5) == 0 {
					err = c.Set(ctx, k, topoValue(k), time.Hour)
				} else {
					var v []byte
					v, err = c.Get(ctx, k)
					if errors.Is(err, cachekit.ErrNotFound) {
						err = nil // a miss is an answer (the restarted server is empty)
					} else if err == nil && string(v) != string(topoValue(k)) {
						t.Errorf("Get(%q) = %q: another key's value", k, v)
					}
				}
				d := time.Since(start)
				cancel()
				// An operation that spans a change counts in the later
				// phase, and on the dead server if it was down at either
				// end.
				p, downNow := current()
				stats[p].add(d, onVictim[k] && (down || downNow), err)
				time.Sleep(time.Millisecond) // bounded load on 2 cores
			}
		}()
	}
	set := func(p string, down bool) {
		phaseMu.Lock()
		phase, victimDown = p, down
		phaseMu.Unlock()
	}
	time.Sleep(1500 * time.Millisecond)
	set("during", true)
	srvs[1].Kill()
	time.Sleep(3 * time.Second)
	srvs[1].Restart()
	// The breaker lets a probe through after 1s; the victim's keys count
	// as live again once it answers.
	time.Sleep(1500 * time.Millisecond)
	set("after", false)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	for _, p := range phases {
		s := stats[p]
		t.Logf("RESULT node loss %-6s: %5d ops on live servers, %d errors, p50 %v, p99 %v; %d ops on the dead server's keys, %d errors; slowest op %v",
			p, s.ops, s.errs, s.p(0.5).Round(time.Microsecond), s.p(0.99).Round(time.Microsecond), s.deadOps, s.deadErrs, s.slowest.Round(time.Microsecond))
		if s.errs > 0 {
			t.Logf("%s: errors on live servers' keys, e.g. %q", p, s.firstErrs)
		}
		if s.ops < 100 {
			t.Errorf("%s: only %d operations on live servers' keys", p, s.ops)
		}
		if s.slowest > deadline+250*time.Millisecond {
			t.Errorf("%s: an operation took %v; want each within its %v deadline", p, s.slowest, deadline)
		}
		if float64(s.errs) > 0.01*float64(s.ops) {
			t.Errorf("%s: %d of %d operations on live servers' keys failed (want at most 1%%), e.g. %q", p, s.errs, s.ops, s.firstErrs)
		}
	}
	if d := stats["during"]; d.deadOps == 0 || d.deadErrs == 0 {
		t.Errorf("during: %d operations on the dead server's keys, %d failed; want them to fail", d.deadOps, d.deadErrs)
	}
}

// TestMemcachedTopologyClear: Clear moves the generation on every server of
// the pool, as seen by another process, leaves other namespaces alone, and
// with a server down clears the others and fails naming the one it could
// not reach; a Clear once it is back succeeds.
func TestMemcachedTopologyClear(t *testing.T) {
	t.Parallel()
	srvs, addrs := topoServers(t, 4)
	id := mcUnique(t)
	nsA, nsB := "clra-"+id, "clrb-"+id
	a1 := mcOpen(t, topoURL(addrs, nsA, false, "&breaker_duration=200ms"))
	a2 := mcOpen(t, topoURL(addrs, nsA, false, "&generation_ttl=1ms"))
	b := mcOpen(t, topoURL(addrs, nsB, false, ""))
	keys := topoKeys("c", 400)
	items := make(map[string][]byte, len(keys))
	for _, k := range keys {
		items[k] = topoValue(k)
	}
	for _, c := range []cachekit.Cache{a1, b} {
		if err := c.SetMany(mcBg, items, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if n := topoHits(t, a2, keys); n != len(keys) {
		t.Fatalf("another process sees %d of %d keys", n, len(keys))
	}
	if err := a1.Clear(mcBg); err != nil {
		t.Fatal(err)
	}
	if n := topoHits(t, a2, keys); n != 0 {
		t.Fatalf("after Clear, another process sees %d of %d keys; want none", n, len(keys))
	}
	if n := topoHits(t, b, keys); n != len(keys) {
		t.Fatalf("after Clear of %s, %s has %d of %d keys", nsA, nsB, n, len(keys))
	}
	// Writes after the Clear are seen across processes.
	if err := a2.SetMany(mcBg, items, time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := topoHits(t, a1, keys); n != len(keys) {
		t.Fatalf("after writes in the new generation, %d of %d keys", n, len(keys))
	}

	// One server down: Clear clears the others and names the one it could
	// not reach.
	ring, err := memcached.NewRing(addrs...)
	if err != nil {
		t.Fatal(err)
	}
	var live []string
	for _, k := range keys {
		if topoServerOf(t, ring, nsA, k) != addrs[2] {
			live = append(live, k)
		}
	}
	srvs[2].Kill()
	err = a1.Clear(mcBg)
	if err == nil || !strings.Contains(err.Error(), addrs[2]) {
		t.Fatalf("Clear with %s down: %v; want an error naming it", addrs[2], err)
	}
	for _, other := range []string{addrs[0], addrs[1], addrs[3]} {
		if strings.Contains(err.Error(), other) {
			t.Fatalf("Clear with %s down: %v; names %s, which is up", addrs[2], err, other)
		}
	}
	if n := topoHits(t, a2, live); n != 0 {
		t.Fatalf("after a partial Clear, %d of %d keys on the live servers hit; want none", n, len(live))
	}
	srvs[2].Restart()
	var clearErr error
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(100 * time.Millisecond) {
		if clearErr = a1.Clear(mcBg); clearErr == nil {
			break
		}
	}
	if clearErr != nil {
		t.Fatalf("Clear once the server is back: %v", clearErr)
	}
	if n := topoHits(t, a2, keys); n != 0 {
		t.Fatalf("after Clear, %d of %d keys hit", n, len(keys))
	}
}

// TestMemcachedTopologyGetManyPartial: in a pool of two server processes,
// one is killed. Single-key operations on the live server's keys keep
// succeeding (at least 99%), and GetMany over keys of both returns every
// key of the live server, with its value, and none of the dead one's,
// with an error that wraps cachekit.ErrUnavailable and names the dead
// server and how many keys it could not read; with and without a
// namespace. Once the server is back (empty), GetMany succeeds again.
func TestMemcachedTopologyGetManyPartial(t *testing.T) {
	t.Parallel()
	srvs, addrs := topoServers(t, 2)
	ring, err := memcached.NewRing(addrs...)
	if err != nil {
		t.Fatal(err)
	}
	ns := "partial-" + mcUnique(t)
	caches := map[string]cachekit.Cache{
		"namespace":    mcOpen(t, topoURL(addrs, ns, false, "")),
		"no namespace": mcOpen(t, "memcached://"+strings.Join(addrs, ",")+"?timeout=500ms"),
	}
	keys := topoKeys("p-"+ns, 400)
	items := make(map[string][]byte, len(keys))
	for _, k := range keys {
		items[k] = topoValue(k)
	}
	live := map[string]map[string]bool{}
	for name, c := range caches {
		if err := c.SetMany(mcBg, items, time.Hour); err != nil {
			t.Fatal(err)
		}
		live[name] = map[string]bool{}
		for _, k := range keys {
			sk := k
			if name == "namespace" {
				sk = "~" + ns + "::" + k
			}
			a, err := ring.PickServer(sk)
			if err != nil {
				t.Fatal(err)
			}
			if a.String() == addrs[0] {
				live[name][k] = true
			}
		}
		if n := len(live[name]); n == 0 || n == len(keys) {
			t.Fatalf("%s: %d of %d keys on the server that stays; want some, not all", name, n, len(keys))
		}
	}
	dead := addrs[1]
	srvs[1].Kill()

	for name, c := range caches {
		var ops, fails int
		var firstErr error
		for round := range 20 {
			for i, k := range keys {
				if !live[name][k] || i%4 != round%4 {
					continue
				}
				ops++
				ctx, cancel := context.WithTimeout(mcBg, time.Second)
				v, err := c.Get(ctx, k)
				cancel()
				if err != nil || string(v) != string(topoValue(k)) {
					fails++
					if firstErr == nil {
						firstErr = fmt.Errorf("Get(%q) = %q, %v", k, v, err)
					}
				}
			}
			ctx, cancel := context.WithTimeout(mcBg, time.Second)
			got, err := c.GetMany(ctx, keys)
			cancel()
			if !errors.Is(err, cachekit.ErrUnavailable) {
				t.Fatalf("%s, round %d: GetMany with %s dead: %v; want an error wrapping ErrUnavailable", name, round, dead, err)
			}
			wantMsg := fmt.Sprintf("%d of %d keys not read", len(keys)-len(live[name]), len(keys))
			if !strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), wantMsg) || strings.Contains(err.Error(), addrs[0]) {
				t.Fatalf("%s: GetMany error %q; want it to name %s (not %s) and say %q", name, err, dead, addrs[0], wantMsg)
			}
			if round == 0 && !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("%s: first GetMany error %v; want it to wrap the dial error (ECONNREFUSED)", name, err)
			}
			if len(got) != len(live[name]) {
				t.Fatalf("%s, round %d: GetMany returned %d keys; want the %d of the live server", name, round, len(got), len(live[name]))
			}
			for k, v := range got {
				if !live[name][k] || string(v) != string(topoValue(k)) {
					t.Fatalf("%s: GetMany returned %q = %q; want only live keys with their values", name, k, v)
				}
			}
		}
		t.Logf("RESULT GetMany partial (%s): %d single-key Gets on the live server, %d failed; every GetMany returned the %d live keys", name, ops, fails, len(live[name]))
		if float64(fails) > 0.01*float64(ops) {
			t.Errorf("%s: %d of %d Gets on the live server failed (want at most 1%%), first: %v", name, fails, ops, firstErr)
		}
	}

	srvs[1].Restart()
	for name, c := range caches {
		var err error
		var got map[string][]byte
		for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(100 * time.Millisecond) {
			if got, err = c.GetMany(mcBg, keys); err == nil {
				break
			}
		}
		if err != nil || len(got) != len(live[name]) {
			t.Fatalf("%s: GetMany once the server is back: %d keys, %v; want the %d live ones and no error", name, len(got), err, len(live[name]))
		}
	}
}
