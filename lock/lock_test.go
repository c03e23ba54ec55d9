package lock_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/lock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var bg = context.Background()

func newMem(t testing.TB) *memory.Cache {
	t.Helper()
	c := memory.New(nil)
	t.Cleanup(func() { c.Close() })
	return c
}

// fast makes waiting Acquires poll often, so the tests don't idle.
var fast = &lock.Options{RetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond}

// eventually polls cond until it holds, or fails after a generous deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// 8 goroutines x 25 critical sections of read-sleep-write on a counter in
// the cache: the counter ends exact, no two sections overlap, and the
// tokens strictly increase in the order the sections ran.
func TestMutualExclusion(t *testing.T) {
	c := newMem(t)
	const workers, each = 8, 25
	var inside atomic.Int32
	var tokens []uint64 // appended inside the critical section only
	var wg sync.WaitGroup
	for w := range workers {
		locker := lock.New(c, fast) // a Locker per worker, as per process
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				k, err := locker.Acquire(bg, "counter")
				if err != nil {
					t.Error(err)
					return
				}
				if n := inside.Add(1); n != 1 {
					t.Errorf("%d holders at once", n)
				}
				tokens = append(tokens, k.Token())
				b, err := c.Get(bg, "n")
				n := 0
				if err == nil {
					n, _ = strconv.Atoi(string(b))
				} else if !errors.Is(err, cachekit.ErrNotFound) {
					t.Error(err)
				}
				time.Sleep(time.Duration(w*each+i) % 3 * 100 * time.Microsecond)
				if err := c.Set(bg, "n", []byte(strconv.Itoa(n+1)), 0); err != nil {
					t.Error(err)
				}
				inside.Add(-1)
				if err := k.Release(bg); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	b, err := c.Get(bg, "n")
	if err != nil || string(b) != strconv.Itoa(workers*each) {
		t.Fatalf("counter %q (%v), want %d", b, err, workers*each)
	}
	checkIncreasing(t, tokens)
	if len(tokens) != workers*each {
		t.Fatalf("%d tokens, want %d", len(tokens), workers*each)
	}
}

func checkIncreasing(t *testing.T, tokens []uint64) {
	t.Helper()
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("token %d of acquisition %d after token %d: tokens must strictly increase", tokens[i], i, tokens[i-1])
		}
	}
}

func TestTryAcquire(t *testing.T) {
	c := newMem(t)
	a, b := lock.New(c, nil), lock.New(c, nil)
	k, err := a.TryAcquire(bg, "job")
	if err != nil {
		t.Fatal(err)
	}
	if k.Name() != "job" || k.Token() != 1 {
		t.Fatalf("first lock: name %q token %d, want job and 1", k.Name(), k.Token())
	}
	for _, l := range []*lock.Locker{a, b} { // the same Locker is no exception
		if _, err := l.TryAcquire(bg, "job"); err != lock.ErrLocked {
			t.Fatalf("TryAcquire of a held lock: %v, want ErrLocked", err)
		}
	}
	other, err := b.TryAcquire(bg, "other job") // names are independent
	if err != nil || other.Token() != 1 {
		t.Fatalf("TryAcquire of another name: %v, token %d", err, other.Token())
	}
	if err := k.Release(bg); err != nil {
		t.Fatal(err)
	}
	k2, err := b.TryAcquire(bg, "job")
	if err != nil {
		t.Fatalf("TryAcquire after Release: %v", err)
	}
	if k2.Token() != 2 {
		t.Fatalf("second acquisition's token %d, want 2", k2.Token())
	}
	if err := k.Release(bg); err != lock.ErrLockLost {
		t.Fatalf("second Release: %v, want ErrLockLost", err)
	}
	if err := k.Extend(bg, 0); err != lock.ErrLockLost {
		t.Fatalf("Extend after Release: %v, want ErrLockLost", err)
	}
	// Neither disturbed the new holder.
	if _, err := a.TryAcquire(bg, "job"); err != lock.ErrLocked {
		t.Fatalf("TryAcquire while k2 holds: %v, want ErrLocked", err)
	}
	if err := k2.Release(bg); err != nil {
		t.Fatal(err)
	}
	if err := other.Release(bg); err != nil {
		t.Fatal(err)
	}
}

