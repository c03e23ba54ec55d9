package redis

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/cachetest"
	"github.com/cachekit/cachekit/internal/faultproxy"
	"github.com/cachekit/cachekit/internal/testpeer"
	"github.com/cachekit/cachekit/internal/testserver"
)

const apTestValueLimit = 1 << 20

// batchCounter is a go-redis hook counting pipelines and the commands in
// the largest one.
type batchCounter struct {
	pipelines atomic.Int64
	largest   atomic.Int64
}

func (h *batchCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *batchCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return next
}
func (h *batchCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.pipelines.Add(1)
		for {
			l := h.largest.Load()
			if int64(len(cmds)) <= l || h.largest.CompareAndSwap(l, int64(len(cmds))) {
				break
			}
		}
		return next(ctx, cmds)
	}
}

// apCache returns a cache with auto-pipelining over cl; always makes it
// pipeline lone callers too, so that sequential tests take that path.
func apCache(cl goredis.UniversalClient, opts Options, always bool) *Cache {
	opts.AutoPipeline = true
	c := New(cl, &opts)
	c.apAlways = always
	return c
}

// TestConformanceAutoPipeline runs the conformance suite with AutoPipeline
// on: as configured (lone callers direct, concurrent ones pipelined), with
// every call pipelined, over a client without ContextTimeoutEnabled, and
// through a URL with auto_pipeline=true.
func TestConformanceAutoPipeline(t *testing.T) {
	srv := testserver.StartRedis(t)
	aware := realClient(t, srv.Addr(), &goredis.Options{ContextTimeoutEnabled: true, ReadTimeout: 2 * time.Second})
	unaware := realClient(t, srv.Addr(), &goredis.Options{ReadTimeout: 2 * time.Second})
	suite := &cachetest.Options{MaxValueSize: apTestValueLimit}
	for _, tc := range []struct {
		name   string
		cl     goredis.UniversalClient
		always bool
	}{
		{"adaptive", aware, false},
		{"always", aware, true},
		{"always-without-ContextTimeoutEnabled", unaware, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
				c := apCache(tc.cl, Options{Namespace: ns, MaxValueSize: apTestValueLimit}, tc.always)
				if c.ap == nil {
					t.Fatal("AutoPipeline on a *goredis.Client: no pipeliner")
				}
				return c
			}, suite)
		})
	}
	t.Run("URL", func(t *testing.T) {
		cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
			c, err := cachekit.Open(context.Background(), "redis://"+srv.Addr()+"/0?auto_pipeline=true&max_value_size=1MiB&namespace="+url.QueryEscape(ns))
			if err != nil {
				t.Fatal(err)
			}
			if c.(*Cache).ap == nil {
				t.Fatal("auto_pipeline=true: no pipeliner")
			}
			return c
		}, suite)
	})
}

// startCluster starts a one-node Redis Cluster holding every slot.
func startCluster(t *testing.T) string {
	t.Helper()
	srv := testserver.StartRedis(t, "--cluster-enabled", "yes")
	admin := realClient(t, srv.Addr(), nil)
	ctx := context.Background()
	if err := admin.Do(ctx, "cluster", "addslotsrange", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		info, err := admin.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return srv.Addr()
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster never became ok: %q, %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConformanceAutoPipelineCluster: the suite on a ClusterClient with
// AutoPipeline on (a one-node cluster: every slot on one master).
func TestConformanceAutoPipelineCluster(t *testing.T) {
	addr := startCluster(t)
	cl := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true, ReadTimeout: 2 * time.Second})
	t.Cleanup(func() { cl.Close() })
	for _, always := range []bool{false, true} {
		t.Run(fmt.Sprintf("always=%v", always), func(t *testing.T) {
			cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
				c := apCache(cl, Options{Namespace: ns, MaxValueSize: apTestValueLimit}, always)
				if c.ap == nil {
					t.Fatal("AutoPipeline on a *goredis.ClusterClient: no pipeliner")
				}
				return c
			}, &cachetest.Options{MaxValueSize: apTestValueLimit})
		})
	}
}

