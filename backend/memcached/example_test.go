package memcached_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memcached"
)

// Example wraps a gomemcache client for a pool of two servers, spread by
// consistent hashing, in a namespaced cache. It needs running servers, so it
// is compiled but not run.
func Example() {
	ring, err := memcached.NewRing("127.0.0.1:11211", "127.0.0.1:11212")
	if err != nil {
		log.Fatal(err)
	}
	client := memcache.NewFromSelector(ring)
	client.Timeout = 100 * time.Millisecond
	client.MaxIdleConns = 16
	defer client.Close()

	c := memcached.New(client, &memcached.Options{Namespace: "app"})
	defer c.Close()

	ctx := context.Background()
	if err := c.Set(ctx, "greeting", []byte("hello"), time.Minute); err != nil {
		log.Fatal(err)
	}
	v, err := c.Get(ctx, "greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", v)

	n, err := c.Increment(ctx, "visits", 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n)

	// Clear empties the "app" namespace only.
	if err := c.Clear(ctx); err != nil {
		log.Fatal(err)
	}
}

// Example_open opens a cache from a URL. Nothing is dialed until the first
// call, so this example runs without a server.
func Example_open() {
	c, err := cachekit.Open(context.Background(),
		"memcached://127.0.0.1:11211,127.0.0.1:11212?namespace=app&timeout=100ms&max_idle_conns=32")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Printf("%T\n", c)

	// Unknown parameters are errors.
	_, err = cachekit.Open(context.Background(), "memcached://127.0.0.1?namspace=typo")
	fmt.Println(errors.Is(err, cachekit.ErrInvalidURL))
	// Output:
	// *memcached.Cache
	// true
}

// ExampleNewRing shows which server of a ring holds a key, and that adding a
// fifth server to four moves only about a fifth of the keys, all to the new
// server.
func ExampleNewRing() {
	four, _ := memcached.NewRing("mc1:11211", "mc2:11211", "mc3:11211", "mc4:11211")
	five, _ := memcached.NewRing("mc1:11211", "mc2:11211", "mc3:11211", "mc4:11211", "mc5:11211")
	a, _ := four.PickServer("user:4")
	fmt.Println("user:4 is on", a)

	moved := 0
	for i := range 10000 {
		key := fmt.Sprintf("user:%d", i)
		a, _ := four.PickServer(key)
		b, _ := five.PickServer(key)
		if a.String() != b.String() {
			moved++
		}
	}
	fmt.Printf("adding a server moved %.0f%% of the keys\n", float64(moved)/100)
	// Output:
	// user:4 is on mc2:11211
	// adding a server moved 21% of the keys
}