// A holder that outlives its TTL loses the lock to the next one; its
// Extend and Release then return ErrLockLost and leave the new holder's
// lease alone.
func TestExpiredHolderLosesLock(t *testing.T) {
	c := newMem(t)
	old := lock.New(c, &lock.Options{TTL: 200 * time.Millisecond})
	next := lock.New(c, &lock.Options{TTL: time.Hour})
	k1, err := old.TryAcquire(bg, "res")
	if err != nil {
		t.Fatal(err)
	}
	var k2 *lock.Lock
	eventually(t, "the lease to expire", func() bool {
		k2, err = next.TryAcquire(bg, "res")
		if err != nil && err != lock.ErrLocked {
			t.Fatal(err)
		}
		return err == nil
	})
	if k2.Token() <= k1.Token() {
		t.Fatalf("new holder's token %d not above the old one's %d", k2.Token(), k1.Token())
	}
	if err := k1.Extend(bg, time.Hour); err != lock.ErrLockLost {
		t.Fatalf("expired holder's Extend: %v, want ErrLockLost", err)
	}
	if err := k1.Release(bg); err != lock.ErrLockLost {
		t.Fatalf("expired holder's Release: %v, want ErrLockLost", err)
	}
	if _, err := old.TryAcquire(bg, "res"); err != lock.ErrLocked {
		t.Fatalf("after the old holder's Extend and Release: %v, want ErrLocked (the new holder keeps it)", err)
	}
	if err := k2.Extend(bg, 0); err != nil {
		t.Fatalf("new holder's Extend: %v", err)
	}
	if err := k2.Release(bg); err != nil {
		t.Fatalf("new holder's Release: %v", err)
	}
}

func TestExtend(t *testing.T) {
	c := newMem(t)
	short := lock.New(c, &lock.Options{TTL: 200 * time.Millisecond})
	var k *lock.Lock
	for attempt := 0; ; attempt++ {
		var err error
		if k, err = short.Acquire(bg, "res"); err != nil {
			t.Fatal(err)
		}
		err = k.Extend(bg, time.Hour)
		if err == nil {
			break
		}
		// A machine too loaded to call Extend within 200ms loses the
		// lease first (the point of ErrLockLost): try again.
		if err != lock.ErrLockLost || attempt == 10 {
			t.Fatal(err)
		}
	}
	time.Sleep(400 * time.Millisecond) // well past the original 200ms
	if _, err := short.TryAcquire(bg, "res"); err != lock.ErrLocked {
		t.Fatalf("TryAcquire after Extend(1h): %v, want ErrLocked", err)
	}
	if err := k.Extend(bg, -time.Second); !errors.Is(err, cachekit.ErrInvalidTTL) {
		t.Fatalf("Extend(-1s): %v, want ErrInvalidTTL", err)
	}
	// Extend(0) is the Locker's TTL again: the lease expires.
	if err := k.Extend(bg, 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the lease extended by the Locker's 200ms TTL to expire", func() bool {
		k2, err := short.TryAcquire(bg, "res")
		if err == nil {
			k2.Release(bg)
		}
		return err == nil
	})
}

func TestAcquireWaitsForRelease(t *testing.T) {
	c := newMem(t)
	l := lock.New(c, fast)
	k1, err := l.Acquire(bg, "res")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *lock.Lock)
	go func() {
		k, err := l.Acquire(bg, "res")
		if err != nil {
			t.Error(err)
		}
		got <- k
	}()
	select {
	case <-got:
		t.Fatal("Acquire returned while the lock was held")
	case <-time.After(50 * time.Millisecond):
	}
	if err := k1.Release(bg); err != nil {
		t.Fatal(err)
	}
	k2 := <-got
	if k2 == nil || k2.Token() != k1.Token()+1 {
		t.Fatalf("waiter got %v", k2)
	}
	k2.Release(bg)
}

