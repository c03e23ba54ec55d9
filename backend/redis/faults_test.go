package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/faultproxy"
	"github.com/cachekit/cachekit/internal/testpeer"
	"github.com/cachekit/cachekit/internal/testserver"
)

// realClient returns a client of a Redis server process started for t,
// with go-redis's default retries (MaxRetries 3) unless told otherwise.
func realClient(t *testing.T, addr string, opt *goredis.Options) *goredis.Client {
	t.Helper()
	if opt == nil {
		opt = &goredis.Options{}
	}
	opt.Addr = addr
	cl := goredis.NewClient(opt)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// refusedAddr returns a 127.0.0.1 address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestNamespacesDoNotNest: namespace "a" with key "b:k" and namespace "a:b"
// with key "k" are different entries, and Clear on one namespace leaves
// every other one alone, whatever glob or separator characters they hold.
func TestNamespacesDoNotNest(t *testing.T) {
	srv := testserver.StartRedis(t)
	cl := realClient(t, srv.Addr(), &goredis.Options{ContextTimeoutEnabled: true})
	ctx := context.Background()
	namespaces := []string{"a", "a:b", "a*", "a?", "[a]", `a\`, "a%", "a%3Ab", "a:", ":a", "a::b"}
	caches := map[string]*Cache{}
	for _, ns := range namespaces {
		caches[ns] = New(cl, &Options{Namespace: ns, ScanCount: 3})
	}
	// Every cache writes the same keys, including ones that would complete
	// another namespace's prefix.
	keys := []string{"k", "b:k", "3Ab:k", ":k", "b::k", "*"}
	for ns, c := range caches {
		for _, k := range keys {
			if err := c.Set(ctx, k, []byte(ns+"|"+k), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	for ns, c := range caches {
		for _, k := range keys {
			if v, err := c.Get(ctx, k); err != nil || string(v) != ns+"|"+k {
				t.Fatalf("namespace %q Get(%q) = %q, %v; want its own value", ns, k, v, err)
			}
		}
	}
	if n, err := cl.DBSize(ctx).Result(); err != nil || n != int64(len(namespaces)*len(keys)) {
		t.Fatalf("DBSIZE = %d, %v; want %d distinct keys", n, err, len(namespaces)*len(keys))
	}
	cleared := map[string]bool{}
	for _, ns := range namespaces {
		if err := caches[ns].Clear(ctx); err != nil {
			t.Fatal(err)
		}
		cleared[ns] = true
		for other, c := range caches {
			got, err := c.GetMany(ctx, keys)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 0, false: len(keys)}[cleared[other]]; len(got) != want {
				t.Fatalf("after Clear on %q: namespace %q holds %d of its keys; want %d", ns, other, len(got), want)
			}
		}
	}
	// The layout: namespaces without ':' or '%' are stored as they are.
	if p := namespacePrefix("app"); p != "app:" {
		t.Errorf("namespacePrefix(app) = %q", p)
	}
	if p := namespacePrefix("a:b%"); p != "a%3Ab%25:" {
		t.Errorf("namespacePrefix(a:b%%) = %q", p)
	}
}

// TestClearWithoutNamespaceNeedsOptIn: a namespace-less Clear sends nothing
// and fails with ErrFlushNotAllowed unless AllowFlush is set.
func TestClearWithoutNamespaceNeedsOptIn(t *testing.T) {
	hole := testpeer.NewBlackhole(t)
	counter := &commandCounter{}
	cl := newClient(t, &goredis.Options{Addr: hole.Addr(), ContextTimeoutEnabled: true})
	cl.AddHook(counter)
	for _, c := range []*Cache{New(cl, nil), New(cl, &Options{Timeout: 30 * time.Millisecond})} {
		err := c.Clear(context.Background())
		var ce *cachekit.Error
		if !errors.Is(err, cachekit.ErrFlushNotAllowed) || !errors.As(err, &ce) || ce.Op != "Clear" {
			t.Fatalf("Clear without a namespace: %v; want a *cachekit.Error wrapping ErrFlushNotAllowed", err)
		}
	}
	if n := counter.n.Load(); n != 0 || hole.Accepted() != 0 {
		t.Fatalf("%d commands, %d connections; want none", n, hole.Accepted())
	}

	srv := testserver.StartRedis(t)
	real := realClient(t, srv.Addr(), &goredis.Options{ContextTimeoutEnabled: true})
	ctx := context.Background()
	if err := real.Set(ctx, "other", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := New(real, nil).Clear(ctx); !errors.Is(err, cachekit.ErrFlushNotAllowed) {
		t.Fatalf("Clear: %v", err)
	}
	if n, _ := real.DBSize(ctx).Result(); n != 1 {
		t.Fatalf("a refused Clear touched the database: %d keys left", n)
	}
	if err := New(real, &Options{AllowFlush: true}).Clear(ctx); err != nil {
		t.Fatalf("Clear with AllowFlush: %v", err)
	}
	if n, _ := real.DBSize(ctx).Result(); n != 0 {
		t.Fatalf("Clear with AllowFlush left %d keys", n)
	}

	for raw, want := range map[string]bool{"redis://h/0": false, "redis://h/0?allow_flush=true": true, "redis://h/0?allow_flush=false": false} {
		cfg, err := parseURL(mustParse(t, raw))
		if err != nil || cfg.opts.AllowFlush != want {
			t.Errorf("%s: AllowFlush %v, %v; want %v", raw, cfg.opts.AllowFlush, err, want)
		}
	}
}

func TestCompareAndDelete(t *testing.T) {
	srv := testserver.StartRedis(t)
	cl := realClient(t, srv.Addr(), &goredis.Options{ContextTimeoutEnabled: true})
	ctx := context.Background()
	c := New(cl, &Options{Namespace: "lease"})
	other := New(cl, &Options{Namespace: "other"})

	if ok, err := c.CompareAndDelete(ctx, "k", []byte("t1")); ok || err != nil {
		t.Fatalf("on a missing key: %v, %v; want false, nil", ok, err)
	}
	if err := c.Set(ctx, "k", []byte("t1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := other.Set(ctx, "k", []byte("t1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, wrong := range [][]byte{[]byte("t2"), []byte("t"), []byte("t1 "), nil} {
		if ok, err := c.CompareAndDelete(ctx, "k", wrong); ok || err != nil {
			t.Fatalf("with %q: %v, %v; want false", wrong, ok, err)
		}
	}
	// A server that lost its script cache (restart, SCRIPT FLUSH) gets EVAL.
	if err := cl.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.CompareAndDelete(ctx, "k", []byte("t1")); !ok || err != nil {
		t.Fatalf("with the stored value: %v, %v; want true", ok, err)
	}
	if _, err := c.Get(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("after CompareAndDelete: %v", err)
	}
	if v, err := other.Get(ctx, "k"); err != nil || string(v) != "t1" {
		t.Fatalf("another namespace's key: %q, %v", v, err)
	}
	// Binary values compare byte for byte; an empty value is a value.
	bin := []byte{0, 0xff, '\n', 0}
	_ = c.Set(ctx, "b", bin, 0)
	if ok, err := c.CompareAndDelete(ctx, "b", bin[:3]); ok || err != nil {
		t.Fatalf("prefix of a binary value: %v, %v", ok, err)
	}
	if ok, err := c.CompareAndDelete(ctx, "b", bin); !ok || err != nil {
		t.Fatalf("binary value: %v, %v", ok, err)
	}
	_ = c.Set(ctx, "e", nil, 0)
	if ok, err := c.CompareAndDelete(ctx, "e", []byte{}); !ok || err != nil {
		t.Fatalf("empty value: %v, %v", ok, err)
	}

	// 100 concurrent releases of the same lease: exactly one deletes.
	for round := 0; round < 5; round++ {
		if err := c.Set(ctx, "lock", []byte("token"), time.Minute); err != nil {
			t.Fatal(err)
		}
		var deleted atomic.Int32
		var wg sync.WaitGroup
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := c.CompareAndDelete(ctx, "lock", []byte("token"))
				if err != nil {
					t.Error(err)
				}
				if ok {
					deleted.Add(1)
				}
			}()
		}
		wg.Wait()
		if n := deleted.Load(); n != 1 {
			t.Fatalf("round %d: %d of 100 concurrent CompareAndDeletes deleted; want exactly 1", round, n)
		}
	}

	// Errors have the usual shape.
	_, err := c.CompareAndDelete(ctx, "", []byte("x"))
	var ce *cachekit.Error
	if !errors.Is(err, cachekit.ErrInvalidKey) || !errors.As(err, &ce) || ce.Op != "CompareAndDelete" {
		t.Fatalf("bad key: %v", err)
	}
	c.Close()
	if _, err := c.CompareAndDelete(ctx, "k", nil); !errors.Is(err, cachekit.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestLostReplyIsNeverResent drops the reply of one write (the server ran
// it) and checks that go-redis did not resend it, even on a client with
// go-redis's default MaxRetries, and that the caller learns the outcome is
// unknown instead of a wrong answer.
func TestLostReplyIsNeverResent(t *testing.T) {
	srv := testserver.StartRedis(t)
	admin := realClient(t, srv.Addr(), nil)
	ctx := context.Background()
	proxy := faultproxy.Start(t, srv.Addr())
	opened, err := cachekit.Open(ctx, "redis://"+proxy.Addr()+"/0?namespace=url&breaker_threshold=0")
	if err != nil {
		t.Fatal(err)
	}
	defer opened.Close()
	caches := map[string]cachekit.Cache{
		"New(default MaxRetries)": New(realClient(t, proxy.Addr(), &goredis.Options{ContextTimeoutEnabled: true}), &Options{Namespace: "new", BreakerThreshold: -1}),
		"New(no ContextTimeoutEnabled)": New(realClient(t, proxy.Addr(), &goredis.Options{ReadTimeout: 2 * time.Second}),
			&Options{Namespace: "detached", BreakerThreshold: -1}),
		"Open": opened,
	}
	for name, c := range caches {
		t.Run(name, func(t *testing.T) {
			ns := c.(*Cache).prefix
			unknown := func(op string, err error) {
				t.Helper()
				if !errors.Is(err, cachekit.ErrUnknownOutcome) {
					t.Fatalf("%s with its reply lost: %v; want ErrUnknownOutcome", op, err)
				}
				if !proxy.ReplyDropped() {
					t.Fatalf("%s: the proxy dropped no reply", op)
				}
			}
			// drop makes the next reply go missing. A read first makes sure
			// a connection is up, so the drop hits the write itself and not
			// the handshake of a new connection.
			drop := func() {
				t.Helper()
				if _, err := c.Exists(ctx, "warm-up"); err != nil {
					t.Fatal(err)
				}
				proxy.DropNextReply()
			}
			// Increment adds exactly once.
			if _, err := c.Increment(ctx, "ctr", 10); err != nil {
				t.Fatal(err)
			}
			drop()
			_, err := c.Increment(ctx, "ctr", 1)
			unknown("Increment", err)
			if v, _ := admin.Get(ctx, ns+"ctr").Result(); v != "11" {
				t.Fatalf("counter after one lost Increment: %s; want 11 (applied once)", v)
			}
			// Add never reports ErrExists for its own write.
			drop()
			err = c.Add(ctx, "lease", []byte("mine"), time.Minute)
			if errors.Is(err, cachekit.ErrExists) {
				t.Fatalf("Add reported ErrExists for its own write: %v", err)
			}
			unknown("Add", err)
			if v, _ := admin.Get(ctx, ns+"lease").Result(); v != "mine" {
				t.Fatalf("after the lost Add the server holds %q; want mine", v)
			}
			// Delete's count is never a guess.
			drop()
			n, err := c.Delete(ctx, "lease")
			if n != 0 {
				t.Fatalf("Delete returned %d with an error", n)
			}
			unknown("Delete", err)
			if x, _ := admin.Exists(ctx, ns+"lease").Result(); x != 0 {
				t.Fatal("the key survived Delete")
			}
			// CompareAndDelete, Set and Expire likewise.
			if err := c.Set(ctx, "lease", []byte("tok"), time.Minute); err != nil {
				t.Fatal(err)
			}
			cad := c.(cachekit.CompareAndDeleter)
			if _, err := cad.CompareAndDelete(ctx, "absent", nil); err != nil { // loads the script
				t.Fatal(err)
			}
			drop()
			_, err = cad.CompareAndDelete(ctx, "lease", []byte("tok"))
			unknown("CompareAndDelete", err)
			if x, _ := admin.Exists(ctx, ns+"lease").Result(); x != 0 {
				t.Fatal("the key survived CompareAndDelete")
			}
			drop()
			unknown("Set", c.Set(ctx, "s", []byte("v"), 0))
			drop()
			_, err = c.Expire(ctx, "s", time.Minute)
			unknown("Expire", err)
			if ttl, _ := admin.PTTL(ctx, ns+"s").Result(); ttl <= 0 {
				t.Fatalf("after the lost Set and Expire: PTTL %v; want both applied", ttl)
			}
			// A read whose reply is lost is simply read again.
			drop()
			if v, err := c.Get(ctx, "s"); err != nil || string(v) != "v" {
				t.Fatalf("Get with its first reply lost: %q, %v; want it retried", v, err)
			}
			if !proxy.ReplyDropped() {
				t.Fatal("the proxy dropped no reply of Get")
			}
		})
	}
}

// TestDetachedWriteNeverLandsLate: with a client that ignores contexts, a
// write that returned an error (its context ended while the server was slow)
// must not land after a later write that succeeded.
func TestDetachedWriteNeverLandsLate(t *testing.T) {
	srv := testserver.StartRedis(t)
	proxy := faultproxy.Start(t, srv.Addr())
	cl := realClient(t, proxy.Addr(), &goredis.Options{ReadTimeout: 3 * time.Second, Protocol: 2, DisableIdentity: true})
	c := New(cl, &Options{Namespace: "order"})
	ctx := context.Background()
	if err := cl.Ping(ctx).Err(); err != nil { // one pooled connection, ready
		t.Fatal(err)
	}

	proxy.SetDelay(400 * time.Millisecond) // v1 is held in the proxy
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err := c.Set(short, "k", []byte("v1"), 0)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, cachekit.ErrUnknownOutcome) {
		t.Fatalf("Set(v1) past its deadline: %v; want DeadlineExceeded and ErrUnknownOutcome", err)
	}
	proxy.SetDelay(0)

	// A write whose context ends while it waits for v1 sends nothing.
	short, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
	err = c.Set(short, "k", []byte("v3"), 0)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, cachekit.ErrUnknownOutcome) {
		t.Fatalf("Set(v3) while v1 is in flight: %v; want DeadlineExceeded, outcome known (nothing sent)", err)
	}

	long, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Set(long, "k", []byte("v2"), 0); err != nil {
		t.Fatalf("Set(v2): %v", err)
	}
	time.Sleep(600 * time.Millisecond) // past v1's delay
	if v, err := c.Get(long, "k"); err != nil || string(v) != "v2" {
		t.Fatalf("Get after Set(v1) failed and Set(v2) succeeded: %q, %v; want v2", v, err)
	}
}

// TestDeadServerFailsFastWithItsCause: against a closed port a URL-opened
// cache reports the refused connection itself (not a deadline), well within
// its timeout, and after BreakerThreshold failures its breaker answers
// without touching the network.
func TestDeadServerFailsFastWithItsCause(t *testing.T) {
	addr := refusedAddr(t)
	c, err := cachekit.Open(context.Background(), "redis://"+addr+"/0?namespace=dead&breaker_threshold=3&breaker_duration=1h")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		start := time.Now()
		_, err := c.Get(ctx, "k")
		took := time.Since(start)
		if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("Get %d against a closed port: %v; want the refused connection in the error", i, err)
		}
		if errors.Is(err, context.DeadlineExceeded) || took > 500*time.Millisecond {
			t.Fatalf("Get %d took %v (%v); want it to fail on the refused dial, not at the 1s timeout", i, took, err)
		}
		if errors.Is(err, cachekit.ErrUnavailable) {
			t.Fatalf("Get %d: breaker open before the threshold: %v", i, err)
		}
	}
	for _, op := range []func() error{
		func() error { _, err := c.Get(ctx, "k"); return err },
		func() error { return c.Set(ctx, "k", nil, 0) },
		func() error { _, err := c.Increment(ctx, "k", 1); return err },
	} {
		err := op()
		if !errors.Is(err, cachekit.ErrUnavailable) || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("with the breaker open: %v; want ErrUnavailable wrapping ECONNREFUSED", err)
		}
		if errors.Is(err, cachekit.ErrUnknownOutcome) {
			t.Fatalf("a write the breaker refused has a known outcome: %v", err)
		}
		var ce *cachekit.Error
		if !errors.As(err, &ce) {
			t.Fatalf("not a *cachekit.Error: %#v", err)
		}
	}
}

// TestBreakerCountsOwnTimeoutsNotTheCallers: against a server that never
// answers, the caller's own deadlines never open the breaker; the cache's
// own Timeout does.
func TestBreakerCountsOwnTimeoutsNotTheCallers(t *testing.T) {
	hole := testpeer.NewBlackhole(t)
	counter := &commandCounter{}
	cl := newClient(t, &goredis.Options{Addr: hole.Addr(), ContextTimeoutEnabled: true})
	cl.AddHook(counter)
	c := New(cl, &Options{Timeout: 40 * time.Millisecond, BreakerThreshold: 2, BreakerDuration: time.Hour})
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		_, err := c.Get(ctx, "k")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, cachekit.ErrUnavailable) {
			t.Fatalf("Get %d with the caller's deadline: %v; want DeadlineExceeded, breaker closed", i, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	if _, err := c.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Get: %v", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := c.Get(context.Background(), "k"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get %d with the cache's timeout: %v", i, err)
		}
	}
	sent := counter.n.Load()
	_, err := c.Get(context.Background(), "k")
	if !errors.Is(err, cachekit.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after 2 own timeouts: %v; want ErrUnavailable wrapping the last timeout", err)
	}
	if counter.n.Load() != sent {
		t.Fatal("a call the breaker refused reached the client")
	}
	// Disabled breakers never open.
	d := New(cl, &Options{Timeout: 10 * time.Millisecond, BreakerThreshold: -1})
	for i := 0; i < 4; i++ {
		if _, err := d.Get(context.Background(), "k"); errors.Is(err, cachekit.ErrUnavailable) {
			t.Fatalf("disabled breaker opened: %v", err)
		}
	}
	for raw, want := range map[string][2]any{
		"redis://h/0": {0, time.Duration(0)},
		"redis://h/0?breaker_threshold=5&breaker_duration=250ms": {5, 250 * time.Millisecond},
		"redis://h/0?breaker_threshold=0":                        {-1, time.Duration(0)},
		"redis://h/0?breaker_duration=0":                         {0, time.Duration(-1)},
	} {
		cfg, err := parseURL(mustParse(t, raw))
		if err != nil || cfg.opts.BreakerThreshold != want[0] || cfg.opts.BreakerDuration != want[1] {
			t.Errorf("%s: %d %v, %v; want %v", raw, cfg.opts.BreakerThreshold, cfg.opts.BreakerDuration, err, want)
		}
	}
}

// TestCloseSentinelUnreachable: Close on a redis+sentinel cache whose
// Sentinels never answer returns within the cache's timeout, not after the
// client's dial timeout.
func TestCloseSentinelUnreachable(t *testing.T) {
	hole := testpeer.NewBlackhole(t)
	raw := "redis+sentinel://" + hole.Addr() + "/0?master_name=m&timeout=200ms&dial_timeout=3s&read_timeout=3s"
	c, err := cachekit.Open(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Get(context.Background(), "k"); done <- err }()
	for deadline := time.Now().Add(2 * time.Second); hole.Accepted() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if hole.Accepted() == 0 {
		t.Fatal("the client never asked the Sentinel")
	}
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Close took %v; want about the 200ms timeout, not the 3s dial timeout", took)
	}
	if err := <-done; err == nil {
		t.Fatal("Get against a Sentinel that never answers succeeded")
	}
	<-c.(*Cache).closeDone // the client finishes closing in the background
}

// BenchmarkGetBreakerOpen measures a Get refused by the open breaker: what
// a call costs while the server is down.
func BenchmarkGetBreakerOpen(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := cachekit.Open(context.Background(), "redis://"+addr+"/0?breaker_threshold=1&breaker_duration=1h")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	_, _ = c.Get(ctx, "k")
	if _, err := c.Get(ctx, "k"); !errors.Is(err, cachekit.ErrUnavailable) {
		b.Fatalf("breaker not open: %v", err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = c.Get(ctx, "k")
		}
	})
}

// TestCloseDuringCalls: calls waiting on a frozen server when Close is
// called end with an error matching ErrClosed (a write also with
// ErrUnknownOutcome, since it was on the wire), not with the bare network
// error that closing their connections causes.
func TestCloseDuringCalls(t *testing.T) {
	srv := testserver.StartRedis(t)
	c, err := cachekit.Open(context.Background(), "redis://"+srv.Addr()+"/0?namespace=closing&timeout=10s")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Set(ctx, "k", []byte("v"), 0); err != nil { // the pool has a connection
		t.Fatal(err)
	}
	srv.Freeze()
	defer srv.Thaw()
	ops := map[string]func() error{
		"Get":     func() error { _, err := c.Get(ctx, "k"); return err },
		"Set":     func() error { return c.Set(ctx, "k", []byte("w"), 0) },
		"GetMany": func() error { _, err := c.GetMany(ctx, []string{"k", "l"}); return err },
	}
	errs := make(map[string]chan error, len(ops))
	for name, op := range ops {
		ch := make(chan error, 1)
		errs[name] = ch
		go func() { ch <- op() }()
	}
	time.Sleep(300 * time.Millisecond) // the calls reach the frozen server
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for name, ch := range errs {
		select {
		case err := <-ch:
			if !errors.Is(err, cachekit.ErrClosed) {
				t.Errorf("%s in flight during Close: %v; want ErrClosed", name, err)
			}
			// On the wire (net.ErrClosed), a write's outcome is unknown;
			// one that never got a connection (goredis.ErrClosed) was
			// not sent.
			if name == "Set" && errors.Is(err, net.ErrClosed) != errors.Is(err, cachekit.ErrUnknownOutcome) {
				t.Errorf("Set cut by Close: %v; want ErrUnknownOutcome exactly when it was on the wire", err)
			}
			var ce *cachekit.Error
			if !errors.As(err, &ce) || ce.Op != name {
				t.Errorf("%s: %#v; want a *cachekit.Error naming %s", name, err, name)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still waiting 5s after Close", name)
		}
	}
}

// TestFailedTLSHandshakeSentNothing: a write to a server whose certificate
// the client does not trust fails with the certificate error, and not with
// ErrUnknownOutcome: the handshake failed before any command was written.
func TestFailedTLSHandshakeSentNothing(t *testing.T) {
	peer := httptest.NewTLSServer(http.NotFoundHandler()) // a TLS peer with a certificate nobody trusts
	defer peer.Close()
	c, err := cachekit.Open(context.Background(), "rediss://"+peer.Listener.Addr().String()+"/0?namespace=tls&breaker_threshold=0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, write := range map[string]func() error{
		"Set":       func() error { return c.Set(context.Background(), "k", []byte("v"), 0) },
		"Increment": func() error { _, err := c.Increment(context.Background(), "n", 1); return err },
	} {
		err := write()
		var cve *tls.CertificateVerificationError
		if !errors.As(err, &cve) {
			t.Errorf("%s against an untrusted certificate: %v; want the certificate error", name, err)
		}
		if errors.Is(err, cachekit.ErrUnknownOutcome) {
			t.Errorf("%s: %v; a failed handshake sent nothing, so the outcome is known", name, err)
		}
	}
}

// TestCancelOnTheWire checks what the package documentation says of a
// command already sent when its context is cancelled: it is not
// interrupted; it reports its own outcome if the reply comes, and the
// context's error (a write also ErrUnknownOutcome) at the cache's Timeout.
func TestCancelOnTheWire(t *testing.T) {
	srv := testserver.StartRedis(t)
	open := func(timeout string) cachekit.Cache {
		c, err := cachekit.Open(context.Background(), "redis://"+srv.Addr()+"/0?namespace=wire&breaker_threshold=0&timeout="+timeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Set(context.Background(), "k", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		return c
	}
	cancelSoon := func() context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		return ctx
	}

	// The reply comes after the cancellation: the call reports it.
	c := open("10s")
	srv.Freeze()
	time.AfterFunc(300*time.Millisecond, srv.Thaw)
	if v, err := c.Get(cancelSoon(), "k"); err != nil || string(v) != "v" {
		t.Fatalf("Get answered after its cancellation: %q, %v; want the value", v, err)
	}

	// No reply: the Timeout ends the call, with the context's error.
	c = open("300ms")
	srv.Freeze()
	defer srv.Thaw()
	if _, err := c.Get(cancelSoon(), "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get cancelled on the wire, no reply: %v; want context.Canceled", err)
	}
	if err := c.Set(cancelSoon(), "k", []byte("w"), 0); !errors.Is(err, context.Canceled) || !errors.Is(err, cachekit.ErrUnknownOutcome) {
		t.Errorf("Set cancelled on the wire, no reply: %v; want context.Canceled and ErrUnknownOutcome", err)
	}
}
