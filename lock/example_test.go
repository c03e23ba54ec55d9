package lock_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/lock"
)

// Acquire waits until the lock is free; Release gives it back. With Redis or
// Memcached instead of the memory backend, the Lockers of every process
// over the same server and namespace exclude each other.
func ExampleLocker_Acquire() {
	ctx := context.Background()
	c := memory.New(nil)
	defer c.Close()
	locker := lock.New(c, &lock.Options{TTL: 30 * time.Second})

	for range 2 {
		l, err := locker.Acquire(ctx, "report:2026-11")
		if err != nil {
			fmt.Println(err)
			return
		}
		// ... build the report, passing l.Token() with each write ...
		fmt.Println("holding", l.Name(), "with token", l.Token())
		if err := l.Release(ctx); err != nil {
			fmt.Println(err) // ErrLockLost: the lease expired first
		}
	}
	// Output:
	// holding report:2026-11 with token 1
	// holding report:2026-11 with token 2
}

// TryAcquire does not wait: ErrLocked means somebody else is on it.
func ExampleLocker_TryAcquire() {
	ctx := context.Background()
	c := memory.New(nil)
	defer c.Close()
	locker := lock.New(c, nil)

	held, _ := locker.TryAcquire(ctx, "rebuild-index")
	_, err := locker.TryAcquire(ctx, "rebuild-index")
	fmt.Println(errors.Is(err, lock.ErrLocked))
	held.Release(ctx)
	// Output:
	// true
}

// Extend renews a lease that is still the holder's. A holder that outlives
// its lease loses the lock: the next holder gets a greater token, and the
// old holder's Extend and Release report ErrLockLost without touching the
// new lease.
func ExampleLock_Extend() {
	ctx := context.Background()
	c := memory.New(nil)
	defer c.Close()
	locker := lock.New(c, &lock.Options{TTL: time.Minute})

	first, _ := locker.Acquire(ctx, "job")
	fmt.Println(first.Extend(ctx, 2*time.Minute)) // still ours: a new 2-minute lease
	// For the example, a lease that runs out at once, as if first had
	// paused past its TTL.
	first.Extend(ctx, time.Millisecond)
	second, _ := locker.Acquire(ctx, "job") // waits until first's lease has expired

	fmt.Println(second.Token() > first.Token())
	fmt.Println(first.Extend(ctx, time.Minute))
	fmt.Println(first.Release(ctx))
	fmt.Println(second.Release(ctx))
	// Output:
	// <nil>
	// true
	// lock: lease lost (expired, evicted or released)
	// lock: lease lost (expired, evicted or released)
	// <nil>
}

// The fencing token protects the resource from a holder that lost its
// lease without knowing it: the resource remembers the greatest token it
// has accepted and refuses writes with a smaller one.
func ExampleLock_Token() {
	ctx := context.Background()
	c := memory.New(nil)
	defer c.Close()
	locker := lock.New(c, &lock.Options{TTL: time.Minute})

	var accepted uint64 // the resource's side: the greatest token seen
	write := func(token uint64, what string) {
		if token < accepted {
			fmt.Printf("%s refused: token %d < %d\n", what, token, accepted)
			return
		}
		accepted = token
		fmt.Printf("%s written with token %d\n", what, token)
	}

	paused, _ := locker.Acquire(ctx, "account:7")
	// paused stops (a long GC pause, a frozen VM) until its lease has run
	// out; for the example, a lease cut to 1ms does the same.
	paused.Extend(ctx, time.Millisecond)
	next, _ := locker.Acquire(ctx, "account:7") // waits for the lease to expire
	write(next.Token(), "next")
	write(paused.Token(), "paused") // too late: refused
	next.Release(ctx)
	// Output:
	// next written with token 2
	// paused refused: token 1 < 2
}
