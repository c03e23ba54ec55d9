package cachekit_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/serializer"
)

func ExampleOpen() {
	ctx := context.Background()
	// The memory backend registers mem:// when imported; Redis and Memcached
	// register redis:// and memcached:// the same way.
	c, err := cachekit.Open(ctx, "mem://?max_bytes=16MiB&namespace=example")
	if err != nil {
		panic(err)
	}
	defer c.Close()

	_ = c.Set(ctx, "greeting", []byte("hello"), time.Minute)
	b, _ := c.Get(ctx, "greeting")
	fmt.Println(string(b))

	_, err = cachekit.Open(ctx, "mem://?max_bytez=1")
	fmt.Println(errors.Is(err, cachekit.ErrInvalidURL))
	// Output:
	// hello
	// true
}

func ExampleTyped() {
	type Profile struct {
		Name  string `json:"name"`
		Karma int    `json:"karma"`
	}
	ctx := context.Background()
	c := memory.New(nil)
	defer c.Close()

	profiles := cachekit.NewTyped[Profile](c, &cachekit.TypedOptions{
		Serializer: serializer.MsgPack{},
		TTL:        10 * time.Minute,
	})
	_ = profiles.Set(ctx, "user:1", Profile{Name: "Ada", Karma: 42})

	p, err := profiles.Get(ctx, "user:1")
	fmt.Println(p.Name, p.Karma, err)

	_, err = profiles.Get(ctx, "user:2")
	fmt.Println(errors.Is(err, cachekit.ErrNotFound))
	// Output:
	// Ada 42 <nil>
	// true
}

func ExampleTyped_GetOrLoad() {
	ctx := context.Background()
	c := memory.New(nil)
	defer c.Close()
	prices := cachekit.NewTyped[float64](c, &cachekit.TypedOptions{TTL: time.Minute})
	defer prices.Wait() // before c.Close: GetOrLoad writes loaded values in the background

	load := func(ctx context.Context) (float64, error) {
		fmt.Println("loading from the database")
		return 9.99, nil
	}
	for range 2 {
		p, err := prices.GetOrLoad(ctx, "price:book", load)
		fmt.Println(p, err)
	}
	// Output:
	// loading from the database
	// 9.99 <nil>
	// 9.99 <nil>
}

func ExampleWithTTL() {
	ctx := context.Background()
	c := memory.New(nil)
	defer c.Close()
	sessions := cachekit.NewTyped[string](c, &cachekit.TypedOptions{TTL: time.Hour})

	_ = sessions.Set(ctx, "s:1", "alice")                                      // expires in an hour
	_ = sessions.Set(ctx, "s:2", "bob", cachekit.WithTTL(10*time.Millisecond)) // expires soon
	time.Sleep(30 * time.Millisecond)

	got, _ := sessions.GetMany(ctx, []string{"s:1", "s:2"})
	fmt.Println(len(got), got["s:1"])
	// Output:
	// 1 alice
}

func ExampleLocalOptions() {
	ctx := context.Background()
	shared := memory.New(&memory.Options{Namespace: "app"}) // Redis or Memcached in production
	defer shared.Close()
	bp := cachekit.NewMemoryBackplane() // cachekit.OpenBackplane(ctx, "redis://...?channel=app") across processes
	defer bp.Close()

	// Two Typed over the same cache, as two processes would have.
	opts := &cachekit.TypedOptions{
		TTL:       10 * time.Minute,
		Local:     &cachekit.LocalOptions{MaxEntries: 10_000, TTL: time.Minute},
		Backplane: bp,
	}
	a := cachekit.NewTyped[string](shared, opts)
	defer a.Close()
	b := cachekit.NewTyped[string](shared, opts)
	defer b.Close()

	_ = a.Set(ctx, "greeting", "hello")
	v, _ := b.Get(ctx, "greeting") // from the cache, then kept decoded in b
	fmt.Println(v)

	_ = a.Set(ctx, "greeting", "bonjour") // publishes: b drops its copy
	v, _ = b.Get(ctx, "greeting")
	fmt.Println(v)

	_ = a.Set(ctx, "product:1", "book", cachekit.WithTags("catalog"))
	_ = b.InvalidateTags(ctx, "catalog")
	_, err := a.Get(ctx, "product:1")
	fmt.Println(errors.Is(err, cachekit.ErrNotFound))
	// Output:
	// hello
	// bonjour
	// true
}