func TestAcquireContext(t *testing.T) {
	c := &counting{Cache: newMem(t)}
	l := lock.New(c, fast)
	k, err := l.Acquire(bg, "res")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Release(bg)

	// A deadline that passes while Acquire waits. (Generous, so that the
	// first attempt runs before it on a loaded machine.)
	tctx, cancel := context.WithTimeout(bg, 200*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(tctx, "res"); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("Acquire past its deadline: %v, want DeadlineExceeded and ErrLocked", err)
	}

	// Cancelled during its third attempt (its Add still answers).
	cctx, cancel2 := context.WithCancel(bg)
	adds := c.adds.Load()
	c.onAdd = func() {
		if c.adds.Load() == adds+3 {
			cancel2()
		}
	}
	if _, err := l.Acquire(cctx, "res"); !errors.Is(err, context.Canceled) || !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("cancelled Acquire: %v, want Canceled and ErrLocked", err)
	}
	c.onAdd = nil

	if _, err := l.Acquire(cctx, "free"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a cancelled ctx: %v, want Canceled", err)
	}
	if ok, _ := c.Exists(bg, "lock:free:owner"); ok {
		t.Fatal("a cancelled Acquire left a lease")
	}
}

func TestKeysAndPrefix(t *testing.T) {
	c := newMem(t)
	k, err := lock.New(c, nil).TryAcquire(bg, "a")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"lock:a:owner", "lock:a:fence"} {
		if ok, err := c.Exists(bg, key); err != nil || !ok {
			t.Fatalf("key %q missing (%v)", key, err)
		}
	}
	// A name that ends like a companion key is a lock of its own.
	k2, err := lock.New(c, nil).TryAcquire(bg, "a:fence")
	if err != nil || k2.Token() != 1 {
		t.Fatalf("lock on %q beside one on %q: %v, token %d", "a:fence", "a", err, k2.Token())
	}
	k3, err := lock.New(c, &lock.Options{Prefix: "other/"}).TryAcquire(bg, "a")
	if err != nil || k3.Token() != 1 {
		t.Fatalf("another prefix: %v, token %d", err, k3.Token())
	}
	if ok, _ := c.Exists(bg, "other/a:owner"); !ok {
		t.Fatal("custom prefix not used")
	}
	for _, l := range []*lock.Lock{k, k2, k3} {
		if err := l.Release(bg); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := c.Exists(bg, "lock:a:fence"); !ok {
		t.Fatal("Release deleted the fencing counter")
	}
	if _, err := lock.New(c, nil).TryAcquire(bg, ""); !errors.Is(err, cachekit.ErrInvalidKey) {
		t.Fatalf("empty name: %v, want ErrInvalidKey", err)
	}
}

// counting counts the calls a Locker makes, and can make Increment fail or
// stall. It is a cachekit.Versioner, as the memory cache it wraps: an
// AddVersion counts as an Add, a DeleteVersion as a CompareAndDelete and a
// SwapVersion as a CompareAndSwap, and each also in vers.
type counting struct {
	*memory.Cache
	adds, incrs, cads, cass atomic.Int32
	vers                    atomic.Int32                    // of the above, the versioned calls
	incr                    func(ctx context.Context) error // before each Increment
	onAdd                   func()                          // after each Add
}

func (c *counting) Add(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	c.adds.Add(1)
	err := c.Cache.Add(ctx, key, v, ttl)
	if c.onAdd != nil {
		c.onAdd()
	}
	return err
}

func (c *counting) AddVersion(ctx context.Context, key string, v []byte, ttl time.Duration) (uint64, error) {
	c.adds.Add(1)
	c.vers.Add(1)
	ver, err := c.Cache.AddVersion(ctx, key, v, ttl)
	if c.onAdd != nil {
		c.onAdd()
	}
	return ver, err
}

func (c *counting) DeleteVersion(ctx context.Context, key string, version uint64) (bool, error) {
	c.cads.Add(1)
	c.vers.Add(1)
	return c.Cache.DeleteVersion(ctx, key, version)
}

func (c *counting) SwapVersion(ctx context.Context, key string, version uint64, v []byte, ttl time.Duration) (uint64, bool, error) {
	c.cass.Add(1)
	c.vers.Add(1)
	return c.Cache.SwapVersion(ctx, key, version, v, ttl)
}

func (c *counting) Increment(ctx context.Context, key string, d int64) (int64, error) {
	c.incrs.Add(1)
	if c.incr != nil {
		if err := c.incr(ctx); err != nil {
			return 0, err
		}
	}
	return c.Cache.Increment(ctx, key, d)
}

func (c *counting) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	c.cads.Add(1)
	return c.Cache.CompareAndDelete(ctx, key, old)
}

func (c *counting) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	c.cass.Add(1)
	return c.Cache.CompareAndSwap(ctx, key, old, new, ttl)
}

