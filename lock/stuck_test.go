package lock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	_ "github.com/cachekit/cachekit/backend/memcached"
	_ "github.com/cachekit/cachekit/backend/redis"
	"github.com/cachekit/cachekit/internal/testserver"
	"github.com/cachekit/cachekit/lock"
)

// stuckBound is how long after its 100ms deadline a call on a frozen server
// may take: far more than a loaded machine needs to notice the deadline,
// and well below the one second that the release of an abandoned lease may
// take (a call that waited for that release would take 1s or more).
const stuckBound = 700 * time.Millisecond

// A lock cache on a private server that the test can freeze.
type stuckServer struct {
	name  string
	start func(testing.TB, ...string) *testserver.Server
	url   func(addr string) string
}

var stuckServers = []stuckServer{
	{"redis", testserver.StartRedis, func(a string) string { return "redis://" + a + "/0?namespace=lk&breaker_threshold=0" }},
	{"memcached", testserver.StartMemcached, func(a string) string { return "memcached://" + a + "?namespace=lk&breaker_threshold=0" }},
}

func openStuck(t *testing.T, s stuckServer) (*testserver.Server, cachekit.Cache) {
	t.Helper()
	srv := s.start(t)
	c, err := cachekit.Open(bg, s.url(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Get(bg, "warm"); !errors.Is(err, cachekit.ErrNotFound) { // connect before freezing
		t.Fatalf("warm-up Get: %v", err)
	}
	return srv, c
}

// waitAfterThaw calls wait while srv is frozen, checks that it does not
// return until srv is thawed (the release it waits for cannot end before
// the server answers, or before its one-second bound), then thaws srv and
// waits for wait to return.
func waitAfterThaw(t *testing.T, srv *testserver.Server, wait func()) {
	t.Helper()
	waited := make(chan struct{})
	go func() { wait(); close(waited) }()
	select {
	case <-waited:
		t.Error("Wait returned while the server was frozen: it did not wait for the release of the abandoned lease")
	case <-time.After(100 * time.Millisecond):
	}
	srv.Thaw()
	<-waited
}

// checkFreed checks that the lease of name is gone (the abandoned
// acquisition's release ran) and that the name can be taken again.
func checkFreed(t *testing.T, c cachekit.Cache, l *lock.Locker, name string) {
	t.Helper()
	if ok, err := c.Exists(bg, "lock:"+name+":owner"); ok || err != nil {
		t.Fatalf("lease of %q after Wait: exists=%v (%v); want it released", name, ok, err)
	}
	k, err := l.TryAcquire(bg, name)
	if err != nil {
		t.Fatalf("TryAcquire of %q after the abandoned acquisition: %v", name, err)
	}
	if err := k.Release(bg); err != nil {
		t.Fatal(err)
	}
}

// On a frozen server, TryAcquire and Acquire return by their ctx's
// deadline with its error, although the Add whose outcome they do not know
// may land later; the release of that lease goes on in the background,
// does its work once the server answers again, and Locker.Wait waits for
// it (it does not return while the server is still frozen).
func TestStuckServerAcquire(t *testing.T) {
	for _, s := range stuckServers {
		t.Run(s.name, func(t *testing.T) {
			srv, c := openStuck(t, s)
			l := lock.New(c, &lock.Options{TTL: time.Minute}) // a lease left behind would stay
			for _, op := range []struct {
				name string
				call func(context.Context, string) (*lock.Lock, error)
			}{{"TryAcquire", l.TryAcquire}, {"Acquire", l.Acquire}} {
				name := "stuck-" + op.name
				srv.Freeze()
				ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
				start := time.Now()
				k, err := op.call(ctx, name)
				took := time.Since(start)
				cancel()
				if k != nil || !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("%s on a frozen server: %v, %v; want no lock and DeadlineExceeded", op.name, k, err)
				}
				if !errors.Is(err, cachekit.ErrUnknownOutcome) {
					t.Errorf("%s on a frozen server: %v; want ErrUnknownOutcome (the Add was sent)", op.name, err)
				}
				t.Logf("%s returned after %v: %v", op.name, took, err)
				if took > stuckBound {
					t.Errorf("%s with a 100ms deadline on a frozen server returned after %v, want less than %v", op.name, took, stuckBound)
				}
				waitAfterThaw(t, srv, l.Wait)
				checkFreed(t, c, l, name)
			}
		})
	}
}

// lockCache is what a Locker uses of a backend.
type lockCache interface {
	cachekit.Cache
	cachekit.CompareAndDeleter
	cachekit.CompareAndSwapper
}

// freezeOnIncr freezes its server just before each Increment: the lease
// is stored, its token cannot be taken.
type freezeOnIncr struct {
	lockCache
	srv *testserver.Server
}

func (c freezeOnIncr) Increment(ctx context.Context, key string, d int64) (int64, error) {
	c.srv.Freeze()
	return c.lockCache.Increment(ctx, key, d)
}

// freezeOnIncrV is a freezeOnIncr over a cachekit.Versioner.
type freezeOnIncrV struct {
	freezeOnIncr
	cachekit.Versioner
}

// The server freezes after the lease was stored, during the Increment of
// the fencing token: TryAcquire returns by its deadline, and the lease,
// surely stored this time, is deleted in the background (by version on
// Memcached) once the server answers again.
func TestStuckServerIncrement(t *testing.T) {
	for _, s := range stuckServers {
		t.Run(s.name, func(t *testing.T) {
			srv, c := openStuck(t, s)
			var lc cachekit.Cache = freezeOnIncr{c.(lockCache), srv}
			if v, ok := c.(cachekit.Versioner); ok {
				lc = freezeOnIncrV{freezeOnIncr{c.(lockCache), srv}, v}
			}
			l := lock.New(lc, &lock.Options{TTL: time.Minute})
			ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			k, err := l.TryAcquire(ctx, "res")
			took := time.Since(start)
			if k != nil || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("TryAcquire frozen during its Increment: %v, %v; want no lock and DeadlineExceeded", k, err)
			}
			t.Logf("TryAcquire returned after %v: %v", took, err)
			if took > stuckBound {
				t.Errorf("TryAcquire with a 100ms deadline, frozen during its Increment, returned after %v, want less than %v", took, stuckBound)
			}
			waitAfterThaw(t, srv, l.Wait)
			checkFreed(t, c, lock.New(c, nil), "res")
		})
	}
}
