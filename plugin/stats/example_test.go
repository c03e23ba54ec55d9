package stats_test

import (
	"context"
	"fmt"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/plugin/stats"
)

func Example() {
	ctx := context.Background()
	st := stats.New(nil)
	c := cachekit.WithHooks(memory.New(nil), st)
	defer c.Close()

	_ = c.Set(ctx, "user:1", []byte("ada"), time.Minute)
	_, _ = c.Get(ctx, "user:1")                                   // hit
	_, _ = c.Get(ctx, "user:2")                                   // miss
	_, _ = c.GetMany(ctx, []string{"user:1", "user:2", "user:3"}) // 1 hit, 2 misses
	_, _ = c.Increment(ctx, "user:1", 1)                          // error: not an integer

	// Typed's loads are counted too.
	users := cachekit.NewTyped[string](c, nil)
	_, _ = users.GetOrLoad(ctx, "user:4", func(context.Context) (string, error) { return "bob", nil })
	users.Wait() // GetOrLoad stores the value in the background

	s := st.Snapshot()
	fmt.Printf("ops %d, hits %d, misses %d, hit ratio %.2f, errors %d\n", s.Ops, s.Hits, s.Misses, s.HitRatio, s.Errors)
	fmt.Printf("Get: %d calls, %d hits, %d misses\n", s.Get.Count, s.Get.Hits, s.Get.Misses)
	fmt.Printf("loads %d, load errors %d\n", s.Loads, s.LoadErrors)
	fmt.Println("Get latency measured:", s.Get.P50 > 0 && s.Get.P99 >= s.Get.P50)
	// Output:
	// ops 7, hits 2, misses 4, hit ratio 0.33, errors 1
	// Get: 3 calls, 1 hits, 2 misses
	// loads 1, load errors 0
	// Get latency measured: true
}
