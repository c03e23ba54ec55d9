// Command quickstart shows cachekit's everyday API: a typed cache, a TTL, a
// miss, and read-through loading with GetOrLoad.
//
// It runs on the embedded memory backend with no server:
//
//	go run ./examples/quickstart
//
// and on Redis or Memcached when CACHE_URL says so:
//
//	CACHE_URL=redis://localhost:6379/0?namespace=quickstart go run ./examples/quickstart
//	CACHE_URL=memcached://localhost:11211?namespace=quickstart go run ./examples/quickstart
//
// It prints how long an entry with a 1.5s TTL really stayed a hit: about
// 1.5s on memory and Redis, 2 to 3 s on Memcached, which counts whole
// seconds and rounds up so that an entry lives at least its TTL.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/cachekit/cachekit"
	_ "github.com/cachekit/cachekit/backend/memcached" // registers memcached://
	_ "github.com/cachekit/cachekit/backend/memory"    // registers mem://
	_ "github.com/cachekit/cachekit/backend/redis"     // registers redis://, rediss://, redis+cluster://, redis+sentinel://
	"github.com/cachekit/cachekit/serializer"
)

// Book is the value type this program caches.
type Book struct {
	ISBN   string  `json:"isbn"`
	Title  string  `json:"title"`
	Price  float64 `json:"price"`
	Copies int     `json:"copies"`
}

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	url := os.Getenv("CACHE_URL")
	if url == "" {
		url = "mem://?max_bytes=16MiB&namespace=quickstart"
	}
	c, err := cachekit.Open(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Println("cache:", cachekit.RedactURL(url))
	// Start from an empty namespace. Without a namespace, Clear on a shared
	// server would flush every key on it, which Redis and Memcached refuse
	// unless the URL says allow_flush=true.
	switch err := c.Clear(ctx); {
	case errors.Is(err, cachekit.ErrFlushNotAllowed):
		fmt.Println("not clearing: the URL has no namespace (add ?namespace=quickstart)")
	case err != nil:
		return err
	}

	// A typed view: values are Books, encoded with msgpack, kept for 10 minutes.
	books := cachekit.NewTyped[Book](c, &cachekit.TypedOptions{
		Serializer: serializer.MsgPack{},
		TTL:        10 * time.Minute,
	})

	// A miss is an error you check with errors.Is.
	_, err = books.Get(ctx, "book:978-0134190440")
	fmt.Println("before set, miss:", errors.Is(err, cachekit.ErrNotFound))

	// Set, then Get.
	gopl := Book{ISBN: "978-0134190440", Title: "The Go Programming Language", Price: 34.99, Copies: 3}
	if err := books.Set(ctx, "book:"+gopl.ISBN, gopl); err != nil {
		return err
	}
	got, err := books.Get(ctx, "book:"+gopl.ISBN)
	if err != nil {
		return err
	}
	fmt.Printf("hit: %s, $%.2f\n", got.Title, got.Price)

	// A per-call TTL overrides the default. How exactly an entry expires
	// depends on the backend: memory and Redis expire it within a few
	// milliseconds of its TTL; Memcached counts whole seconds and rounds up,
	// adding a second, so that an entry lives at least its TTL (a 1.5s TTL
	// lives 2 to 3 s). So watch it expire rather than assume when.
	const flashTTL = 1500 * time.Millisecond
	flash := Book{ISBN: "flash", Title: "Flash Sale", Price: 1}
	set := time.Now()
	if err := books.Set(ctx, "book:flash", flash, cachekit.WithTTL(flashTTL)); err != nil {
		return err
	}
	lived, err := untilMiss(ctx, books, "book:flash", set, flashTTL+5*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("set with a %v TTL: a hit, then a miss %.2fs after the Set (at least its TTL: %v)\n",
		flashTTL, lived.Seconds(), lived >= flashTTL)

	// Read-through: the loader runs on a miss only, and its result is stored.
	loads := 0
	load := func(ctx context.Context) (Book, error) {
		loads++
		return Book{ISBN: "978-0262033848", Title: "Introduction to Algorithms", Price: 89.5}, nil
	}
	for range 3 {
		b, err := books.GetOrLoad(ctx, "book:978-0262033848", load)
		if err != nil {
			return err
		}
		fmt.Printf("GetOrLoad: %s (loads so far: %d)\n", b.Title, loads)
	}

	// The byte-level API has atomic counters too.
	n, err := c.Increment(ctx, "views:gopl", 1)
	if err != nil {
		return err
	}
	fmt.Println("views:", n)
	return nil
}

// untilMiss polls key until Get misses and returns how long after since
// that was, giving up after limit. It polls every 50ms, so the answer is
// at most about 50ms after the moment the entry expired.
func untilMiss(ctx context.Context, t *cachekit.Typed[Book], key string, since time.Time, limit time.Duration) (time.Duration, error) {
	for {
		_, err := t.Get(ctx, key)
		switch {
		case errors.Is(err, cachekit.ErrNotFound):
			return time.Since(since), nil
		case err != nil:
			return 0, err
		case time.Since(since) > limit:
			return 0, fmt.Errorf("%s still present %v after it was set", key, limit)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}
