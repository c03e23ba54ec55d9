package redis_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/redis"
)

// Wrap an existing go-redis client. It needs a Redis server on
// localhost:6379, so it is compiled but not run.
func Example() {
	ctx := context.Background()
	rdb := goredis.NewClient(&goredis.Options{
		Addr:                  "localhost:6379",
		ContextTimeoutEnabled: true, // deadlines are enforced on the socket
	})
	defer rdb.Close()

	c := redis.New(rdb, &redis.Options{Namespace: "app", Timeout: 100 * time.Millisecond})
	defer c.Close() // leaves rdb open

	if err := c.Set(ctx, "greeting", []byte("hello"), time.Minute); err != nil {
		log.Fatal(err)
	}
	v, err := c.Get(ctx, "greeting") // the key in Redis is "app:greeting"
	switch {
	case errors.Is(err, cachekit.ErrNotFound):
		fmt.Println("miss")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Printf("%s\n", v)
	}
}

// Open a cache from a URL; the cache owns its client. This needs a Redis
// Cluster, so it is compiled but not run.
func Example_cluster() {
	ctx := context.Background()
	c, err := cachekit.Open(ctx, "redis+cluster://10.0.0.1:7000,10.0.0.2:7000?namespace=sessions&timeout=50ms")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // closes the cluster client too

	// Keys in many hash slots: grouped per slot, never a CROSSSLOT error.
	values, err := c.GetMany(ctx, []string{"alice", "bob", "carol"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(values), "hits")
}
