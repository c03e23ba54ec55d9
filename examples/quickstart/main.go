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
	if err := c.Clear(ctx); err != nil { // start from an empty namespace
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

	// A per-call TTL overrides the default.
	flash := Book{ISBN: "flash", Title: "Flash Sale", Price: 1}
	if err := books.Set(ctx, "book:flash", flash, cachekit.WithTTL(1500*time.Millisecond)); err != nil {
		return err
	}
	time.Sleep(2500 * time.Millisecond)
	_, err = books.Get(ctx, "book:flash")
	fmt.Println("after its 1.5s TTL, miss:", errors.Is(err, cachekit.ErrNotFound))

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