// TestAutoPipelineFallsBack: a Ring has no AutoPipeliner; the option then
// changes nothing.
func TestAutoPipelineFallsBack(t *testing.T) {
	srv := testserver.StartRedis(t)
	rg := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"a": srv.Addr()}, ContextTimeoutEnabled: true})
	defer rg.Close()
	c := New(rg, &Options{AutoPipeline: true, Namespace: "ring"})
	if c.ap != nil {
		t.Fatal("a Ring got a pipeliner")
	}
	ctx := context.Background()
	if err := c.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("Get: %q, %v", v, err)
	}
	// Many caches on one client install one guard hook.
	cl := realClient(t, srv.Addr(), &goredis.Options{ContextTimeoutEnabled: true})
	for range 20 {
		New(cl, &Options{AutoPipeline: true})
	}
	n := 0
	guardedClients.Range(func(k, _ any) bool {
		if wp, ok := k.(interface{ Value() *goredis.Client }); ok && wp.Value() == cl {
			n++
		}
		return true
	})
	if n != 1 {
		t.Fatalf("client registered %d times; want once", n)
	}
}

// TestAutoPipelineCoalesces: concurrent callers' commands share pipelines,
// and each goroutine sees its own writes in order.
func TestAutoPipelineCoalesces(t *testing.T) {
	srv := testserver.StartRedis(t)
	cl := realClient(t, srv.Addr(), &goredis.Options{ContextTimeoutEnabled: true})
	batches := &batchCounter{}
	cl.AddHook(batches)
	c := apCache(cl, Options{Namespace: "co"}, false)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := "k" + strconv.Itoa(g)
			for i := range 100 {
				v := []byte(strconv.Itoa(i))
				if err := c.Set(ctx, key, v, time.Minute); err != nil {
					t.Error(err)
					return
				}
				got, err := c.Get(ctx, key)
				if err != nil || string(got) != string(v) {
					t.Errorf("goroutine %d: Get after Set(%s) = %q, %v", g, v, got, err)
					return
				}
				n, err := c.Increment(ctx, "ctr"+strconv.Itoa(g), 1)
				if err != nil || n != int64(i+1) {
					t.Errorf("goroutine %d: Increment = %d, %v; want %d", g, n, err, i+1)
					return
				}
			}
		}()
	}
	wg.Wait()
	if batches.largest.Load() < 2 {
		t.Fatalf("largest pipeline: %d commands; want concurrent calls coalesced", batches.largest.Load())
	}
	// Multi-key operations stay one command.
	m, err := c.GetMany(ctx, []string{"k1", "k2", "nope"})
	if err != nil || len(m) != 2 {
		t.Fatalf("GetMany: %v, %v", m, err)
	}
	if n, err := c.Delete(ctx, "k1", "k2", "nope"); err != nil || n != 2 {
		t.Fatalf("Delete: %d, %v", n, err)
	}
}

