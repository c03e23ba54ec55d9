package integration_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	_ "github.com/cachekit/cachekit/backend/redis"
	"github.com/cachekit/cachekit/internal/testserver"
)

// Topology changes under load (issue #11): a Redis Cluster master killed
// (its replica is promoted), slots migrated between masters, and a Sentinel
// failover. Every server is a process of the test's own (internal/testserver),
// with 8 goroutines of light load; the assertions are recovery within the
// server's failover time plus a generous margin, no wrong value, and no
// MOVED/ASK/TRYAGAIN reaching a caller. Each test logs its figures
// (BENCHMARKS.md, "Redis topology changes").

// topoCluster is a 6-node cluster (3 masters, 3 replicas) with
// cluster-node-timeout 2000ms.
type topoCluster struct {
	nodes []*testserver.Server
	addrs []string
}

// skipOrFail skips the test, except under CI (CI set), where a missing
// binary must fail it, as internal/testserver does.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startTopoCluster(t *testing.T, extra ...string) *topoCluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		skipOrFail(t, "redis-cli not installed (Debian package redis-tools)")
	}
	tc := &topoCluster{}
	for range 6 {
		// The bus port is chosen here: port+10000 may be past 65535.
		args := []string{"--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
			"--cluster-port", strconv.Itoa(freeTCPPort(t)), "--cluster-replica-validity-factor", "0"}
		s := testserver.StartRedis(t, append(args, extra...)...)
		tc.nodes = append(tc.nodes, s)
		tc.addrs = append(tc.addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, tc.addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	tc.waitOK(t, tc.nodes)
	return tc
}

// waitOK waits until every node of live reports cluster_state:ok and knows
// a master for every slot.
func (tc *topoCluster) waitOK(t *testing.T, live []*testserver.Server) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range live {
		c := goredis.NewClient(&goredis.Options{Addr: s.Addr()})
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_assigned:16384") {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				t.Fatalf("cluster not ok on %s: %v %s", s.Addr(), err, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.Close()
	}
}

func (tc *topoCluster) node(addr string) *testserver.Server {
	for _, s := range tc.nodes {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// latencies collects per-op durations and outcomes, by phase.
type latencies struct {
	mu     sync.Mutex
	ops    [3][]time.Duration // before, during, after
	errs   [3]int
	sample []string // a few error texts
}

func (l *latencies) add(phase int, d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops[phase] = append(l.ops[phase], d)
	if err != nil {
		l.errs[phase]++
		if len(l.sample) < 5 {
			l.sample = append(l.sample, err.Error())
		}
	}
}

func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)*99/100]
}

func (l *latencies) report(t *testing.T, event string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("%s: ops before/during/after %d/%d/%d, errors %d/%d/%d, p99 %v / %v / %v; sample errors %q",
		event, len(l.ops[0]), len(l.ops[1]), len(l.ops[2]), l.errs[0], l.errs[1], l.errs[2],
		p99(l.ops[0]).Round(10*time.Microsecond), p99(l.ops[1]).Round(10*time.Microsecond), p99(l.ops[2]).Round(10*time.Microsecond), l.sample)
}

// writeLoad runs 8 writers, each over keys of its own, writing "key=n" with
// a rising n, until stop is closed. It records each key's last acknowledged
// and last attempted n, the longest gap between successful writes (to keys
// for which victim returns true), and when the first successful such write
// after the event happened.
type writeLoad struct {
	c        cachekit.Cache
	lat      latencies
	phase    atomic.Int32
	eventAt  atomic.Int64 // unix nanos
	mu       sync.Mutex
	acked    map[string]int
	tried    map[string]int
	lastOK   time.Time // last successful victim write
	longest  time.Duration
	firstOK  time.Duration // from event to the first victim success after it; -1: none yet
	hung     atomic.Int64  // ops that overran their deadline by far
	victimOf func(key string) bool
}