func (c *counting) calls() int32 {
	return c.adds.Load() + c.incrs.Load() + c.cads.Load() + c.cass.Load()
}

// Uncontended Acquire + Release is three round trips; a TryAcquire of a
// held lock is one; Extend is one.
func TestRoundTrips(t *testing.T) {
	c := &counting{Cache: newMem(t)}
	l := lock.New(c, nil)
	k, err := l.Acquire(bg, "res")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.TryAcquire(bg, "res"); err != lock.ErrLocked {
		t.Fatal(err)
	}
	if n := c.calls(); n != 3 {
		t.Fatalf("Acquire + a failed TryAcquire: %d calls, want 3", n)
	}
	if err := k.Extend(bg, 0); err != nil {
		t.Fatal(err)
	}
	if err := k.Release(bg); err != nil {
		t.Fatal(err)
	}
	if a, i, d, s := c.adds.Load(), c.incrs.Load(), c.cads.Load(), c.cass.Load(); a != 2 || i != 1 || d != 1 || s != 1 {
		t.Fatalf("calls: %d Add, %d Increment, %d CompareAndDelete, %d CompareAndSwap; want 2, 1, 1, 1", a, i, d, s)
	}
}

// Over a Versioner (memory) every call on the lease is versioned; over one
// whose server gives no versions, the Locker falls back to values after
// one refused AddVersion, and the results are the same.
func TestVersionedLeases(t *testing.T) {
	c := &counting{Cache: newMem(t)}
	l := lock.New(c, nil)
	k, err := l.Acquire(bg, "res")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Extend(bg, 0); err != nil {
		t.Fatal(err)
	}
	if err := k.Release(bg); err != nil {
		t.Fatal(err)
	}
	if v, n := c.vers.Load(), c.calls(); v != 3 || n != 4 {
		t.Fatalf("Acquire, Extend, Release over a Versioner: %d versioned calls of %d; want 3 of 4 (AddVersion, Increment, SwapVersion, DeleteVersion)", v, n)
	}

	nv := &noVersions{counting: counting{Cache: newMem(t)}}
	l = lock.New(nv, nil)
	for round := range 3 {
		k, err := l.Acquire(bg, "res")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.TryAcquire(bg, "res"); err != lock.ErrLocked {
			t.Fatalf("round %d: TryAcquire of a held lock: %v, want ErrLocked", round, err)
		}
		if err := k.Extend(bg, 0); err != nil {
			t.Fatal(err)
		}
		if err := k.Release(bg); err != nil {
			t.Fatal(err)
		}
		if err := k.Release(bg); err != lock.ErrLockLost {
			t.Fatalf("round %d: second Release: %v, want ErrLockLost", round, err)
		}
	}
	if n := nv.refused.Load(); n != 1 {
		t.Fatalf("a server without versions was asked for them %d times; want once", n)
	}
	if ok, _ := nv.Exists(bg, "lock:res:owner"); ok {
		t.Fatal("lease left behind")
	}
}

// noVersions is counting over a server that gives no versions.
type noVersions struct {
	counting
	refused atomic.Int32
}

func (c *noVersions) AddVersion(context.Context, string, []byte, time.Duration) (uint64, error) {
	c.refused.Add(1)
	return 0, cachekit.ErrUnsupported
}

func (c *noVersions) SwapVersion(context.Context, string, uint64, []byte, time.Duration) (uint64, bool, error) {
	c.refused.Add(1)
	return 0, false, cachekit.ErrUnsupported
}

func (c *noVersions) DeleteVersion(context.Context, string, uint64) (bool, error) {
	c.refused.Add(1)
	return false, cachekit.ErrUnsupported
}

// An Extend that changes the lease's version while Release runs: Release
// still deletes the lease (it is the Lock's own) and reports success.
func TestExtendDuringRelease(t *testing.T) {
	c := newMem(t)
	l := lock.New(c, &lock.Options{TTL: time.Hour})
	for round := range 200 {
		k, err := l.Acquire(bg, "res")
		if err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		extended := make(chan error, 1)
		go func() {
			<-start
			extended <- k.Extend(bg, 0)
		}()
		close(start)
		if err := k.Release(bg); err != nil {
			t.Fatalf("round %d: Release during an Extend: %v, want nil", round, err)
		}
		if err := <-extended; err != nil && err != lock.ErrLockLost {
			t.Fatalf("round %d: Extend during Release: %v", round, err)
		}
		if ok, _ := c.Exists(bg, "lock:res:owner"); ok {
			t.Fatalf("round %d: the lease is still there after Release", round)
		}
	}
}

