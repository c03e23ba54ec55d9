package redis

import (
	"context"
	"strconv"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/testserver"
)

// BenchmarkBackplaneLatency measures one invalidation end to end, one at a
// time: from the write (a Publish, or in tracking mode a SET by another
// client) to the subscriber's onMessage on another connection. ns/op is the
// latency.
func BenchmarkBackplaneLatency(b *testing.B) {
	srv := testserver.StartRedis(b)
	ctx := context.Background()
	for _, mode := range []string{ModePubSub, ModeTracking} {
		b.Run(mode, func(b *testing.B) {
			pubClient := realClientTB(b, srv.Addr())
			sub, err := NewBackplane(realClientTB(b, srv.Addr()), &BackplaneOptions{Mode: mode})
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Close()
			pub, err := NewBackplane(pubClient, &BackplaneOptions{Mode: mode})
			if err != nil {
				b.Fatal(err)
			}
			defer pub.Close()
			if w, ok := sub.(cachekit.BackplaneWatcher); ok {
				if err := w.Watch(nsCache{ns: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
			got := make(chan struct{}, 1)
			defer sub.Subscribe(func(inv cachekit.Invalidation) {
				if inv.Namespace == "bench" {
					got <- struct{}{}
				}
			}, func(err error) { b.Error(err) })()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				key := "k" + strconv.Itoa(i&1023)
				if mode == ModeTracking {
					err = pubClient.Set(ctx, "bench:"+key, "v", 0).Err()
				} else {
					err = pub.Publish(ctx, cachekit.Invalidation{Namespace: "bench", Keys: []string{key}, Origin: "o"})
				}
				if err != nil {
					b.Fatal(err)
				}
				<-got
			}
		})
	}
}

func BenchmarkInvalidationCodec(b *testing.B) {
	inv := cachekit.Invalidation{Namespace: "app", Keys: []string{"user:1234"}, Origin: "0123456789abcdef"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := decodeInvalidation(string(encodeInvalidation(inv))); err != nil {
			b.Fatal(err)
		}
	}
}

func realClientTB(tb testing.TB, addr string) *goredis.Client {
	cl := goredis.NewClient(&goredis.Options{Addr: addr})
	tb.Cleanup(func() { cl.Close() })
	return cl
}