func (w *writeLoad) run(stop <-chan struct{}, keysPer int) *sync.WaitGroup {
	w.acked, w.tried = map[string]int{}, map[string]int{}
	w.firstOK = -1
	w.lastOK = time.Now()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				n++
				key := fmt.Sprintf("w%d-%d", g, n%keysPer)
				w.mu.Lock()
				w.tried[key] = n
				w.mu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				start := time.Now()
				err := w.c.Set(ctx, key, []byte(key+"="+strconv.Itoa(n)), 0)
				d := time.Since(start)
				cancel()
				if d > 3*time.Second {
					w.hung.Add(1)
				}
				phase := int(w.phase.Load())
				w.lat.add(phase, d, err)
				if err == nil {
					w.mu.Lock()
					w.acked[key] = n
					if w.victimOf == nil || w.victimOf(key) {
						now := time.Now()
						w.longest = max(w.longest, now.Sub(w.lastOK))
						w.lastOK = now
						if ev := w.eventAt.Load(); ev != 0 && w.firstOK < 0 && start.UnixNano() > ev {
							w.firstOK = now.Sub(time.Unix(0, ev))
						}
					}
					w.mu.Unlock()
				} else {
					time.Sleep(5 * time.Millisecond) // errors come fast; don't spin
				}
			}
		}()
	}
	return &wg
}

