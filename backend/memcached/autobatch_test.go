package memcached

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/cachetest"
	"github.com/cachekit/cachekit/internal/testserver"
)

// TestConformanceAutoPipeline runs the conformance suite with AutoPipeline
// on, against one memcached process and against a pool of two (with the
// ring as Selector, so reads are batched per server), and through a URL.
func TestConformanceAutoPipeline(t *testing.T) {
	opts := &cachetest.Options{MaxValueSize: DefaultMaxValueSize, UnnamespacedClear: cachetest.UnnamespacedClearRefused}
	t.Run("one server", func(t *testing.T) {
		srv := testserver.StartMemcached(t)
		client := casClient(t, srv.Addr())
		cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
			return New(client, &Options{Namespace: ns, AutoPipeline: true})
		}, opts)
	})
	t.Run("pool", func(t *testing.T) {
		srv, srv2 := testserver.StartMemcached(t), testserver.StartMemcached(t)
		ring, err := NewRing(srv.Addr(), srv2.Addr())
		if err != nil {
			t.Fatal(err)
		}
		client := memcache.NewFromSelector(ring)
		client.MaxIdleConns = 16
		client.Timeout = 5 * time.Second
		t.Cleanup(func() { client.Close() })
		cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
			c := New(client, &Options{Namespace: ns, AutoPipeline: true, Selector: ring})
			if len(c.batchers) != 2 {
				t.Fatalf("%d batchers; want one per server", len(c.batchers))
			}
			return c
		}, opts)
	})
	t.Run("url", func(t *testing.T) {
		srv := testserver.StartMemcached(t)
		cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
			c, err := cachekit.Open(context.Background(), "memcached://"+srv.Addr()+"?timeout=5s&auto_pipeline=true&namespace="+url.QueryEscape(ns))
			if err != nil {
				t.Fatal(err)
			}
			if c.(*Cache).batcher == nil {
				t.Fatal("auto_pipeline=true: no batcher")
			}
			return c
		}, opts)
	})
}

// recorder records the requests a client writes.
type recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) dial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: nc, r: r}, nil
}

// lines returns the request lines written so far, and forgets them.
func (r *recorder) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := strings.TrimSpace(r.buf.String())
	r.buf.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\r\n")
}

type recordingConn struct {
	net.Conn
	r *recorder
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.r.mu.Lock()
	c.r.buf.Write(p)
	c.r.mu.Unlock()
	return c.Conn.Write(p)
}

// holdBatches makes c's batcher behave as if its batches were all in
// flight, so that every Get queues, and returns a function that sends the
// queued reads as one batch (the run a returning batch would start) once n
// are queued.
func holdBatches(t *testing.T, c *Cache, b *batcher) (release func(n int)) {
	t.Helper()
	b.mu.Lock()
	b.inflight = batchInflight
	b.mu.Unlock()
	return func(n int) {
		for {
			b.mu.Lock()
			queued := len(b.pending)
			b.mu.Unlock()
			if queued >= n {
				break
			}
			time.Sleep(time.Millisecond)
		}
		c.inflight.Add(1)
		c.runBatches(b, nil) // one runner ends, the others stay "in flight"
		b.mu.Lock()
		b.inflight = 0
		b.mu.Unlock()
	}
}