// TestAutoPipelineNothingSentAfterDeadline: a command whose context ends
// while it waits in the pipeliner's queue is never written, and its caller
// learns that (the outcome is known); one that was written reports
// ErrUnknownOutcome, and later writes wait for it.
func TestAutoPipelineNothingSentAfterDeadline(t *testing.T) {
	srv := testserver.StartRedis(t)
	admin := realClient(t, srv.Addr(), nil)
	proxy := faultproxy.Start(t, srv.Addr())
	cl := realClient(t, proxy.Addr(), &goredis.Options{ContextTimeoutEnabled: true, ReadTimeout: 3 * time.Second, Protocol: 2, DisableIdentity: true})
	c := apCache(cl, Options{Namespace: "late", BreakerThreshold: -1}, true)
	// Added after the cache's guard hook, so it is inside it: it counts
	// what the guard lets through to the connection.
	counter := &commandCounter{}
	cl.AddHook(counter)
	ctx := context.Background()
	if err := c.Set(ctx, "warm", []byte("x"), 0); err != nil { // a connection, ready
		t.Fatal(err)
	}

	proxy.SetDelay(400 * time.Millisecond)
	// A read holds the pipeliner's one batch slot for 800ms.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := c.Get(short, "warm")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delayed Get: %v; want DeadlineExceeded", err)
	}
	// A write queued behind it, whose context ends first: never sent.
	sent := counter.n.Load()
	short, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
	err = c.Set(short, "queued", []byte("v"), 0)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, cachekit.ErrUnknownOutcome) {
		t.Fatalf("Set queued past its deadline: %v; want DeadlineExceeded with a known outcome", err)
	}
	proxy.SetDelay(0)
	long, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// The slot frees; a later call flows again, and the queued write was
	// dropped, not sent.
	if _, err := c.Exists(long, "warm"); err != nil {
		t.Fatal(err)
	}
	if n, _ := admin.Exists(ctx, "late:queued").Result(); n != 0 {
		t.Fatal("a write whose context ended in the queue reached the server")
	}
	if got := counter.n.Load() - sent; got != 1 {
		t.Fatalf("%d commands reached the client's connection after the queued write; want 1 (the Exists)", got)
	}

	// A written write whose reply is late: ErrUnknownOutcome, and a later
	// write of the same cache lands after it, never before.
	proxy.SetDelay(400 * time.Millisecond)
	short, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
	err = c.Set(short, "k", []byte("v1"), 0)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, cachekit.ErrUnknownOutcome) {
		t.Fatalf("Set(v1) past its deadline: %v; want DeadlineExceeded and ErrUnknownOutcome", err)
	}
	proxy.SetDelay(0)
	if err := c.Set(long, "k", []byte("v2"), 0); err != nil {
		t.Fatalf("Set(v2): %v", err)
	}
	time.Sleep(900 * time.Millisecond) // past v1's delays
	if v, err := admin.Get(ctx, "late:k").Result(); err != nil || v != "v2" {
		t.Fatalf("after Set(v1) failed and Set(v2) succeeded: %q, %v; want v2", v, err)
	}
}

// TestAutoPipelineLostReplyIsNeverResent: pipelined writes keep their
// no-resend marking, on a client with go-redis's default MaxRetries too.
func TestAutoPipelineLostReplyIsNeverResent(t *testing.T) {
	srv := testserver.StartRedis(t)
	admin := realClient(t, srv.Addr(), nil)
	proxy := faultproxy.Start(t, srv.Addr())
	ctx := context.Background()
	opened, err := cachekit.Open(ctx, "redis://"+proxy.Addr()+"/0?namespace=url&breaker_threshold=0&auto_pipeline=true")
	if err != nil {
		t.Fatal(err)
	}
	defer opened.Close()
	opened.(*Cache).apAlways = true
	caches := map[string]*Cache{
		"New(default MaxRetries)": apCache(realClient(t, proxy.Addr(), &goredis.Options{ContextTimeoutEnabled: true}),
			Options{Namespace: "new", BreakerThreshold: -1}, true),
		"Open": opened.(*Cache),
	}
	for name, c := range caches {
		t.Run(name, func(t *testing.T) {
			ns := c.prefix
			drop := func() {
				t.Helper()
				if _, err := c.Exists(ctx, "warm-up"); err != nil {
					t.Fatal(err)
				}
				proxy.DropNextReply()
			}
			if _, err := c.Increment(ctx, "ctr", 10); err != nil {
				t.Fatal(err)
			}
			drop()
			_, err := c.Increment(ctx, "ctr", 1)
			if !errors.Is(err, cachekit.ErrUnknownOutcome) || !proxy.ReplyDropped() {
				t.Fatalf("Increment with its reply lost: %v; want ErrUnknownOutcome", err)
			}
			if v, _ := admin.Get(ctx, ns+"ctr").Result(); v != "11" {
				t.Fatalf("counter after one lost Increment: %s; want 11 (applied once)", v)
			}
			drop()
			err = c.Add(ctx, "lease", []byte("mine"), time.Minute)
			if errors.Is(err, cachekit.ErrExists) || !errors.Is(err, cachekit.ErrUnknownOutcome) {
				t.Fatalf("Add with its reply lost: %v; want ErrUnknownOutcome", err)
			}
			// A read whose reply is lost is read again.
			drop()
			if v, err := c.Get(ctx, "lease"); err != nil || string(v) != "mine" {
				t.Fatalf("Get with its first reply lost: %q, %v; want it retried", v, err)
			}
		})
	}
}