// A failure after the Add gives the lease back at once, even when the
// failure is ctx's.
func TestFailedAcquisitionReleases(t *testing.T) {
	c := &counting{Cache: newMem(t)}
	boom := errors.New("boom")
	c.incr = func(context.Context) error { return boom }
	l := lock.New(c, &lock.Options{TTL: time.Hour})
	if _, err := l.TryAcquire(bg, "res"); !errors.Is(err, boom) {
		t.Fatalf("TryAcquire with a failing Increment: %v, want boom", err)
	}
	if ok, _ := c.Exists(bg, "lock:res:owner"); ok {
		t.Fatal("the lease of a failed acquisition is still there")
	}

	cctx, cancel := context.WithCancel(bg)
	c.incr = func(ctx context.Context) error { cancel(); return ctx.Err() }
	if _, err := l.Acquire(cctx, "res"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire cancelled during Increment: %v, want Canceled", err)
	}
	l.Wait() // the release of a cancelled acquisition's lease may go on after it returned
	if ok, _ := c.Exists(bg, "lock:res:owner"); ok {
		t.Fatal("the lease of a cancelled acquisition is still there")
	}
}

// An acquisition whose token came after the TTL had passed is given up:
// TryAcquire returns ErrLockLost, Acquire tries again.
func TestLapsedAcquisition(t *testing.T) {
	c := &counting{Cache: newMem(t)}
	const ttl = 20 * time.Millisecond
	var slow atomic.Int32
	slow.Store(1)
	c.incr = func(context.Context) error {
		if slow.Add(-1) >= 0 {
			time.Sleep(2 * ttl)
		}
		return nil
	}
	l := lock.New(c, &lock.Options{TTL: ttl, RetryDelay: time.Millisecond})
	if _, err := l.TryAcquire(bg, "res"); err != lock.ErrLockLost {
		t.Fatalf("TryAcquire whose Increment outlived the TTL: %v, want ErrLockLost", err)
	}
	slow.Store(1)
	k, err := l.Acquire(bg, "res")
	if err != nil {
		t.Fatal(err)
	}
	// Each Add that succeeded took a token; on a loaded machine a fast
	// attempt may lapse too.
	if k.Token() < 3 || uint64(c.adds.Load()) != k.Token() {
		t.Fatalf("Acquire after a lapsed attempt: token %d after %d Adds, want 3 or more, one per Add", k.Token(), c.adds.Load())
	}
	// The lease may well have expired on a loaded machine: either outcome.
	if err := k.Release(bg); err != nil && err != lock.ErrLockLost {
		t.Fatal(err)
	}
}

func TestUnsupported(t *testing.T) {
	m := newMem(t)
	type bare struct{ cachekit.Cache }
	l := lock.New(bare{m}, nil)
	if _, err := l.TryAcquire(bg, "res"); !errors.Is(err, cachekit.ErrUnsupported) {
		t.Fatalf("TryAcquire without CompareAndDelete: %v, want ErrUnsupported", err)
	}
	if _, err := l.Acquire(bg, "res"); !errors.Is(err, cachekit.ErrUnsupported) {
		t.Fatalf("Acquire without CompareAndDelete: %v, want ErrUnsupported", err)
	}
	if ok, _ := m.Exists(bg, "lock:res:owner"); ok {
		t.Fatal("a lease was taken anyway")
	}

	type cadOnly struct {
		cachekit.Cache
		cachekit.CompareAndDeleter
	}
	k, err := lock.New(cadOnly{m, m}, nil).TryAcquire(bg, "res")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Extend(bg, 0); !errors.Is(err, cachekit.ErrUnsupported) {
		t.Fatalf("Extend without CompareAndSwap: %v, want ErrUnsupported", err)
	}
	if err := k.Release(bg); err != nil {
		t.Fatal(err)
	}
}

// Through WithHooks, which keeps both optional interfaces.
func TestThroughHooks(t *testing.T) {
	c := cachekit.WithHooks(newMem(t), cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		return op.Next(ctx)
	}))
	k, err := lock.New(c, nil).Acquire(bg, "res")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Extend(bg, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := k.Release(bg); err != nil {
		t.Fatal(err)
	}
}

