package integration_test

// The decorator under faults (issue #12 items 7 and 17), against server
// processes of the test's own (internal/testserver) that it freezes and
// kills. (Named memoize_*, not decorator_*: a _test.go file that sorts
// before doc.go breaks the package; see memoize_test.go.)
//
// The bounds are generous on purpose: they separate "returns after a read
// timeout and fn" (about 0.3 s here) from "waits for the cache write"
// (the backend's timeout again, or BackgroundTimeout: seconds), not fast
// from slightly faster.

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/decorator"
	"github.com/cachekit/cachekit/internal/testserver"
)

// decFaultServer is a server of the test's own and the URL of a cache on
// it.
type decFaultServer struct {
	srv *testserver.Server
	url string
}

// decFaultRun runs test on Redis and on Memcached, each a process of the
// test's own, through a cache opened with the URL parameter timeout (the
// backend's operation timeout).
func decFaultRun(t *testing.T, timeout time.Duration, test func(t *testing.T, s decFaultServer, c cachekit.Cache)) {
	for _, b := range []struct {
		name  string
		start func(testing.TB, ...string) *testserver.Server
		url   func(addr string) string
	}{
		{"redis", testserver.StartRedis, func(addr string) string {
			return "redis://" + addr + "/0?namespace=decf&timeout=" + timeout.String()
		}},
		{"memcached", testserver.StartMemcached, func(addr string) string {
			return "memcached://" + addr + "?namespace=decf&timeout=" + timeout.String()
		}},
	} {
		t.Run(b.name, func(t *testing.T) {
			srv := b.start(t)
			s := decFaultServer{srv, b.url(srv.Addr())}
			c, err := cachekit.Open(decBg, s.url)
			if err != nil {
				t.Fatal(err)
			}
			// Registered after the server's cleanup, so it runs first: the
			// cache is closed before the server is killed.
			t.Cleanup(func() { c.Close() })
			test(t, s, c)
		})
	}
}

// decTimed runs f and returns how long it took, failing the test if it
// takes more than a minute (a hang).
func decTimed(t *testing.T, f func()) time.Duration {
	t.Helper()
	start := time.Now()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("hung for a minute")
	}
	return time.Since(start)
}

// Item 7: the caller gets fn's value as soon as fn returns, never after
// the cache write. fn freezes the server (SIGSTOP) while it runs, so the
// read before it is fast and the write after it hangs until the backend's
// 3s timeout: the call must return in about fn's time. Before the fix the
// caller waited for the write (3s here; 3.6s measured with a 300ms
// timeout and BackgroundTimeout 3s, 30.6s with the default). Wait returns
// once the write has ended.
func TestDecoratorFaultValueNeverWaitsForTheWrite(t *testing.T) {
	decFaultRun(t, 3*time.Second, func(t *testing.T, s decFaultServer, c cachekit.Cache) {
		var froze atomic.Bool
		f := decorator.New(cachekit.NewTyped[string](c, nil), func(_ context.Context, id int) (string, error) {
			if id == 1 && !froze.Swap(true) {
				s.srv.Freeze()
			}
			time.Sleep(20 * time.Millisecond)
			return "v" + strconv.Itoa(id), nil
		}, &decorator.Options[int]{Name: "f"})
		t.Cleanup(func() {
			if froze.Load() {
				s.srv.Thaw()
			}
		})
		// Warm: a connection is open.
		if v, err := f.Call(decBg, 0); err != nil || v != "v0" {
			t.Fatalf("warm-up: %q, %v", v, err)
		}
		f.Wait()

		var v string
		var err error
		took := decTimed(t, func() { v, err = f.Call(decBg, 1) })
		if err != nil || v != "v1" {
			t.Fatalf("Call = %q, %v; want fn's value", v, err)
		}
		if bound := 1500 * time.Millisecond; took > bound {
			t.Errorf("the call took %v; want fn's value within %v (read + fn), not after the write to the frozen server", took, bound)
		}
		// The write ends by the backend's timeout, long before
		// BackgroundTimeout (30s).
		if took := decTimed(t, f.Wait); took > 10*time.Second {
			t.Errorf("Wait took %v; want the write to end by the backend's 3s timeout", took)
		}
	})
}