// recover ends a failover test (what names it): it waits until a write that
// started after the kill (at killed) has succeeded, within the failover (its
// time after the kill) plus 10 s, lets the load run 2 s more, stops it
// (stop, wg), reads every key back and reports. where says where the
// writes went, in the failure ("to the dead master's slots") and in the
// report (" to its slots").
func (w *writeLoad) recover(t *testing.T, what, where, whereReport string, killed time.Time, failover time.Duration, stop chan struct{}, wg *sync.WaitGroup) {
	t.Helper()
	limit := failover + 10*time.Second
	for {
		w.mu.Lock()
		first := w.firstOK
		w.mu.Unlock()
		if first >= 0 {
			break
		}
		if time.Since(killed) > limit {
			close(stop)
			wg.Wait()
			w.lat.report(t, what)
			t.Fatalf("no write%s succeeded within %v of the kill (failover after %v)", where, limit, failover)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.phase.Store(2)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	lost := w.verify(t)
	w.lat.report(t, what)
	t.Logf("%s: replica promoted %v after SIGKILL; first write%s %v after; longest gap without a successful write%s %v; acknowledged writes lost (async replication) %d of %d keys; hung ops %d",
		what, failover.Round(time.Millisecond), whereReport, w.firstOK.Round(time.Millisecond), where, w.longest.Round(time.Millisecond), lost, len(w.tried), w.hung.Load())
	if w.hung.Load() != 0 {
		t.Errorf("%d ops overran their 1s deadline by more than 2s", w.hung.Load())
	}
}

// verify reads every key back: a value must be one this test wrote to that
// key; one older than the last acknowledged write counts as a lost ack.
func (w *writeLoad) verify(t *testing.T) (lost int) {
	t.Helper()
	ctx := context.Background()
	for key, tried := range w.tried {
		var v []byte
		var err error
		for range 20 { // the cluster may still be settling
			if v, err = w.c.Get(ctx, key); err == nil || errors.Is(err, cachekit.ErrNotFound) {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		acked, ok := w.acked[key]
		if errors.Is(err, cachekit.ErrNotFound) {
			if ok {
				lost++
			}
			continue
		}
		if err != nil {
			t.Fatalf("read back %s: %v", key, err)
		}
		k, ns, found := strings.Cut(string(v), "=")
		n, aerr := strconv.Atoi(ns)
		if !found || k != key || aerr != nil || n > tried {
			t.Errorf("wrong value for %s: %q (last tried %d)", key, v, tried)
			continue
		}
		if ok && n < acked {
			lost++
		}
	}
	return lost
}

// TestRedisTopologyClusterFailover kills a master of a 6-node cluster under
// write load: writes to its slots resume within the failover plus a
// margin, through a cache opened from a redis+cluster:// URL with default
// parameters; no value read back is wrong.
func TestRedisTopologyClusterFailover(t *testing.T) {
	settleDials(t)
	tc := startTopoCluster(t)
	ctx := context.Background()
	c, err := cachekit.Open(ctx, "redis+cluster://"+strings.Join(tc.addrs, ",")+"?namespace=topo-failover")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	admin := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: tc.addrs})
	defer admin.Close()

	// The victim: the master of the slot of the first writer's first key.
	victimClient, err := admin.MasterForKey(ctx, "topo-failover:w0-1")
	if err != nil {
		t.Fatal(err)
	}
	victimAddr := victimClient.Options().Addr
	victim := tc.node(victimAddr)
	if victim == nil {
		t.Fatalf("no node %s", victimAddr)
	}
	slots, err := admin.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	var ranges [][2]int
	for _, s := range slots {
		if s.Nodes[0].Addr == victimAddr {
			ranges = append(ranges, [2]int{s.Start, s.End})
		}
	}
	w := &writeLoad{c: c}
	slotCache := sync.Map{}
	w.victimOf = func(key string) bool {
		if v, ok := slotCache.Load(key); ok {
			return v.(bool)
		}
		s := int(keySlot("topo-failover:" + key))
		in := false
		for _, r := range ranges {
			in = in || s >= r[0] && s <= r[1]
		}
		slotCache.Store(key, in)
		return in
	}
	stop := make(chan struct{})
	wg := w.run(stop, 64)
	time.Sleep(2 * time.Second)

	w.mu.Lock()
	w.longest = 0
	w.mu.Unlock()
	w.phase.Store(1)
	victim.Kill() // returns once the process is gone and its port refuses
	killed := time.Now()
	w.eventAt.Store(killed.UnixNano())

	// The cluster's own failover: a replica of the victim's slots reports
	// itself master.
	var live []*testserver.Server
	for _, s := range tc.nodes {
		if s != victim {
			live = append(live, s)
		}
	}
	var failover time.Duration
	for failover == 0 {
		if time.Since(killed) > 30*time.Second {
			cl := goredis.NewClient(&goredis.Options{Addr: live[0].Addr()})
			nodes, _ := cl.ClusterNodes(ctx).Result()
			cl.Close()
			t.Fatalf("the cluster did not fail over within 30s (victim %s, slots %v):\n%s", victimAddr, ranges, nodes)
		}
		cl := goredis.NewClient(&goredis.Options{Addr: live[0].Addr()})
		got, err := cl.ClusterSlots(ctx).Result()
		cl.Close()
		if err == nil {
			for _, s := range got {
				if s.Start == ranges[0][0] && s.Nodes[0].Addr != victimAddr {
					failover = time.Since(killed)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Recovery: a write to the victim's slots that started after the kill
	// succeeded, within the failover plus a margin.
	w.recover(t, "cluster failover", " to the dead master's slots", " to its slots", killed, failover, stop, wg)
}

// settleDials waits, after the test's clients are closed, for go-redis's
// background dialler of a dead node to notice (it sleeps 1s between dials),
// so that the leak check after the tests does not count it.
func settleDials(t *testing.T) {
	t.Cleanup(func() { time.Sleep(1500 * time.Millisecond) })
}

// TestRedisTopologyClusterReshard migrates 10 slots between masters, key
// by key (CLUSTER SETSLOT MIGRATING/IMPORTING, MIGRATE in batches of 3), under
// GetMany/SetMany/Delete load on keys of those slots: no MOVED, ASK or
// TRYAGAIN reaches a caller, and every value read is one written to its key.
func TestRedisTopologyClusterReshard(t *testing.T) {
	settleDials(t)
	tc := startTopoCluster(t)
	ctx := context.Background()
	const ns = "topo-reshard"
	c, err := cachekit.Open(ctx, "redis+cluster://"+strings.Join(tc.addrs, ",")+"?namespace="+ns)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	admin := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: tc.addrs})
	defer admin.Close()
	slots, err := admin.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	src, dst := slots[0], slots[1]
	srcAddr, dstAddr := src.Nodes[0].Addr, dst.Nodes[0].Addr
	srcID, dstID := src.Nodes[0].ID, dst.Nodes[0].ID

	// Keys of 10 distinct slots of the source master, 40 keys each.
	var keys []string
	var moving []int
	for i := 0; len(moving) < 10; i++ {
		tag := "t" + strconv.Itoa(i)
		s := int(keySlot(ns + ":{" + tag + "}"))
		if s < src.Start || s > src.End || slices.Contains(moving, s) {
			continue
		}
		moving = append(moving, s)
		for j := range 40 {
			keys = append(keys, fmt.Sprintf("{%s}k%d", tag, j))
		}
	}
	initial := map[string][]byte{}
	for _, k := range keys {
		initial[k] = []byte(k + "=0")
	}
	if err := c.SetMany(ctx, initial, 0); err != nil {
		t.Fatal(err)
	}

	var lat latencies
	var phase atomic.Int32
	var redirects, wrong atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			pick := func(m int) []string {
				out := make([]string, m)
				for i := range out {
					out[i] = keys[(g*7919+n*31+i*127)%len(keys)]
				}
				return out
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				n++
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				start := time.Now()
				var err error
				switch n % 3 {
				case 0:
					var got map[string][]byte
					got, err = c.GetMany(ctx, pick(16))
					for k, v := range got {
						if !strings.HasPrefix(string(v), k+"=") {
							wrong.Add(1)
						}
					}
				case 1:
					items := map[string][]byte{}
					for _, k := range pick(8) {
						items[k] = []byte(k + "=" + strconv.Itoa(n))
					}
					err = c.SetMany(ctx, items, 0)
				default:
					_, err = c.Delete(ctx, pick(2)...)
				}
				cancel()
				lat.add(int(phase.Load()), time.Since(start), err)
				if err != nil {
					if msg := err.Error(); strings.Contains(msg, "TRYAGAIN") || strings.Contains(msg, "MOVED") || strings.Contains(msg, "ASK") {
						redirects.Add(1)
					}
				}
			}
		}()
	}
	time.Sleep(time.Second)
	phase.Store(1)
	srcNode := goredis.NewClient(&goredis.Options{Addr: srcAddr})
	defer srcNode.Close()
	dstNode := goredis.NewClient(&goredis.Options{Addr: dstAddr})
	defer dstNode.Close()
	dstHost, dstPortText, _ := net.SplitHostPort(dstAddr)
	dstPort, _ := strconv.Atoi(dstPortText)
	began := time.Now()
	for _, s := range moving {
		if err := dstNode.Do(ctx, "cluster", "setslot", s, "importing", srcID).Err(); err != nil {
			t.Fatal(err)
		}
		if err := srcNode.Do(ctx, "cluster", "setslot", s, "migrating", dstID).Err(); err != nil {
			t.Fatal(err)
		}
		for {
			batch, err := srcNode.ClusterGetKeysInSlot(ctx, s, 3).Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(batch) == 0 {
				break
			}
			args := []any{"migrate", dstHost, dstPort, "", 0, 5000, "keys"}
			for _, k := range batch {
				args = append(args, k)
			}
			if err := srcNode.Do(ctx, args...).Err(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond) // the slot stays split a while
		}
		for _, n := range []*goredis.Client{dstNode, srcNode} {
			if err := n.Do(ctx, "cluster", "setslot", s, "node", dstID).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	moved := time.Since(began)
	phase.Store(2)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	lat.report(t, "cluster reshard")
	t.Logf("cluster reshard: %d slots (%d keys) moved in %v; redirect errors seen by callers %d; wrong values %d",
		len(moving), len(keys), moved.Round(time.Millisecond), redirects.Load(), wrong.Load())
	if redirects.Load() != 0 {
		t.Errorf("%d calls failed with MOVED/ASK/TRYAGAIN", redirects.Load())
	}
	if wrong.Load() != 0 {
		t.Errorf("%d wrong values", wrong.Load())
	}
	// Every key of the moved slots is now on the destination.
	got, err := c.GetMany(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range got {
		if !strings.HasPrefix(string(v), k+"=") {
			t.Errorf("wrong value for %s: %q", k, v)
		}
	}
}

// TestRedisTopologyClusterMasterFrozen freezes (SIGSTOP) one master of a
// 6-node cluster under load from a redis+cluster:// cache with default
// parameters (one circuit breaker per master, 1s timeout; callers give 2s):
// calls for the other masters' keys keep succeeding (at least 99% of them,
// single-key and GetMany alike) while the frozen master's breaker opens and
// its keys fail fast with ErrUnavailable, until the cluster promotes its
// replica; no call overruns the cache's 1s timeout by more than 2s. With one
// breaker for the whole client, the frozen master's timeouts opened it for
// every key.
//
// The cluster runs with cluster-require-full-coverage no: with the default
// (yes), Redis itself answers CLUSTERDOWN for every key, on every master,
// from the moment the frozen master is marked failed until its replica is
// promoted (measured: 16% of GetManys on the healthy masters failed so).
func TestRedisTopologyClusterMasterFrozen(t *testing.T) {
	settleDials(t)
	tc := startTopoCluster(t, "--cluster-require-full-coverage", "no")
	ctx := context.Background()
	const ns = "topo-frozen"
	c, err := cachekit.Open(ctx, "redis+cluster://"+strings.Join(tc.addrs, ",")+"?namespace="+ns)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	admin := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: tc.addrs})
	defer admin.Close()

	// 300 keys; the victim is the master of the first one's slot.
	keys := make([]string, 300)
	masterOf := map[string]string{}
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
		m, err := admin.MasterForKey(ctx, ns+":"+keys[i])
		if err != nil {
			t.Fatal(err)
		}
		masterOf[keys[i]] = m.Options().Addr
	}
	victimAddr := masterOf[keys[0]]
	victim := tc.node(victimAddr)
	if victim == nil {
		t.Fatalf("no node %s", victimAddr)
	}
	var healthy []string
	healthyMasters := map[string]bool{}
	for _, k := range keys {
		if masterOf[k] != victimAddr {
			healthy = append(healthy, k)
			healthyMasters[masterOf[k]] = true
		}
	}
	if len(healthyMasters) != 2 {
		t.Fatalf("the healthy keys are on %d masters; want 2", len(healthyMasters))
	}
	for _, k := range keys {
		if err := c.Set(ctx, k, []byte(k), 0); err != nil {
			t.Fatal(err)
		}
	}
	// Every master's replica has them (replication is asynchronous, and a
	// replica of a new cluster may still be syncing).
	var waitMu sync.Mutex
	replicated := map[string]int64{}
	if err := admin.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
		n, err := m.Wait(ctx, 1, 10*time.Second).Result()
		waitMu.Lock()
		replicated[m.Options().Addr] = n
		waitMu.Unlock()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("replicas acknowledging the initial writes, per master: %v", replicated)

	// Outcomes by phase (0 before the freeze, 1 frozen, 2 after the thaw)
	// and by the key's master (victim or healthy).
	type tally struct {
		ops, errs, unavailable int
		lat                    []time.Duration
		sample                 []string // the first errors other than ErrUnavailable
	}
	var (
		mu     sync.Mutex
		stats  [3][2]tally // [phase][0: healthy, 1: victim]
		phase  atomic.Int32
		hung   atomic.Int64
		wrong  atomic.Int64
		multi  [3]tally     // GetMany over healthy keys of both healthy masters
		frozen atomic.Int64 // unix nanos of the freeze
		back   atomic.Int64 // first success on the frozen master's keys after it, nanos since the freeze
		stop   = make(chan struct{})
		wg     sync.WaitGroup
		record = func(tl *tally, d time.Duration, err error) {
			mu.Lock()
			defer mu.Unlock()
			tl.ops++
			tl.lat = append(tl.lat, d)
			if err != nil {
				tl.errs++
				if errors.Is(err, cachekit.ErrUnavailable) {
					tl.unavailable++
				} else if len(tl.sample) < 3 {
					tl.sample = append(tl.sample, err.Error())
				}
			}
		}
	)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := g; ; n += 8 {
				select {
				case <-stop:
					return
				default:
				}
				k := keys[n%len(keys)]
				// Longer than the cache's Timeout: the timeouts are the
				// cache's own, which count against the breaker (a
				// caller's own deadline never does).
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				start := time.Now()
				var err error
				if n%2 == 0 {
					var v []byte
					v, err = c.Get(ctx, k)
					if err == nil && string(v) != k {
						wrong.Add(1)
					}
				} else {
					err = c.Set(ctx, k, []byte(k), 0)
				}
				d := time.Since(start)
				cancel()
				if d > 3*time.Second {
					hung.Add(1)
				}
				side := 0
				if masterOf[k] == victimAddr {
					side = 1
				}
				p := phase.Load()
				record(&stats[p][side], d, err)
				if f := frozen.Load(); err == nil && side == 1 && f != 0 && start.UnixNano() > f {
					back.CompareAndSwap(0, time.Now().UnixNano()-f)
				}
				if err != nil {
					time.Sleep(2 * time.Millisecond)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			pick := make([]string, 16)
			for i := range pick {
				pick[i] = healthy[(n*16+i)%len(healthy)]
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			start := time.Now()
			got, err := c.GetMany(ctx, pick)
			d := time.Since(start)
			cancel()
			if d > 3*time.Second {
				hung.Add(1)
			}
			for k, v := range got {
				if string(v) != k {
					wrong.Add(1)
				}
			}
			record(&multi[phase.Load()], d, err)
		}
	}()

	time.Sleep(1500 * time.Millisecond)
	victim.Freeze()
	phase.Store(1)
	frozenAt := time.Now()
	frozen.Store(frozenAt.UnixNano())
	// The cluster's own failover: a healthy master's slot map names a new
	// master for the victim's first key.
	var failover time.Duration
	var witness string
	for addr := range healthyMasters {
		witness = addr
	}
	victimSlot := int(keySlot(ns + ":" + keys[0]))
	for failover == 0 && time.Since(frozenAt) < 15*time.Second {
		cl := goredis.NewClient(&goredis.Options{Addr: witness})
		got, err := cl.ClusterSlots(ctx).Result()
		cl.Close()
		for _, s := range got {
			if err == nil && s.Start <= victimSlot && victimSlot <= s.End && s.Nodes[0].Addr != victimAddr {
				failover = time.Since(frozenAt)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(max(0, 6*time.Second-time.Since(frozenAt)))
	victim.Thaw()
	phase.Store(2)
	thawed := time.Since(frozenAt)
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	// What the cache reads now, 3s after the thaw.
	missing := 0
	for _, k := range keys {
		if _, err := c.Get(ctx, k); errors.Is(err, cachekit.ErrNotFound) {
			missing++
		}
	}

	mu.Lock()
	defer mu.Unlock()
	t.Logf("cluster master frozen: keys missing at the end %d of %d", missing, len(keys))
	names := [3]string{"before", "frozen", "after"}
	for p := range 3 {
		for side, name := range []string{"other masters' keys", "frozen master's keys"} {
			tl := stats[p][side]
			t.Logf("cluster master frozen, %s, %s: %d ops, %d errors (%d ErrUnavailable), p99 %v; sample %q",
				names[p], name, tl.ops, tl.errs, tl.unavailable, p99(tl.lat).Round(10*time.Microsecond), tl.sample)
		}
		t.Logf("cluster master frozen, %s, GetMany of 16 keys on the other masters: %d ops, %d errors, p99 %v; sample %q",
			names[p], multi[p].ops, multi[p].errs, p99(multi[p].lat).Round(10*time.Microsecond), multi[p].sample)
	}
	t.Logf("cluster master frozen for %v; replica promoted after %v (0: not seen); first success on its keys %v after the freeze (0: none); hung ops %d; wrong values %d",
		thawed.Round(time.Millisecond), failover.Round(time.Millisecond), time.Duration(back.Load()).Round(time.Millisecond), hung.Load(), wrong.Load())

	okRatio := func(tl tally) float64 { return float64(tl.ops-tl.errs) / float64(max(tl.ops, 1)) }
	if h := stats[1][0]; h.ops < 100 || okRatio(h) < 0.99 {
		t.Errorf("while a master was frozen, %d of %d calls for the other masters' keys failed; want at least 100 calls and 99%% success", h.errs, h.ops)
	}
	if m := multi[1]; m.ops < 10 || okRatio(m) < 0.99 {
		t.Errorf("while a master was frozen, %d of %d GetManys over the other masters' keys failed; want at least 10 and 99%% success", m.errs, m.ops)
	}
	if stats[1][1].unavailable == 0 {
		t.Errorf("no call for the frozen master's keys failed fast with ErrUnavailable (%d calls, %d errors): its breaker never opened", stats[1][1].ops, stats[1][1].errs)
	}
	if stats[1][0].unavailable != 0 {
		t.Errorf("%d calls for the other masters' keys got ErrUnavailable", stats[1][0].unavailable)
	}
	if hung.Load() != 0 {
		t.Errorf("%d calls overran the cache's 1s timeout by more than 2s", hung.Load())
	}
	if wrong.Load() != 0 {
		t.Errorf("%d wrong values", wrong.Load())
	}
	if missing != 0 {
		t.Errorf("%d keys acknowledged by a replica before the freeze are missing", missing)
	}
}

// keySlot is the Redis Cluster hash slot of key (CLUSTER KEYSLOT).
func keySlot(key string) uint16 {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

// startSentinel runs redis-server in Sentinel mode on a free port, watching
// master as "mymaster" (quorum 2, down after 1s). t's cleanup kills it.
func startSentinel(t *testing.T, masterAddr string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		skipOrFail(t, "redis-server not installed (Debian package redis-server)")
	}
	host, port, _ := net.SplitHostPort(masterAddr)
	for attempt := 0; ; attempt++ {
		p := freeTCPPort(t)
		dir := t.TempDir()
		conf := dir + "/sentinel.conf"
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster %s %s 2\n"+
			"sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 10000\n", p, dir, host, port)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, conf, "--sentinel")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		t.Cleanup(func() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			_ = cmd.Wait()
		})
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		c := goredis.NewClient(&goredis.Options{Addr: addr})
		for range 100 {
			if c.Ping(context.Background()).Err() == nil {
				c.Close()
				return addr
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
		if attempt == 4 {
			t.Fatalf("sentinel on %s did not answer", addr)
		}
	}
}

// TestRedisTopologySentinelFailover kills the master of a master, a replica
// and 3 Sentinels under write load: writes through a redis+sentinel:// cache
// resume within the Sentinels' failover plus a margin; no value read back
// is wrong.
func TestRedisTopologySentinelFailover(t *testing.T) {
	settleDials(t)
	ctx := context.Background()
	master := testserver.StartRedis(t)
	mhost, mport, _ := net.SplitHostPort(master.Addr())
	replica := testserver.StartRedis(t, "--replicaof", mhost, mport)
	var sentinels []string
	for range 3 {
		sentinels = append(sentinels, startSentinel(t, master.Addr()))
	}
	// Ready: the replica is in sync and every Sentinel knows the replica
	// and the two other Sentinels.
	deadline := time.Now().Add(30 * time.Second)
	rc := goredis.NewClient(&goredis.Options{Addr: replica.Addr()})
	defer rc.Close()
	for {
		info, _ := rc.Info(ctx, "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not in sync: %s", info)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, s := range sentinels {
		sc := goredis.NewSentinelClient(&goredis.Options{Addr: s})
		for {
			m, err := sc.Master(ctx, "mymaster").Result()
			reps, _ := sc.Replicas(ctx, "mymaster").Result()
			if err == nil && m["num-other-sentinels"] == "2" && len(reps) == 1 {
				break
			}
			if time.Now().After(deadline) {
				sc.Close()
				t.Fatalf("sentinel %s not ready: %v %v", s, m, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		sc.Close()
	}

	c, err := cachekit.Open(ctx, "redis+sentinel://"+strings.Join(sentinels, ",")+"?master_name=mymaster&namespace=topo-sentinel")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := &writeLoad{c: c}
	stop := make(chan struct{})
	wg := w.run(stop, 64)
	time.Sleep(2 * time.Second)
	w.mu.Lock()
	w.longest = 0
	w.mu.Unlock()
	w.phase.Store(1)
	master.Kill() // returns once the process is gone and its port refuses
	killed := time.Now()
	w.eventAt.Store(killed.UnixNano())

	sc := goredis.NewSentinelClient(&goredis.Options{Addr: sentinels[0]})
	defer sc.Close()
	var failover time.Duration
	for failover == 0 {
		if time.Since(killed) > 30*time.Second {
			close(stop)
			wg.Wait()
			t.Fatal("the Sentinels did not fail over within 30s")
		}
		if a, err := sc.GetMasterAddrByName(ctx, "mymaster").Result(); err == nil && net.JoinHostPort(a[0], a[1]) == replica.Addr() {
			failover = time.Since(killed)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.recover(t, "sentinel failover", "", "", killed, failover, stop, wg)
}
