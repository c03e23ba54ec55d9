package decorator_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/decorator"
	"github.com/cachekit/cachekit/lock"
)

// Four decorated functions over one storage stand for four processes: each
// has its own single-flight group, so only the lease keeps them from all
// running fn.
func TestLeaseRunsFnOnceAcrossClients(t *testing.T) {
	mem := newMem(t)
	var calls atomic.Int32
	fn := func(context.Context, string) (string, error) {
		calls.Add(1)
		time.Sleep(100 * time.Millisecond)
		return "v", nil
	}
	const clients, perClient = 4, 25
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range clients {
		c := cachekit.NewTyped[string](newSpy(mem), nil) // a view of its own over the shared storage
		f := decorator.Cached(c, fn, &decorator.Options[string]{Name: "f", Lease: true})
		for range perClient {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if v, err := f(bg, "cold"); err != nil || v != "v" {
					t.Errorf("got %q, %v", v, err)
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("fn ran %d times across %d clients; want 1", n, clients)
	}
	// The lease was released.
	f := decorator.New(cachekit.NewTyped[string](mem, nil), fn, &decorator.Options[string]{Name: "f"})
	if ok, _ := mem.Exists(bg, decorator.LeaseKey(f, "cold")); ok {
		t.Fatal("the lease key is still there after the load")
	}
}

// Without the lease, the same four clients each run fn: the test above
// would fail if the lease did nothing.
func TestWithoutLeaseEachClientRunsFn(t *testing.T) {
	mem := newMem(t)
	var calls atomic.Int32
	release := make(chan struct{})
	fn := func(context.Context, string) (string, error) {
		calls.Add(1)
		<-release
		return "v", nil
	}
	var wg sync.WaitGroup
	for range 4 {
		f := decorator.Cached(cachekit.NewTyped[string](mem, nil), fn, &decorator.Options[string]{Name: "f"})
		wg.Add(1)
		go func() { defer wg.Done(); f(bg, "cold") }()
	}
	eventually(t, "every client to run fn", func() bool { return calls.Load() == 4 })
	close(release)
	wg.Wait()
}

// A holder that dies leaves its lease to expire; a waiter then finds no
// value, wins the lease and runs fn.
func TestLeaseOfADeadHolderExpires(t *testing.T) {
	s := newSpy(newMem(t))
	c := cachekit.NewTyped[string](s, nil)
	var calls atomic.Int32
	f := decorator.New(c, func(context.Context, string) (string, error) { calls.Add(1); return "v", nil },
		&decorator.Options[string]{Name: "f", Lease: true, LeasePoll: 5 * time.Millisecond})
	lease := decorator.LeaseKey(f, "k")
	if err := s.Add(bg, lease, []byte("dead-process"), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if v, err := f.Call(bg, "k"); err != nil || v != "v" {
		t.Fatalf("got %q, %v", v, err)
	}
	if calls.Load() != 1 || s.count(cachekit.EventStampedeJoin) != 1 {
		t.Fatalf("calls %d, joins %d; want 1 and 1 (waited for the lease, then ran fn)", calls.Load(), s.count(cachekit.EventStampedeJoin))
	}
}

// A waiter that finds the value the holder stored returns it without
// running fn, and a waiter's ctx bounds its wait.
func TestLeaseWaiterGetsTheHoldersValue(t *testing.T) {
	mem := newMem(t)
	s := newSpy(mem)
	f := decorator.New(cachekit.NewTyped[string](s, nil),
		func(context.Context, string) (string, error) { t.Error("the waiter ran fn"); return "", nil },
		&decorator.Options[string]{Name: "f", Lease: true, LeasePoll: 5 * time.Millisecond})
	key, _ := f.Key("k")
	lease := decorator.LeaseKey(f, "k")
	mem.Add(bg, lease, []byte("other"), time.Minute)

	ctx, cancel := context.WithTimeout(bg, 30*time.Millisecond)
	defer cancel()
	if _, err := f.Call(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting past ctx: %v; want DeadlineExceeded", err)
	}

	holder := cachekit.NewTyped[string](mem, nil)
	go func() {
		time.Sleep(30 * time.Millisecond)
		holder.Set(bg, key, "holder's")
	}()
	if v, err := f.Call(bg, "k"); err != nil || v != "holder's" {
		t.Fatalf("got %q, %v; want the holder's value", v, err)
	}
	if ok, _ := mem.Exists(bg, lease); !ok {
		t.Fatal("a waiter deleted the holder's lease")
	}
}

// Unlock checks the owner: a holder whose lease expired while fn ran must
// not delete the lease another process has won since.
func TestLeaseUnlockChecksTheOwner(t *testing.T) {
	mem := newMem(t)
	started := make(chan struct{})
	release := make(chan struct{})
	f := decorator.New(cachekit.NewTyped[string](mem, nil), func(context.Context, string) (string, error) {
		close(started)
		<-release
		return "v", nil
	}, &decorator.Options[string]{Name: "f", Lease: true, LeaseTTL: 50 * time.Millisecond})
	lease := decorator.LeaseKey(f, "k")
	done := make(chan struct{})
	go func() { defer close(done); f.Call(bg, "k") }()
	<-started
	eventually(t, "the lease to expire", func() bool { ok, _ := mem.Exists(bg, lease); return !ok })
	if err := mem.Add(bg, lease, []byte("next-holder"), time.Minute); err != nil {
		t.Fatal(err)
	}
	close(release)
	<-done
	if b, err := mem.Get(bg, lease); err != nil || string(b) != "next-holder" {
		t.Fatalf("lease = %q, %v; the old holder deleted the new holder's lease", b, err)
	}
}

// casCache is a Cache that implements decorator.CompareAndDeleter.
type casCache struct {
	cachekit.Cache
	mu    sync.Mutex
	calls int
}

func (c *casCache) CompareAndDelete(ctx context.Context, key string, value []byte) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	b, err := c.Cache.Get(ctx, key)
	if err != nil || string(b) != string(value) {
		return false, nil
	}
	_, err = c.Cache.Delete(ctx, key)
	return err == nil, err
}

func TestLeaseUsesCompareAndDelete(t *testing.T) {
	cc := &casCache{Cache: newMem(t)}
	f := decorator.New(cachekit.NewTyped[string](cc, nil), func(context.Context, string) (string, error) { return "v", nil },
		&decorator.Options[string]{Name: "f", Lease: true})
	if _, err := f.Call(bg, "k"); err != nil {
		t.Fatal(err)
	}
	f.Wait() // the lease is released after the write, in the background
	if cc.calls != 1 {
		t.Fatalf("CompareAndDelete called %d times; want 1", cc.calls)
	}
}

// A holder whose lease expired while fn ran releases after storing its
// value, by then into a lease that another process won: the other
// process's lease survives, and the second holder later releases its own
// lease normally. With CompareAndDelete the first holder reports the lost
// lease; the fallback for caches without it leaves an expired lease alone
// without looking.
func TestLeaseReleaseSparesTheNextHoldersLease(t *testing.T) {
	for _, atomicRelease := range []bool{true, false} {
		mem := newMem(t)
		var c cachekit.Cache = mem
		if !atomicRelease {
			c = bare{mem}
		}
		var errs1, errs2 errorLog
		started1, release1 := make(chan struct{}), make(chan struct{})
		first := decorator.New(cachekit.NewTyped[string](c, nil), func(context.Context, string) (string, error) {
			close(started1)
			<-release1
			return "first", nil
		}, &decorator.Options[string]{Name: "f", Lease: true, LeaseTTL: 50 * time.Millisecond, OnError: errs1.onError})
		started2, release2 := make(chan struct{}), make(chan struct{})
		second := decorator.New(cachekit.NewTyped[string](c, nil), func(context.Context, string) (string, error) {
			close(started2)
			<-release2
			return "second", nil
		}, &decorator.Options[string]{Name: "f", Lease: true, LeaseTTL: time.Minute, OnError: errs2.onError})
		lease := decorator.LeaseKey(first, "k")

		done1 := make(chan string)
		go func() { v, _ := first.Call(bg, "k"); done1 <- v }()
		<-started1
		eventually(t, "the first holder's lease to expire", func() bool { ok, _ := mem.Exists(bg, lease); return !ok })
		done2 := make(chan string)
		go func() { v, _ := second.Call(bg, "k"); done2 <- v }()
		<-started2 // the second process found no value and no lease: it won the lease
		if ok, _ := mem.Exists(bg, lease); !ok {
			t.Fatalf("atomic %v: the second holder runs fn without a lease", atomicRelease)
		}

		close(release1)
		if v := <-done1; v != "first" {
			t.Fatalf("atomic %v: first holder got %q", atomicRelease, v)
		}
		first.Wait() // its write and its release have ended
		if ok, _ := mem.Exists(bg, lease); !ok {
			t.Fatalf("atomic %v: the first holder's release deleted the second holder's lease", atomicRelease)
		}
		if err := mem.Add(bg, lease, []byte("third"), time.Minute); !errors.Is(err, cachekit.ErrExists) {
			t.Fatalf("atomic %v: a third process's Add of the lease: %v; want ErrExists, the second holder's lease", atomicRelease, err)
		}
		errs := errs1.all()
		if atomicRelease && (len(errs) != 1 || !errors.Is(errs[0], lock.ErrLockLost)) {
			t.Fatalf("first holder's OnError: %v; want one error wrapping lock.ErrLockLost", errs)
		}
		if !atomicRelease && (len(errs) != 1 || !errors.Is(errs[0], cachekit.ErrUnsupported)) {
			t.Fatalf("first holder's OnError: %v; want the notice of the fallback only", errs)
		}

		close(release2)
		if v := <-done2; v != "second" {
			t.Fatalf("atomic %v: second holder got %q", atomicRelease, v)
		}
		second.Wait()
		// Its release found its own lease, and it is gone.
		if ok, _ := mem.Exists(bg, lease); ok {
			t.Fatalf("atomic %v: the second holder did not release its lease", atomicRelease)
		}
		for _, err := range errs2.all() {
			if !errors.Is(err, cachekit.ErrUnsupported) || atomicRelease {
				t.Fatalf("atomic %v: second holder's OnError: %v", atomicRelease, err)
			}
		}
	}
}

// The lease key is the documented one: the escaped name, "!", the data key
// after the name, ":owner"; when that would be longer than MaxKeySize,
// "!=", the SHA-256 of that rest, ":owner". Both are usable: the lease is
// held while fn runs and released after.
func TestLeaseKeys(t *testing.T) {
	mem := newMem(t)
	var errs errorLog
	held, release := make(chan struct{}, 1), make(chan struct{})
	fn := func(context.Context, string) (string, error) {
		held <- struct{}{}
		<-release
		return "v", nil
	}
	short := decorator.New(cachekit.NewTyped[string](mem, nil), fn,
		&decorator.Options[string]{Name: "f", Lease: true, OnError: errs.onError})
	key, _ := short.Key("k")
	if got, want := decorator.LeaseKey(short, "k"), "f!"+key[len("f"):]+":owner"; got != want {
		t.Fatalf("lease key %q; want %q", got, want)
	}
	long := strings.Repeat("x", cachekit.MaxKeySize-1-len("g:")) // the longest data key that is not hashed
	lengthy := decorator.New(cachekit.NewTyped[string](mem, nil), fn,
		&decorator.Options[string]{Name: "g", Lease: true, OnError: errs.onError, KeyFunc: func(s string) string { return s }})
	if key, _ := lengthy.Key(long); key != "g:"+long {
		t.Fatalf("data key of %d bytes was changed", len(key))
	}
	lk := decorator.LeaseKey(lengthy, long)
	if len(lk) > cachekit.MaxKeySize || !strings.HasPrefix(lk, "g!=") || !strings.HasSuffix(lk, ":owner") {
		t.Fatalf("lease key of a long data key: %q (%d bytes)", lk, len(lk))
	}
	for _, c := range []struct {
		f     *decorator.Func[string, string]
		arg   string
		lease string
	}{{short, "k", decorator.LeaseKey(short, "k")}, {lengthy, long, lk}} {
		done := make(chan struct{})
		go func() { defer close(done); c.f.Call(bg, c.arg) }()
		<-held
		if ok, _ := mem.Exists(bg, c.lease); !ok {
			t.Fatalf("lease %.40q... not held while fn runs", c.lease)
		}
		release <- struct{}{}
		<-done
		c.f.Wait()
		if ok, _ := mem.Exists(bg, c.lease); ok {
			t.Fatalf("lease %.40q... not released", c.lease)
		}
	}
	if errs := errs.all(); len(errs) != 0 {
		t.Fatalf("OnError: %v", errs)
	}
}

// bare hides every optional interface of the cache it wraps.
type bare struct{ cachekit.Cache }

// Over a cache without CompareAndDelete (a wrapper that hides it, say),
// the lease still holds: four clients run fn once, the lease is released
// by the fallback (Get, compare, Delete), and OnError hears once per
// client (of those that loaded: a client scheduled late may only hit) that
// the release is not atomic.
func TestLeaseWithoutCompareAndDelete(t *testing.T) {
	mem := newMem(t)
	var calls atomic.Int32
	fn := func(context.Context, string) (string, error) {
		calls.Add(1)
		time.Sleep(50 * time.Millisecond)
		return "v", nil
	}
	const clients, perClient = 4, 10
	logs := make([]errorLog, clients)
	var wg sync.WaitGroup
	start := make(chan struct{})
	var fs []*decorator.Func[string, string]
	for i := range clients {
		f := decorator.New(cachekit.NewTyped[string](bare{mem}, nil), fn,
			&decorator.Options[string]{Name: "f", Lease: true, LeasePoll: time.Millisecond, OnError: logs[i].onError})
		fs = append(fs, f)
		for range perClient {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for _, k := range []string{"a", "b"} {
					if v, err := f.Call(bg, k); err != nil || v != "v" {
						t.Errorf("got %q, %v", v, err)
					}
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	if n := calls.Load(); n != 2 {
		t.Fatalf("fn ran %d times for 2 keys across %d clients; want 2", n, clients)
	}
	for _, f := range fs { // any client may release a lease in the background
		f.Wait()
	}
	told := 0
	for i, f := range fs {
		for _, k := range []string{"a", "b"} {
			if ok, _ := mem.Exists(bg, decorator.LeaseKey(f, k)); ok {
				t.Fatalf("the lease of %q is still there", k)
			}
		}
		errs := logs[i].all()
		var ce *cachekit.Error
		if len(errs) > 1 || len(errs) == 1 && (!errors.Is(errs[0], cachekit.ErrUnsupported) || !errors.As(errs[0], &ce) || ce.Op != "Lease") {
			t.Fatalf("client %d's OnError: %v; want at most one *cachekit.Error (Op Lease) wrapping ErrUnsupported", i, errs)
		}
		told += len(errs)
	}
	if told == 0 {
		t.Fatal("no client's OnError heard of the fallback")
	}
}