// TestAutoPipelineBreaker: pipelined calls that time out count against the
// breaker like direct ones; the caller's own deadline does not.
func TestAutoPipelineBreaker(t *testing.T) {
	hole := testpeer.NewBlackhole(t)
	counter := &commandCounter{}
	cl := newClient(t, &goredis.Options{Addr: hole.Addr(), ContextTimeoutEnabled: true, ReadTimeout: 300 * time.Millisecond})
	cl.AddHook(counter)
	c := apCache(cl, Options{Timeout: 40 * time.Millisecond, BreakerThreshold: 2, BreakerDuration: time.Hour}, true)
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		_, err := c.Get(ctx, "k")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, cachekit.ErrUnavailable) {
			t.Fatalf("Get %d with the caller's deadline: %v; want DeadlineExceeded, breaker closed", i, err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := c.Set(context.Background(), "k", []byte("v"), 0); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Set %d with the cache's timeout: %v", i, err)
		}
	}
	sent := counter.n.Load()
	_, err := c.Get(context.Background(), "k")
	if !errors.Is(err, cachekit.ErrUnavailable) {
		t.Fatalf("after 2 own timeouts: %v; want ErrUnavailable", err)
	}
	if counter.n.Load() != sent {
		t.Fatal("a call the breaker refused reached the client")
	}
}

func TestParseURLAutoPipeline(t *testing.T) {
	for raw, want := range map[string]bool{
		"redis://h/0":                         false,
		"redis://h/0?auto_pipeline=true":      true,
		"redis://h/0?auto_pipeline=false":     false,
		"redis+cluster://a,b?auto_pipeline=1": true,
	} {
		cfg, err := parseURL(mustParse(t, raw))
		if err != nil || cfg.opts.AutoPipeline != want {
			t.Errorf("%s: AutoPipeline %v, %v; want %v", raw, cfg.opts.AutoPipeline, err, want)
		}
	}
	if _, err := parseURL(mustParse(t, "redis://h/0?auto_pipeline=maybe")); !errors.Is(err, cachekit.ErrInvalidURL) {
		t.Errorf("auto_pipeline=maybe: %v; want ErrInvalidURL", err)
	}
}

// TestAutoPipelineTimeoutWithoutCancel: callers whose context can never be
// cancelled wait for their batch alone; the batch then carries their
// deadline (the cache's Timeout) to the socket, so they return at the
// timeout and not at the client's much longer read timeout.
func TestAutoPipelineTimeoutWithoutCancel(t *testing.T) {
	hole := testpeer.NewBlackhole(t)
	const readTimeout = 30 * time.Second
	cl := newClient(t, &goredis.Options{Addr: hole.Addr(), ContextTimeoutEnabled: true, ReadTimeout: readTimeout})
	c := apCache(cl, Options{Timeout: 50 * time.Millisecond, BreakerThreshold: -1}, true)
	ctx := context.WithValue(context.Background(), ctxKey{}, "v") // values, but no Done
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				_, errs[i] = c.Get(ctx, "k"+strconv.Itoa(i))
			} else {
				errs[i] = c.Set(ctx, "k"+strconv.Itoa(i), []byte("v"), 0)
			}
		}()
	}
	wg.Wait()
	if took := time.Since(start); took >= readTimeout/2 {
		t.Fatalf("calls took %v: the batch did not get the cache's 50ms timeout", took)
	}
	for i, err := range errs {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("call %d: %v; want DeadlineExceeded", i, err)
		}
		var ns *notSentError
		if errors.As(err, &ns) {
			t.Errorf("call %d: %v; the cache's own marker leaked", i, err)
		}
	}
}

