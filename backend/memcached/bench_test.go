package memcached

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// BenchmarkGetSet measures a Get and a Set against the server named by
// CACHEKIT_TEST_MEMCACHED_ADDRS, through a client with and without
// LivenessDialer (whose check costs one non-blocking peek per reused
// connection), with a background context and a cancellable one (which runs
// each call on a goroutine).
func BenchmarkGetSet(b *testing.B) {
	addr := testServersB(b)
	for _, tc := range []struct {
		name     string
		liveness bool
		cancel   bool
	}{
		{"plain", false, false},
		{"liveness", true, false},
		{"plain-ctx", false, true},
		{"liveness-ctx", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			client := memcache.New(addr)
			client.Timeout = 10 * time.Second
			if tc.liveness {
				client.DialContext = LivenessDialer(nil)
			}
			defer client.Close()
			c := New(client, nil)
			defer c.Close()
			ctx := context.Background()
			if tc.cancel {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
			}
			v := make([]byte, 100)
			if err := c.Set(ctx, "bench", v, 0); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := c.Get(ctx, "bench"); err != nil {
					b.Fatal(err)
				}
				if err := c.Set(ctx, "bench", v, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func testServersB(b *testing.B) string {
	addrs := splitAddrs()
	if len(addrs) == 0 {
		b.Skip("set CACHEKIT_TEST_MEMCACHED_ADDRS to run this benchmark")
	}
	return addrs[0]
}

// BenchmarkPeekAlive measures LivenessDialer's check alone: one
// non-blocking peek at an idle loopback TCP connection.
func BenchmarkPeekAlive(b *testing.B) {
	if !canCheck {
		b.Skip("no liveness check on this platform")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		s, err := ln.Accept()
		if err == nil {
			defer s.Close()
			var buf [1]byte
			s.Read(buf[:])
		}
	}()
	nc, err := LivenessDialer(nil)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	raw := nc.(*checkedConn).raw
	b.ResetTimer()
	for range b.N {
		if err := peekAlive(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIncrement measures Increment against the server named by
// CACHEKIT_TEST_MEMCACHED_ADDRS: a positive delta (memcached's incr, one
// request) and a negative one (gets + cas), without and with a namespace,
// next to gomemcache's own Increment.
func BenchmarkIncrement(b *testing.B) {
	addr := testServersB(b)
	client := memcache.New(addr)
	client.Timeout = 10 * time.Second
	defer client.Close()
	ctx := context.Background()
	for _, ns := range []string{"", "benchinc"} {
		c := New(client, &Options{Namespace: ns})
		for _, delta := range []int64{1, -1} {
			name := "incr"
			if delta < 0 {
				name = "gets+cas"
			}
			if ns != "" {
				name += "-ns"
			}
			b.Run(name, func(b *testing.B) {
				if err := c.Set(ctx, "bench-counter", []byte("1000000000"), 0); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for range b.N {
					if _, err := c.Increment(ctx, "bench-counter", delta); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				_, _ = c.Delete(ctx, "bench-counter")
			})
		}
		c.Close()
	}
	b.Run("raw-gomemcache-incr", func(b *testing.B) {
		if err := client.Set(&memcache.Item{Key: "bench-raw-counter", Value: []byte("1000000000")}); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			if _, err := client.Increment("bench-raw-counter", 1); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		_ = client.Delete("bench-raw-counter")
	})
}
