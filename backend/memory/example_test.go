package memory_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
)

func Example() {
	ctx := context.Background()
	c := memory.New(&memory.Options{MaxBytes: 16 << 20})
	defer c.Close()

	if err := c.Set(ctx, "greeting", []byte("hello"), time.Minute); err != nil {
		panic(err)
	}
	v, err := c.Get(ctx, "greeting")
	fmt.Println(string(v), err)

	_, err = c.Get(ctx, "absent")
	fmt.Println(errors.Is(err, cachekit.ErrNotFound))

	n, _ := c.Increment(ctx, "visits", 1)
	n, _ = c.Increment(ctx, "visits", 1)
	fmt.Println(n)
	// Output:
	// hello <nil>
	// true
	// 2
}

// A blank import of the package makes mem:// and memory:// URLs available
// to cachekit.Open.
func Example_open() {
	ctx := context.Background()
	c, err := cachekit.Open(ctx, "mem://?max_bytes=64MiB&namespace=app")
	if err != nil {
		panic(err)
	}
	defer c.Close()

	err = c.Add(ctx, "lock", []byte("owner-1"), 30*time.Second)
	fmt.Println(err)
	err = c.Add(ctx, "lock", []byte("owner-2"), 30*time.Second)
	fmt.Println(errors.Is(err, cachekit.ErrExists))
	// Output:
	// <nil>
	// true
}

// Several namespaces can share one storage and its MaxBytes budget.
func ExampleCache_WithNamespace() {
	ctx := context.Background()
	root := memory.New(&memory.Options{MaxBytes: 256 << 20})
	defer root.Close() // closes the views too
	sessions := root.WithNamespace("sessions")
	users := root.WithNamespace("users")

	_ = sessions.Set(ctx, "42", []byte("session data"), time.Hour)
	_ = users.Set(ctx, "42", []byte("user data"), 0)

	_ = sessions.Clear(ctx) // removes the sessions only
	_, err := sessions.Get(ctx, "42")
	fmt.Println(errors.Is(err, cachekit.ErrNotFound))
	v, _ := users.Get(ctx, "42")
	fmt.Println(string(v))
	// Output:
	// true
	// user data
}