// TestAutoPipelineCoalesces: reads queued while batches are in flight go
// out as one multi-key get, with the namespace generation key once, and
// every caller gets its own value; two callers of one key get equal values
// they each own.
func TestAutoPipelineCoalesces(t *testing.T) {
	srv := testserver.StartMemcached(t)
	for _, ns := range []string{"", "batch"} {
		t.Run(fmt.Sprintf("namespace=%q", ns), func(t *testing.T) {
			var rec recorder
			client := memcache.New(srv.Addr())
			client.DialContext = rec.dial
			client.MaxIdleConns = 4
			client.Timeout = 5 * time.Second
			defer client.Close()
			c := New(client, &Options{Namespace: ns, AutoPipeline: true})
			defer c.Close()
			ctx := context.Background()
			const n = 20
			for i := range n {
				if err := c.Set(ctx, fmt.Sprint("k", i), []byte(fmt.Sprint("v", i)), 0); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.Get(ctx, "warm"); !errors.Is(err, cachekit.ErrNotFound) {
				t.Fatalf("Get(warm): %v; want ErrNotFound", err)
			}
			rec.lines()
			release := holdBatches(t, c, c.batcher)
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			type result struct {
				key string
				v   []byte
				err error
			}
			results := make(chan result, n+3)
			for i := range n + 3 {
				key := fmt.Sprint("k", i%n) // k0, k1, k2 twice
				if i == n+2 {
					key = "missing"
				}
				go func() {
					gctx := ctx
					if i%2 == 0 {
						gctx = cctx // both kinds of callers share batches
					}
					if i%3 == 0 {
						ok, err := c.Exists(gctx, key)
						v := []byte(nil)
						if ok {
							v = []byte("exists")
						}
						results <- result{key, v, err}
						return
					}
					v, err := c.Get(gctx, key)
					results <- result{key, v, err}
				}()
			}
			release(n + 3)
			got := map[string][][]byte{}
			for range n + 3 {
				r := <-results
				switch {
				case r.key == "missing":
					if !errors.Is(r.err, cachekit.ErrNotFound) && !(r.err == nil && r.v == nil) {
						t.Errorf("missing: %q, %v; want a miss", r.v, r.err)
					}
				case r.err != nil:
					t.Errorf("%s: %v", r.key, r.err)
				case string(r.v) != "exists" && string(r.v) != "v"+strings.TrimPrefix(r.key, "k"):
					t.Errorf("%s: %q", r.key, r.v)
				default:
					got[r.key] = append(got[r.key], r.v)
				}
			}
			for k, vs := range got {
				if len(vs) == 2 && string(vs[0]) == string(vs[1]) && &vs[0][0] == &vs[1][0] {
					t.Errorf("%s: two callers got the same slice", k)
				}
			}
			lines := rec.lines()
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "gets ") {
				t.Fatalf("requests sent: %q; want one multi-key get", lines)
			}
			fields := strings.Fields(lines[0])[1:]
			if want := n + 1; ns == "" && len(fields) != want || ns != "" && len(fields) != want+1 {
				t.Errorf("the batch asked for %d keys (%q); want each key once (and the generation key)", len(fields), fields)
			}
		})
	}
}

// TestAutoPipelineCancelledCallerNotSent: a caller whose context ends while
// its read is queued returns the context's error at once, and its key is
// not in the batch that is sent later; the other callers of that batch
// are answered.
func TestAutoPipelineCancelledCallerNotSent(t *testing.T) {
	srv := testserver.StartMemcached(t)
	var rec recorder
	client := memcache.New(srv.Addr())
	client.DialContext = rec.dial
	client.Timeout = 5 * time.Second
	defer client.Close()
	c := New(client, &Options{AutoPipeline: true})
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "live", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	rec.lines()
	release := holdBatches(t, c, c.batcher)
	cctx, cancel := context.WithCancel(ctx)
	gone := make(chan error, 1)
	go func() { _, err := c.Get(cctx, "cancelled"); gone <- err }()
	live := make(chan error, 1)
	go func() {
		v, err := c.Get(ctx, "live")
		if err == nil && string(v) != "v" {
			err = fmt.Errorf("value %q", v)
		}
		live <- err
	}()
	for {
		c.batcher.mu.Lock()
		n := len(c.batcher.pending)
		c.batcher.mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	err := <-gone
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Get: %v; want context.Canceled", err)
	}
	var ce *cachekit.Error
	if !errors.As(err, &ce) || ce.Op != "Get" || ce.Key != "cancelled" {
		t.Errorf("cancelled Get: %v; want a *cachekit.Error for Get of cancelled", err)
	}
	release(2)
	if err := <-live; err != nil {
		t.Fatalf("live Get: %v", err)
	}
	lines := rec.lines()
	if len(lines) != 1 || strings.Contains(lines[0], "cancelled") || !strings.Contains(lines[0], "live") {
		t.Fatalf("requests sent: %q; want one get of live alone", lines)
	}
}

