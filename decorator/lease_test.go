package decorator_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/decorator"
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
	key, _ := f.Key("cold")
	if ok, _ := mem.Exists(bg, "f!"+key[len("f"):]); ok {
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
	key, _ := f.Key("k")
	lease := "f!" + key[len("f"):]
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
	lease := "f!" + key[len("f"):]
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
	key, _ := f.Key("k")
	lease := "f!" + key[len("f"):]
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