// Concurrent Releases of one Lock: exactly one succeeds.
func TestConcurrentRelease(t *testing.T) {
	c := newMem(t)
	k, err := lock.New(c, nil).TryAcquire(bg, "res")
	if err != nil {
		t.Fatal(err)
	}
	var ok, lost atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := k.Release(bg); err {
			case nil:
				ok.Add(1)
			case lock.ErrLockLost:
				lost.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || lost.Load() != 7 {
		t.Fatalf("%d Releases succeeded and %d lost, want 1 and 7", ok.Load(), lost.Load())
	}
}

func TestNilAndOddOptions(t *testing.T) {
	c := newMem(t)
	for _, o := range []*lock.Options{nil, {}, {TTL: -1, RetryDelay: -1, MaxRetryDelay: -1}, {RetryDelay: 50 * time.Millisecond, MaxRetryDelay: time.Millisecond}} {
		l := lock.New(c, o)
		k, err := l.Acquire(bg, "res")
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		if err := k.Release(bg); err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	c := newMem(b)
	l := lock.New(c, nil)
	b.ReportAllocs()
	for b.Loop() {
		k, err := l.Acquire(bg, "res")
		if err != nil {
			b.Fatal(err)
		}
		if err := k.Release(bg); err != nil {
			b.Fatal(err)
		}
	}
}

// unknownAdd is a cache whose Add stores the value but reports a lost
// reply.
type unknownAdd struct{ *memory.Cache }

func (c unknownAdd) Add(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if err := c.Cache.Add(ctx, key, v, ttl); err != nil {
		return err
	}
	return &cachekit.Error{Op: "Add", Key: key, Err: cachekit.ErrUnknownOutcome}
}

func (c unknownAdd) AddVersion(ctx context.Context, key string, v []byte, ttl time.Duration) (uint64, error) {
	if _, err := c.Cache.AddVersion(ctx, key, v, ttl); err != nil {
		return 0, err
	}
	return 0, &cachekit.Error{Op: "AddVersion", Key: key, Err: cachekit.ErrUnknownOutcome}
}

// An Add whose outcome is unknown: the error, and no lease left behind.
func TestUnknownOutcomeReleases(t *testing.T) {
	m := newMem(t)
	_, err := lock.New(unknownAdd{m}, &lock.Options{TTL: time.Hour}).Acquire(bg, "res")
	if !errors.Is(err, cachekit.ErrUnknownOutcome) {
		t.Fatalf("Acquire with a lost Add reply: %v, want ErrUnknownOutcome", err)
	}
	if ok, _ := m.Exists(bg, "lock:res:owner"); ok {
		t.Fatal("the lease of an Add with an unknown outcome is still there")
	}
}

// With NoFence an acquisition is the Add alone: no Increment, no fencing
// counter left behind, token 0; the lease still excludes and is released
// only by its holder.
func TestNoFence(t *testing.T) {
	c := &counting{Cache: newMem(t)}
	l := lock.New(c, &lock.Options{NoFence: true, TTL: time.Hour})
	k, err := l.Acquire(bg, "res")
	if err != nil {
		t.Fatal(err)
	}
	if k.Token() != 0 {
		t.Fatalf("token %d with NoFence, want 0", k.Token())
	}
	if _, err := l.TryAcquire(bg, "res"); err != lock.ErrLocked {
		t.Fatalf("TryAcquire of a held lock: %v, want ErrLocked", err)
	}
	if err := k.Release(bg); err != nil {
		t.Fatal(err)
	}
	if err := k.Release(bg); err != lock.ErrLockLost {
		t.Fatalf("second Release: %v, want ErrLockLost", err)
	}
	if a, i, d := c.adds.Load(), c.incrs.Load(), c.cads.Load(); a != 2 || i != 0 || d != 1 {
		t.Fatalf("calls: %d Add, %d Increment, %d CompareAndDelete; want 2, 0, 1", a, i, d)
	}
	for _, key := range []string{"lock:res:owner", "lock:res:fence"} {
		if ok, _ := c.Exists(bg, key); ok {
			t.Fatalf("key %q left behind", key)
		}
	}
}
