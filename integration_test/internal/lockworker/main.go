// Command lockworker is one OS process of the lock and Update tests in
// integration_test/lock_test.go, which builds it and runs several at once
// against a real server. It is not meant to be run by hand.
//
//	lockworker -url URL -mode mutex  -n 25    # n critical sections under a lock
//	lockworker -url URL -mode update -n 25    # n successful Typed.Updates
//	lockworker -url URL -mode hold -ttl 1s    # take a lock, wait for a line on stdin, then Extend and Release
//
// It reports on stdout, one line per fact, for the test to parse; any
// failure goes to stderr with exit status 1.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/cachekit/cachekit"
	_ "github.com/cachekit/cachekit/backend/memcached"
	_ "github.com/cachekit/cachekit/backend/redis"
	"github.com/cachekit/cachekit/lock"
)

// Counter is the struct whose field the update mode increments.
type Counter struct {
	N     int    `json:"n"`
	Other int    `json:"other"` // the test's own process increments this one
	Note  string `json:"note"`
}

func main() {
	url := flag.String("url", "", "cache URL (with its namespace)")
	mode := flag.String("mode", "", "mutex, update or hold")
	n := flag.Int("n", 25, "critical sections (mutex) or updates (update)")
	ttl := flag.Duration("ttl", 10*time.Second, "lock TTL")
	start := flag.Int64("start", 0, "start at this time (Unix nanoseconds), so that the processes overlap")
	flag.Parse()

	ctx := context.Background()
	c, err := cachekit.Open(ctx, *url)
	if err != nil {
		fail(err)
	}
	defer c.Close()
	if *start != 0 {
		time.Sleep(time.Until(time.Unix(0, *start)))
	}
	switch *mode {
	case "mutex":
		err = mutex(ctx, c, *n, *ttl)
	case "update":
		err = update(ctx, c, *n)
	case "hold":
		err = hold(ctx, c, *ttl)
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		c.Close()
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "lockworker:", err)
	os.Exit(1)
}

// mutex runs n critical sections of read-sleep-write on the raw key
// "counter" under the lock "counter", printing for each the value it read
// and its token: "cs n=<read> token=<token>".
func mutex(ctx context.Context, c cachekit.Cache, n int, ttl time.Duration) error {
	locker := lock.New(c, &lock.Options{TTL: ttl, RetryDelay: 2 * time.Millisecond, MaxRetryDelay: 20 * time.Millisecond})
	for range n {
		k, err := locker.Acquire(ctx, "counter")
		if err != nil {
			return err
		}
		v := 0
		b, err := c.Get(ctx, "counter")
		switch {
		case err == nil:
			if v, err = strconv.Atoi(string(b)); err != nil {
				return err
			}
		case !errors.Is(err, cachekit.ErrNotFound):
			return err
		}
		time.Sleep(2 * time.Millisecond) // widen the window a second holder would need
		if err := c.Set(ctx, "counter", []byte(strconv.Itoa(v+1)), 0); err != nil {
			return err
		}
		fmt.Printf("cs n=%d token=%d\n", v, k.Token())
		if err := k.Release(ctx); err != nil {
			return fmt.Errorf("release: %w", err)
		}
	}
	return nil
}

// update makes n successful Updates incrementing Counter.N under the key
// "struct", retrying those that give up with ErrConflict, and prints
// "updates=<n> conflicts=<count>".
func update(ctx context.Context, c cachekit.Cache, n int) error {
	t := cachekit.NewTyped[Counter](c, nil)
	conflicts := 0
	for done := 0; done < n; {
		_, err := t.Update(ctx, "struct", func(old Counter, found bool) (Counter, error) {
			old.N++
			old.Note = "pid " + strconv.Itoa(os.Getpid())
			return old, nil
		})
		switch {
		case err == nil:
			done++
		case errors.Is(err, cachekit.ErrConflict):
			conflicts++
		default:
			return err
		}
	}
	fmt.Printf("updates=%d conflicts=%d\n", n, conflicts)
	return nil
}

// hold takes the lock "held" (free: the test starts it first) with ttl and prints "acquired token=<token>",
// then waits for a line on stdin (the test freezes the process meanwhile),
// then calls Extend and Release and prints what they returned:
// "extend-lost=<bool> release-lost=<bool> extend=<err> release=<err>".
func hold(ctx context.Context, c cachekit.Cache, ttl time.Duration) error {
	k, err := lock.New(c, &lock.Options{TTL: ttl}).Acquire(ctx, "held")
	if err != nil {
		return err
	}
	fmt.Printf("acquired token=%d\n", k.Token())
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	extend := k.Extend(ctx, time.Minute)
	release := k.Release(ctx)
	fmt.Printf("extend-lost=%t release-lost=%t extend=%v release=%v\n",
		errors.Is(extend, lock.ErrLockLost), errors.Is(release, lock.ErrLockLost), extend, release)
	return nil
}