// TestAutoPipelineFailures: batched reads go through the breakers (one per
// server of a pool) and the resend after a server restart.
func TestAutoPipelineFailures(t *testing.T) {
	srv, srv2 := testserver.StartMemcached(t), testserver.StartMemcached(t)
	ring, err := NewRing(srv.Addr(), srv2.Addr())
	if err != nil {
		t.Fatal(err)
	}
	client := memcache.NewFromSelector(ring)
	client.MaxIdleConns = 8
	client.Timeout = 5 * time.Second
	client.DialContext = LivenessDialer(nil)
	defer client.Close()
	c := New(client, &Options{AutoPipeline: true, Selector: ring, BreakerThreshold: 2, BreakerDuration: time.Hour})
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keys := map[string]string{} // a key per server
	for i := 0; len(keys) < 2; i++ {
		k := fmt.Sprint("key", i)
		a, err := ring.PickServer(k)
		if err != nil {
			t.Fatal(err)
		}
		keys[a.String()] = k
		if err := c.Set(ctx, k, []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	get := func(ctx context.Context, k string) error {
		v, err := c.Get(ctx, k)
		if err == nil && string(v) != "v" {
			return fmt.Errorf("%s: value %q", k, v)
		}
		return err
	}

	for _, k := range keys {
		if err := get(ctx, k); err != nil { // fills the pool
			t.Fatal(err)
		}
	}
	// A restart kills every pooled connection (and the data): the batch
	// is resent on a fresh one and reports a miss.
	srv.Kill()
	srv.Restart()
	if err := get(ctx, keys[srv.Addr()]); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get after a restart: %v; want ErrNotFound", err)
	}
	if err := c.Set(ctx, keys[srv.Addr()], []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := get(ctx, k); err != nil {
			t.Fatalf("Get after a restart: %v", err)
		}
	}

	// A dead server opens its breaker; the other server's keys still read.
	srv.Kill()
	for i := range 2 {
		err := get(ctx, keys[srv.Addr()])
		if !errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, cachekit.ErrUnavailable) {
			t.Fatalf("Get %d of a dead server's key: %v; want ECONNREFUSED", i, err)
		}
	}
	err = get(context.Background(), keys[srv.Addr()])
	if !errors.Is(err, cachekit.ErrUnavailable) {
		t.Fatalf("Get with the breaker open: %v; want ErrUnavailable", err)
	}
	var ce *cachekit.Error
	if !errors.As(err, &ce) || ce.Op != "Get" {
		t.Errorf("Get with the breaker open: %v; want a *cachekit.Error for Get", err)
	}
	if err := get(ctx, keys[srv2.Addr()]); err != nil {
		t.Fatalf("Get of the live server's key: %v", err)
	}
}

// TestAutoPipelineConcurrent: many goroutines reading and writing through
// batches, with cancellable contexts some of which end, see their own
// writes and never another key's value.
func TestAutoPipelineConcurrent(t *testing.T) {
	srv := testserver.StartMemcached(t)
	client := casClient(t, srv.Addr())
	for _, ns := range []string{"", "conc"} {
		c := New(client, &Options{Namespace: ns, AutoPipeline: true})
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					key := fmt.Sprint("g", g, "-", i%5)
					want := []byte(fmt.Sprint(g, "/", i))
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					if i%7 == 3 {
						cancel() // an ended context: an error, nothing else
						if _, err := c.Get(ctx, key); !errors.Is(err, context.Canceled) {
							errs <- fmt.Errorf("Get with a cancelled ctx: %v", err)
						}
						continue
					}
					if err := c.Set(ctx, key, want, 0); err != nil {
						errs <- err
					}
					got, err := c.Get(ctx, key)
					cancel()
					if err != nil || !bytes.Equal(got, want) {
						errs <- fmt.Errorf("%s: %q, %v; want %q", key, got, err, want)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(context.Background(), "k"); !errors.Is(err, cachekit.ErrClosed) {
			t.Fatalf("Get after Close: %v; want ErrClosed", err)
		}
	}
}

// TestOpenURLAutoPipeline: auto_pipeline in a URL, with a batcher per
// server of a pool; on by default; a bad value is an invalid URL.
func TestOpenURLAutoPipeline(t *testing.T) {
	ctx := context.Background()
	for u, want := range map[string]int{
		"memcached://h1":                             1,
		"memcached://h1?auto_pipeline=false":         -1,
		"memcached://h1?auto_pipeline=0":             -1,
		"memcached://h1?auto_pipeline=true":          1,
		"memcached://h1:1,h2:2?auto_pipeline=1":      2,
		"memcached:///run/mc.sock?auto_pipeline=yes": -2,
	} {
		c, err := cachekit.Open(ctx, u)
		if want == -2 {
			if !errors.Is(err, cachekit.ErrInvalidURL) {
				t.Errorf("Open(%q): %v; want ErrInvalidURL", u, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Open(%q): %v", u, err)
		}
		mc := c.(*Cache)
		switch {
		case want < 0 && mc.batcher != nil:
			t.Errorf("Open(%q): batching on", u)
		case want == 1 && (mc.batcher == nil || mc.batchers != nil):
			t.Errorf("Open(%q): want one batcher", u)
		case want == 2 && len(mc.batchers) != 2:
			t.Errorf("Open(%q): %d batchers; want one per server", u, len(mc.batchers))
		}
		c.Close()
	}
}
