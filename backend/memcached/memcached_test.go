package memcached

import (
	"context"
	"errors"
	"fmt"
	"github.com/cachekit/cachekit/internal/testpeer"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"go.uber.org/goleak"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/cachetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testServers returns the memcached servers named by
// CACHEKIT_TEST_MEMCACHED_ADDRS, or skips. The integration_test module runs
// the same tests against containers; these let the backend be developed
// against local servers without Docker.
func testServers(t *testing.T, n int) []string {
	t.Helper()
	addrs := splitAddrs()
	if len(addrs) < n {
		t.Skipf("set CACHEKIT_TEST_MEMCACHED_ADDRS to %d comma-separated memcached addresses to run this test", n)
	}
	return addrs[:n]
}

func splitAddrs() []string {
	var addrs []string
	for _, a := range strings.Split(os.Getenv("CACHEKIT_TEST_MEMCACHED_ADDRS"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

func runConformance(t *testing.T, addrs []string) {
	ring, err := NewRing(addrs...)
	if err != nil {
		t.Fatal(err)
	}
	client := memcache.NewFromSelector(ring)
	client.MaxIdleConns = 16
	client.Timeout = 2 * time.Second
	t.Cleanup(func() { client.Close() })
	cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
		return New(client, &Options{Namespace: ns})
	}, &cachetest.Options{MaxValueSize: DefaultMaxValueSize, UnnamespacedClear: cachetest.UnnamespacedClearRefused})
}

func TestConformance(t *testing.T) { runConformance(t, testServers(t, 1)) }

func TestConformancePool(t *testing.T) { runConformance(t, testServers(t, 2)) }

// everyOp calls every method of c with ctx.
func everyOp(ctx context.Context, c cachekit.Cache) map[string]error {
	errs := map[string]error{}
	_, errs["Get"] = c.Get(ctx, "k")
	_, errs["GetMany"] = c.GetMany(ctx, []string{"k", "j"})
	errs["Set"] = c.Set(ctx, "k", []byte("v"), 0)
	errs["SetMany"] = c.SetMany(ctx, map[string][]byte{"k": []byte("v"), "j": []byte("w")}, 0)
	errs["Add"] = c.Add(ctx, "k", []byte("v"), 0)
	_, errs["Delete"] = c.Delete(ctx, "k", "j")
	_, errs["Exists"] = c.Exists(ctx, "k")
	_, errs["Increment"] = c.Increment(ctx, "n", 1)
	_, errs["Expire"] = c.Expire(ctx, "k", time.Second)
	errs["Clear"] = c.Clear(ctx)
	return errs
}

// TestDeadlineWithSilentServer checks that a deadline is honoured although
// gomemcache takes no context: against a server that never replies, every
// call returns context.DeadlineExceeded within 50ms of the deadline, well
// before the client's own 2s timeout, and Close waits for the abandoned
// requests (goleak in TestMain checks nothing is left running).
func TestDeadlineWithSilentServer(t *testing.T) {
	bh := testpeer.NewBlackhole(t)
	for _, ns := range []string{"", "app"} {
		client := memcache.New(bh.Addr())
		client.Timeout = 2 * time.Second
		c := New(client, &Options{Namespace: ns, AllowFlush: true})
		for op, run := range map[string]func(ctx context.Context) error{
			"Get":       func(ctx context.Context) error { _, err := c.Get(ctx, "k"); return err },
			"GetMany":   func(ctx context.Context) error { _, err := c.GetMany(ctx, []string{"a", "b"}); return err },
			"Set":       func(ctx context.Context) error { return c.Set(ctx, "k", []byte("v"), 0) },
			"SetMany":   func(ctx context.Context) error { return c.SetMany(ctx, map[string][]byte{"a": nil, "b": nil}, 0) },
			"Add":       func(ctx context.Context) error { return c.Add(ctx, "k", []byte("v"), 0) },
			"Delete":    func(ctx context.Context) error { _, err := c.Delete(ctx, "a", "b"); return err },
			"Exists":    func(ctx context.Context) error { _, err := c.Exists(ctx, "k"); return err },
			"Increment": func(ctx context.Context) error { _, err := c.Increment(ctx, "n", 1); return err },
			"Expire":    func(ctx context.Context) error { _, err := c.Expire(ctx, "k", 0); return err },
			"Clear":     func(ctx context.Context) error { return c.Clear(ctx) },
		} {
			// Timing on a shared machine can stall a goroutine: the bound
			// must hold in one of three attempts, the error in all.
			const timeout = 100 * time.Millisecond
			var took time.Duration
			for attempt := 0; attempt < 3; attempt++ {
				start := time.Now() // before the deadline is set: took >= timeout holds
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				err := run(ctx)
				took = time.Since(start)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("ns %q: %s: %v; want context.DeadlineExceeded", ns, op, err)
				}
				var ce *cachekit.Error
				if !errors.As(err, &ce) || ce.Op != op {
					t.Errorf("ns %q: %s: %v; want a *cachekit.Error for %s", ns, op, err, op)
				}
				if took < timeout {
					t.Errorf("ns %q: %s returned after %v, before its %v deadline", ns, op, took, timeout)
				}
				if took <= timeout+50*time.Millisecond {
					break
				}
			}
			if took > timeout+50*time.Millisecond {
				t.Errorf("ns %q: %s returned after %v; want within 50ms of the %v deadline", ns, op, took, timeout)
			}
		}
		// Cancellation, too.
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			start := time.Now()
			_, err := c.Get(ctx, "k")
			took := time.Since(start)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("ns %q: Get cancelled after 50ms: %v; want context.Canceled", ns, err)
			}
			if took <= 100*time.Millisecond {
				break
			}
			if attempt == 2 {
				t.Errorf("ns %q: Get cancelled after 50ms returned after %v; want promptly", ns, took)
				break
			}
		}
		start := time.Now()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("ns %q: Close waited %v for abandoned requests", ns, time.Since(start).Round(time.Millisecond))
		client.Close()
	}
	if bh.Accepted() == 0 {
		t.Fatal("the silent server saw no connection")
	}
}