// TestGuardClaim: a queued command goes out once; one whose context ended,
// whose bounded deadline passed, or whose caller gave up never does.
func TestGuardClaim(t *testing.T) {
	now := time.Now()
	live := &guard{ctx: context.Background()}
	if !live.claim(now) || !live.claim(now) {
		t.Fatal("a live command was not claimed, or not idempotently")
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	g := &guard{ctx: ended}
	if g.claim(now) || !errors.Is(g.dropErr(), context.Canceled) {
		t.Fatalf("a command whose context ended was claimed (%v)", g.dropErr())
	}
	// The deadline has passed, its context's timer has not fired yet.
	g = &guard{ctx: pastDeadline{Context: context.Background(), deadline: now.Add(-time.Millisecond)}, bounded: true}
	if g.claim(now) || !errors.Is(g.dropErr(), context.DeadlineExceeded) {
		t.Fatalf("a bounded command past its deadline was claimed (%v)", g.dropErr())
	}
	var ns *notSentError
	if err := g.dropErr(); !errors.As(err, &ns) || !isServerError(err) {
		t.Fatalf("dropErr %T: want the notSentError go-redis takes for a reply", err)
	}
	// A caller that gave up first wins over the hook.
	g = &guard{ctx: context.Background()}
	g.state.CompareAndSwap(cmdQueued, cmdDropped)
	if g.claim(now) {
		t.Fatal("a command its caller gave up on was claimed")
	}
}

// TestGuardClaimBounded: a bounded command is claimed while its deadline
// lies ahead, never once it has passed (even if its context's timer has not
// fired yet), and a claim, once made, stands: the command may be on the
// wire by then.
func TestGuardClaimBounded(t *testing.T) {
	now := time.Now()
	dl := now.Add(time.Second)
	live := &guard{ctx: pastDeadline{Context: context.Background(), deadline: dl}, bounded: true}
	if got, ok := live.claimBounded(now); !ok || !got.Equal(dl) {
		t.Fatalf("a bounded command before its deadline: claimed %v, deadline %v; want claimed, %v", ok, got, dl)
	}
	if _, ok := live.claimBounded(dl.Add(time.Millisecond)); !ok {
		t.Fatal("a claimed command was dropped by a later pass, after its deadline")
	}
	late := &guard{ctx: pastDeadline{Context: context.Background(), deadline: now.Add(-time.Millisecond)}, bounded: true}
	for range 2 {
		if _, ok := late.claimBounded(now); ok {
			t.Fatal("a bounded command past its deadline was claimed")
		}
	}
	if !errors.Is(late.dropErr(), context.DeadlineExceeded) {
		t.Fatalf("dropErr: %v; want DeadlineExceeded", late.dropErr())
	}
	ended, cancel := context.WithDeadline(context.Background(), now.Add(time.Hour))
	cancel()
	g := &guard{ctx: ended, bounded: true}
	if _, ok := g.claimBounded(now); ok || !errors.Is(g.dropErr(), context.Canceled) {
		t.Fatalf("a bounded command whose context ended was claimed (%v)", g.dropErr())
	}
}

// TestGuardHookBatch: the guard hook hands the connection only the
// commands that may still go (a bounded command past its deadline, or one
// whose context has ended, is dropped unsent with its context's error), gives the
// batch the earliest deadline of its bounded commands, and marks the
// commands of callers on the deferred face done once the batch has run.
func TestGuardHookBatch(t *testing.T) {
	cl := newClient(t, &goredis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	c := New(cl, &Options{AutoPipeline: true})
	if c.ap == nil {
		t.Fatal("no pipeliner")
	}
	now := time.Now()
	bounded := func(key string, dl time.Time) *guardedGet {
		_, w := c.newGet(context.Background(), key)
		return c.guardFor(pastDeadline{Context: context.Background(), deadline: dl}, w, true).(*guardedGet)
	}
	early, later := now.Add(time.Minute), now.Add(time.Hour)
	b1 := bounded("b1", later)
	b2 := bounded("b2", early)
	expired := bounded("expired", now.Add(-time.Millisecond))
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	_, w := c.newGet(ended, "ended")
	gone := c.guardFor(ended, w, false).(*guardedGet)
	_, w = c.newGet(context.Background(), "waited")
	waited := c.guardFor(context.Background(), w, false).(*guardedGet)
	other := goredis.NewStringCmd(context.Background(), "get", "not-the-cache's")
	for _, g := range []*guardedGet{b1, b2, expired} {
		if !g.bounded {
			t.Fatal("a command of a caller whose context cannot be cancelled is not bounded")
		}
	}

	var sent []goredis.Cmder
	var batchDeadline time.Time
	hook := guardHook{}.ProcessPipelineHook(func(ctx context.Context, cmds []goredis.Cmder) error {
		sent = cmds
		batchDeadline, _ = ctx.Deadline()
		return nil
	})
	batch := []goredis.Cmder{b1, expired, other, gone, b2, waited}
	if err := hook(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	want := []goredis.Cmder{b1, other, b2, waited}
	if len(sent) != len(want) {
		t.Fatalf("%d commands sent; want %d (%v)", len(sent), len(want), sent)
	}
	for i := range want {
		if sent[i] != want[i] {
			t.Fatalf("command %d sent: %v; want %v", i, sent[i], want[i])
		}
	}
	if !batchDeadline.Equal(early) {
		t.Fatalf("batch deadline %v; want the earliest bounded one, %v", batchDeadline, early)
	}
	if err := expired.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired command: %v; want DeadlineExceeded", err)
	}
	if err := gone.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("command whose context ended: %v; want Canceled", err)
	}
	if waited.state.Load() != cmdDone {
		t.Fatal("a deferred-face command was not marked done after its batch")
	}
}

// TestGuardedGet: the GET an auto-pipelining cache builds is one allocation
// (command, guard and arguments together), and carries the command's
// arguments as go-redis reads them.
func TestGuardedGet(t *testing.T) {
	cl := newClient(t, &goredis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	c := New(cl, &Options{AutoPipeline: true})
	ctx := context.Background()
	key := strings.Repeat("k", 40)
	cmd, sent := c.newGet(ctx, key)
	if args := cmd.Args(); len(args) != 2 || args[0] != "get" || args[1] != key {
		t.Fatalf("args %q; want [get %s]", args, key)
	}
	if got := unguarded(sent); got != goredis.Cmder(cmd) {
		t.Fatalf("the direct form of a guarded GET is %T, not its command", got)
	}
	if n := testing.AllocsPerRun(100, func() { c.newGet(ctx, key) }); n != 1 {
		t.Fatalf("newGet makes %v allocations; want 1", n)
	}
}

// pastDeadline is a context whose deadline has passed and whose timer has
// not fired yet.
type pastDeadline struct {
	context.Context
	deadline time.Time
}

func (p pastDeadline) Deadline() (time.Time, bool) { return p.deadline, true }

// valueHook records whether each command reached the client with the
// caller's context (a direct call) or the pipeliner's own (a batch).
type valueHook struct {
	mu     sync.Mutex
	direct []bool
}

func (h *valueHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *valueHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if n := cmd.Name(); n == "get" || n == "set" {
			h.mu.Lock()
			h.direct = append(h.direct, ctx.Value(ctxKey{}) == "v")
			h.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}
func (h *valueHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.mu.Lock()
		for _, cmd := range cmds {
			if n := cmd.Name(); n == "get" || n == "set" {
				h.direct = append(h.direct, false)
			}
		}
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (h *valueHook) take() []bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.direct
	h.direct = nil
	return d
}

// TestAutoPipelineLoneCallerGoesDirect: a lone caller's calls go straight to
// the client; after a burst of concurrent calls, a lone caller is back on
// the direct path within a few calls.
func TestAutoPipelineLoneCallerGoesDirect(t *testing.T) {
	srv := testserver.StartRedis(t)
	cl := realClient(t, srv.Addr(), &goredis.Options{ContextTimeoutEnabled: true})
	c := apCache(cl, Options{Namespace: "lone"}, false)
	h := &valueHook{}
	cl.AddHook(h)
	ctx := context.WithValue(context.Background(), ctxKey{}, "v")
	lone := func() {
		t.Helper()
		for i := range 50 {
			if err := c.Set(ctx, "k", []byte(strconv.Itoa(i)), 0); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Get(ctx, "k"); err != nil {
				t.Fatal(err)
			}
		}
	}
	lone()
	for i, d := range h.take() {
		if !d {
			t.Fatalf("call %d of a lone caller went through the pipeliner", i)
		}
	}
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if _, err := c.Get(ctx, "k"+strconv.Itoa(g)); err != nil && !errors.Is(err, cachekit.ErrNotFound) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	burst := h.take()
	piped := 0
	for _, d := range burst {
		if !d {
			piped++
		}
	}
	if piped == 0 {
		t.Fatal("no call of 32 concurrent callers went through the pipeliner")
	}
	lone()
	after := h.take()
	for i, d := range after[2*apAloneBatches:] {
		if !d {
			t.Fatalf("call %d of a lone caller after the burst went through the pipeliner", 2*apAloneBatches+i)
		}
	}
}