// Item 7, reads: with the cache frozen or killed before the call, a
// decorated call returns fn's value after the read fails: by CacheTimeout
// when set (the backend's timeout here is 2s), or by the backend's
// timeout (300ms) without it.
func TestDecoratorFaultDeadCacheCostsTheReadTimeout(t *testing.T) {
	for _, tc := range []struct {
		name         string
		timeout      time.Duration // the backend's
		cacheTimeout time.Duration
		bound        time.Duration // read timeout + fn + a generous margin
		kill         bool
	}{
		{"frozen", 300 * time.Millisecond, 0, 1500 * time.Millisecond, false},
		{"frozen/CacheTimeout", 2 * time.Second, 100 * time.Millisecond, 1200 * time.Millisecond, false},
		{"killed", 300 * time.Millisecond, 0, 1500 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			decFaultRun(t, tc.timeout, func(t *testing.T, s decFaultServer, c cachekit.Cache) {
				f := decorator.New(cachekit.NewTyped[string](c, nil), func(_ context.Context, id int) (string, error) {
					time.Sleep(20 * time.Millisecond)
					return "v" + strconv.Itoa(id), nil
				}, &decorator.Options[int]{Name: "f", CacheTimeout: tc.cacheTimeout})
				if v, err := f.Call(decBg, 0); err != nil || v != "v0" {
					t.Fatalf("warm-up: %q, %v", v, err)
				}
				f.Wait()
				if tc.kill {
					s.srv.Kill()
				} else {
					s.srv.Freeze()
					t.Cleanup(s.srv.Thaw)
				}
				for id := 1; id <= 3; id++ {
					var v string
					var err error
					took := decTimed(t, func() { v, err = f.Call(decBg, id) })
					if err != nil || v != fmt.Sprint("v", id) {
						t.Fatalf("call %d with the cache %s: %q, %v; want fn's value", id, tc.name, v, err)
					}
					if took > tc.bound {
						t.Errorf("call %d with the cache %s took %v; want fn's value within %v", id, tc.name, took, tc.bound)
					}
				}
				if took := decTimed(t, f.Wait); took > 10*time.Second {
					t.Errorf("Wait took %v; want the writes to end by the cache's timeout", took)
				}
			})
		})
	}
}

// Item 17: the lease is released with the backend's own CompareAndDelete
// (a Lua script on Redis, cas on Memcached), so another process can take it
// at once, and a waiting process gets the holder's value.
func TestDecoratorFaultLeaseReleasedByCompareAndDelete(t *testing.T) {
	decFaultRun(t, 2*time.Second, func(t *testing.T, _ decFaultServer, c cachekit.Cache) {
		if _, ok := c.(cachekit.CompareAndDeleter); !ok {
			t.Fatalf("%T does not implement cachekit.CompareAndDeleter", c)
		}
		f := decorator.New(cachekit.NewTyped[string](c, nil), func(context.Context, string) (string, error) {
			return "v", nil
		}, &decorator.Options[string]{Name: "f", Lease: true, LeaseTTL: time.Minute})
		if v, err := f.Call(decBg, "k"); err != nil || v != "v" {
			t.Fatalf("Call = %q, %v", v, err)
		}
		f.Wait()
		key, _ := f.Key("k")
		lease := "f!" + key[len("f"):] + ":owner" // the decorator's lease key (a lock.Locker key)
		if ok, err := c.Exists(decBg, lease); err != nil || ok {
			t.Fatalf("lease %q still held (%v, %v) after the holder stored the value", lease, ok, err)
		}
		// A lease somebody else holds is not released by us.
		if err := c.Set(decBg, lease, []byte("someone-else"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if ok, err := c.(cachekit.CompareAndDeleter).CompareAndDelete(decBg, lease, []byte("not-their-token")); err != nil || ok {
			t.Fatalf("CompareAndDelete with a wrong token = %v, %v; want false, nil", ok, err)
		}
		if b, err := c.Get(decBg, lease); err != nil || string(b) != "someone-else" {
			t.Fatalf("the other holder's lease = %q, %v", b, err)
		}
	})
}