// TestClientTimeoutAfterDeadline checks that an i/o timeout inside the
// client, once the context's deadline has passed, is reported as the
// context's error while the client's error stays reachable.
func TestClientTimeoutAfterDeadline(t *testing.T) {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	var ne net.Error = &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	err := ctxError(ctx, ne)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ctxError = %v; want context.DeadlineExceeded", err)
	}
	var got net.Error
	if !errors.As(err, &got) {
		t.Fatalf("ctxError = %v; the client's net.Error is lost", err)
	}
	err = ctxError(ctx, &memcache.ConnectTimeoutError{Addr: &net.TCPAddr{}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ctxError(connect timeout) = %v; want context.DeadlineExceeded", err)
	}
	// Not a timeout, or the context is not done: left alone.
	if err := ctxError(ctx, memcache.ErrServerError); err != memcache.ErrServerError {
		t.Fatalf("ctxError(server error) = %v", err)
	}
	if err := ctxError(context.Background(), ne); err != ne {
		t.Fatalf("ctxError(live ctx) = %v", err)
	}
}

// TestNoIOWhenDoneOrClosed checks that a done context or a closed cache
// fails before anything is sent, and that Close leaves a caller's client
// alone while being idempotent.
func TestNoIOWhenDoneOrClosed(t *testing.T) {
	bh := testpeer.NewBlackhole(t)
	client := memcache.New(bh.Addr())
	defer client.Close()
	c := New(client, &Options{Namespace: "ns"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for op, err := range everyOp(ctx, c) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v", op, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for op, err := range everyOp(context.Background(), c) {
		if !errors.Is(err, cachekit.ErrClosed) {
			t.Errorf("%s after Close: %v", op, err)
		}
	}
	// Invalid arguments are reported as such even after Close.
	if err := c.Set(context.Background(), "", nil, 0); !errors.Is(err, cachekit.ErrInvalidKey) {
		t.Errorf("Set with an empty key: %v", err)
	}
	if n := bh.Accepted(); n != 0 {
		t.Fatalf("the server saw %d connections; want none", n)
	}
}

func TestTooLargeBeforeIO(t *testing.T) {
	bh := testpeer.NewBlackhole(t)
	client := memcache.New(bh.Addr())
	defer client.Close()
	c := New(client, &Options{MaxValueSize: 10})
	defer c.Close()
	big := make([]byte, 11)
	ctx := context.Background()
	for what, err := range map[string]error{
		"Set":     c.Set(ctx, "k", big, 0),
		"Add":     c.Add(ctx, "k", big, 0),
		"SetMany": c.SetMany(ctx, map[string][]byte{"k": big, "j": nil}, 0),
	} {
		if !errors.Is(err, cachekit.ErrTooLarge) {
			t.Errorf("%s of 11 bytes with MaxValueSize 10: %v; want ErrTooLarge", what, err)
		}
	}
	if n := bh.Accepted(); n != 0 {
		t.Fatalf("the server saw %d connections; want none", n)
	}
	if err := clientError(errors.New(`memcache: unexpected response line from "set": "SERVER_ERROR object too large for cache\r\n"`)); !errors.Is(err, cachekit.ErrTooLarge) {
		t.Fatalf("the server's too-large reply maps to %v", err)
	}
}

// TestNewNilClient: New refuses a nil client at once, with a message that
// names it, rather than failing on first use.
func TestNewNilClient(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "nil client") {
			t.Fatalf("New(nil, nil) recovered %v; want a panic naming the nil client", r)
		}
	}()
	New(nil, nil)
}
