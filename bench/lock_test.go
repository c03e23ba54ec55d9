package bench

// package lock and Typed.Update on Redis and Memcached, side by side with
// hand-written raw clients, uncontended (one goroutine, one name or key):
//
//	CACHEKIT_BENCH_REDIS_ADDR=127.0.0.1:6379 CACHEKIT_BENCH_MEMCACHED_ADDR=127.0.0.1:11211 \
//	  go test -run '^$' -bench 'BenchmarkLock|BenchmarkUpdate' -benchmem -count 3 .
//
// BenchmarkLockRedis: one Acquire + Release per op. Rows:
//
//	impl=cachekit      lock.New(redis.New(client, nil), nil): Add (SET NX PX),
//	                   Increment of the fencing counter (INCRBY), CompareAndDelete (EVALSHA)
//	impl=raw           go-redis SET NX PX + a Lua compare-and-delete (redis.NewScript, EVALSHA):
//	                   the usual hand-written lock, without a fencing token
//	impl=raw-fenced    the same plus INCR of a counter: what cachekit does
//
// BenchmarkUpdateRedis: one read-modify-write of a small struct (MsgPack)
// per op. Rows:
//
//	impl=cachekit      Typed.Update: GET + CompareAndSwap (EVALSHA of a one-key script)
//	impl=raw-lua       go-redis GET + EVALSHA of a hand-written compare-and-set script
//	impl=raw-watch     go-redis WATCH / GET / MULTI SET EXEC (client.Watch + TxPipelined)
//
// BenchmarkLockMemcached and BenchmarkUpdateMemcached: the same over
// memcached.New(client, nil); raw rows use gomemcache directly:
//
//	lock   impl=cachekit          through the cache's cachekit.Versioner: AddVersion (ms in
//	                              add mode, returning the cas id), Increment (incr),
//	                              DeleteVersion (md comparing the cas id): 3 requests
//	       impl=cachekit-byvalue  the same lock over a wrapper that hides Versioner, so it
//	                              compares by value: Add, incr, CompareAndDelete (gets + cas):
//	                              4 requests, the path before Versioner and the fallback on
//	                              a server without meta commands
//	       impl=raw-unsafe        Add + Delete: no token and a release that does not check the
//	                              owner (a floor, not a lock to use)
//	       impl=raw-fenced        Add + Increment (incr) of a counter + a checked release
//	                              (gets, compare, cas to an already-expired item): the
//	                              by-value lock written by hand with gomemcache (4 requests)
//	update impl=cachekit          Typed.Update through Versioner: GetVersion (gets) +
//	                              SwapVersion (ms comparing the cas id): 2 requests
//	       impl=cachekit-byvalue  over the wrapper: Get (gets) + CompareAndSwap (gets + cas):
//	                              3 requests
//	       impl=raw               Get (gets) + CompareAndSwap (cas)
//
// paired=<raw row>: cachekit and that raw row alternately, op by op,
// reporting each one's median latency (raw-p50-ns, cachekit-p50-ns) and
// cachekit's overhead in percent: the number to trust on a loaded machine.
// paired=cachekit-byvalue (Memcached) pairs the same way impl=cachekit with
// impl=cachekit-byvalue, reported as the raw side: what Versioner saves.
//
// Every impl= row reports trips/op: Redis round trips counted by a go-redis hook
// (one per command or pipeline), Memcached requests counted on the
// connections (gomemcache writes each request in one write, and waits for
// its reply; so does the cache on its own meta connections, dialed with the
// client's DialContext).

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memcached"
	"github.com/cachekit/cachekit/backend/redis"
	"github.com/cachekit/cachekit/lock"
	"github.com/cachekit/cachekit/serializer"
)

// lockBenchValue is what the Update benchmarks read, change and write.
type lockBenchValue struct {
	N     int    `msgpack:"n"`
	Owner string `msgpack:"owner"`
	Tags  []string
}

func lockBenchIncr(v lockBenchValue, _ bool) (lockBenchValue, error) {
	v.N++
	return v, nil
}

// lockBenchRun runs op b.N times and reports the trips counted per op.
func lockBenchRun(b *testing.B, trips *atomic.Int64, op func() error) {
	b.ReportAllocs()
	trips.Store(0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(trips.Load())/float64(b.N), "trips/op")
}

// lockBenchPaired runs raw and kit alternately, op by op (which goes first
// alternates too), and reports each one's median latency and cachekit's
// overhead over raw in percent: on a shared machine, separate rows drift
// with its load by more than the difference.
func lockBenchPaired(b *testing.B, raw, kit func() error) {
	rawLat := make([]time.Duration, 0, b.N)
	kitLat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		first, second := raw, kit
		if i%2 == 1 {
			first, second = kit, raw
		}
		t0 := time.Now()
		err1 := first()
		t1 := time.Now()
		err2 := second()
		t2 := time.Now()
		if err := errors.Join(err1, err2); err != nil {
			b.Fatal(err)
		}
		if i%2 == 1 {
			rawLat, kitLat = append(rawLat, t2.Sub(t1)), append(kitLat, t1.Sub(t0))
		} else {
			rawLat, kitLat = append(rawLat, t1.Sub(t0)), append(kitLat, t2.Sub(t1))
		}
	}
	b.StopTimer()
	slices.Sort(rawLat)
	slices.Sort(kitLat)
	r, k := float64(rawLat[len(rawLat)/2]), float64(kitLat[len(kitLat)/2])
	b.ReportMetric(r, "raw-p50-ns")
	b.ReportMetric(k, "cachekit-p50-ns")
	b.ReportMetric(100*(k-r)/r, "overhead-%")
}

func lockBenchPrefix(what string) string {
	return "lockbench-" + what + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
}

const rdReleaseScript = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`

const rdCASScript = `if redis.call("GET", KEYS[1]) == ARGV[1] then redis.call("SET", KEYS[1], ARGV[2]) return 1 end return 0`

func BenchmarkLockRedis(b *testing.B) {
	client := newRDClient(b, true)
	var trips rdTrips
	client.AddHook(&trips)
	bg := context.Background()
	pre := lockBenchPrefix("lock")
	c := redis.New(client, nil)
	b.Cleanup(func() { c.Close() })
	const ttl = 10 * time.Second

	locker := lock.New(c, &lock.Options{TTL: ttl, Prefix: pre})
	kit := func() error {
		k, err := locker.Acquire(bg, "res")
		if err != nil {
			return err
		}
		return k.Release(bg)
	}
	release := goredis.NewScript(rdReleaseScript)
	raw := func(fenced bool) func() error {
		key, fence := pre+"raw", pre+"raw-fence"
		return func() error {
			value := rand.Text()
			ok, err := client.SetNX(bg, key, value, ttl).Result()
			if err != nil {
				return err
			}
			if !ok {
				return errors.New("raw lock held")
			}
			if fenced {
				if err := client.Incr(bg, fence).Err(); err != nil {
					return err
				}
			}
			n, err := release.Run(bg, client, []string{key}, value).Int()
			if err == nil && n != 1 {
				err = errors.New("raw release deleted nothing")
			}
			return err
		}
	}
	b.Run("impl=cachekit", func(b *testing.B) { lockBenchRun(b, &trips.n, kit) })
	b.Run("impl=raw", func(b *testing.B) { lockBenchRun(b, &trips.n, raw(false)) })
	b.Run("impl=raw-fenced", func(b *testing.B) { lockBenchRun(b, &trips.n, raw(true)) })
	b.Run("paired=raw-fenced", func(b *testing.B) { lockBenchPaired(b, raw(true), kit) })
	client.Del(bg, pre+"raw", pre+"raw-fence", pre+"res:owner", pre+"res:fence")
}

func BenchmarkUpdateRedis(b *testing.B) {
	client := newRDClient(b, true)
	var trips rdTrips
	client.AddHook(&trips)
	bg := context.Background()
	pre := lockBenchPrefix("update")
	c := redis.New(client, nil)
	b.Cleanup(func() { c.Close() })
	ser := serializer.MsgPack{}
	start := lockBenchValue{Owner: "bench", Tags: []string{"a", "b", "c"}}

	typed := cachekit.NewTyped[lockBenchValue](c, &cachekit.TypedOptions{Serializer: ser})
	if err := typed.Set(bg, pre+"ck", start); err != nil {
		b.Fatal(err)
	}
	kit := func() error {
		_, err := typed.Update(bg, pre+"ck", lockBenchIncr)
		return err
	}
	b.Run("impl=cachekit", func(b *testing.B) { lockBenchRun(b, &trips.n, kit) })
	// raw: read, decode, change, encode, compare-and-set.
	rawUpdate := func(old []byte) ([]byte, error) {
		var v lockBenchValue
		if err := ser.Unmarshal(old, &v); err != nil {
			return nil, err
		}
		v, _ = lockBenchIncr(v, true)
		return ser.Marshal(v)
	}
	key := pre + "lua"
	if err := lockBenchSetMsgPack(bg, client, key, start); err != nil {
		b.Fatal(err)
	}
	cas := goredis.NewScript(rdCASScript)
	rawLua := func() error {
		old, err := client.Get(bg, key).Bytes()
		if err != nil {
			return err
		}
		nb, err := rawUpdate(old)
		if err != nil {
			return err
		}
		n, err := cas.Run(bg, client, []string{key}, old, nb).Int()
		if err == nil && n != 1 {
			err = errors.New("uncontended compare-and-set failed")
		}
		return err
	}
	b.Run("impl=raw-lua", func(b *testing.B) { lockBenchRun(b, &trips.n, rawLua) })
	b.Run("paired=raw-lua", func(b *testing.B) { lockBenchPaired(b, rawLua, kit) })
	b.Run("impl=raw-watch", func(b *testing.B) {
		key := pre + "watch"
		if err := lockBenchSetMsgPack(bg, client, key, start); err != nil {
			b.Fatal(err)
		}
		lockBenchRun(b, &trips.n, func() error {
			return client.Watch(bg, func(tx *goredis.Tx) error {
				old, err := tx.Get(bg, key).Bytes()
				if err != nil {
					return err
				}
				nb, err := rawUpdate(old)
				if err != nil {
					return err
				}
				_, err = tx.TxPipelined(bg, func(p goredis.Pipeliner) error {
					p.Set(bg, key, nb, 0)
					return nil
				})
				return err
			}, key)
		})
	})
	client.Del(bg, pre+"ck", pre+"lua", pre+"watch")
}

func lockBenchSetMsgPack(ctx context.Context, client *goredis.Client, key string, v lockBenchValue) error {
	b, err := serializer.MsgPack{}.Marshal(v)
	if err != nil {
		return err
	}
	return client.Set(ctx, key, b, 0).Err()
}

// mcByValue hides a memcached cache's cachekit.Versioner: lock and
// Typed.Update over it compare by value (CompareAndSwap, CompareAndDelete).
type mcByValue struct {
	cachekit.Cache
	c *memcached.Cache
}

func (m mcByValue) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	return m.c.CompareAndSwap(ctx, key, old, new, ttl)
}

func (m mcByValue) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	return m.c.CompareAndDelete(ctx, key, old)
}

func BenchmarkLockMemcached(b *testing.B) {
	var requests atomic.Int64
	client := newMCClient(b, &requests)
	bg := context.Background()
	pre := lockBenchPrefix("lock")
	c := memcached.New(client, nil)
	b.Cleanup(func() { c.Close() })

	locker := lock.New(c, &lock.Options{Prefix: pre})
	kit := func() error {
		k, err := locker.Acquire(bg, "res")
		if err != nil {
			return err
		}
		return k.Release(bg)
	}
	var _ cachekit.Versioner = c // the impl=cachekit rows' path
	byValueLocker := lock.New(mcByValue{c, c}, &lock.Options{Prefix: pre + "bv-"})
	kitByValue := func() error {
		k, err := byValueLocker.Acquire(bg, "res")
		if err != nil {
			return err
		}
		return k.Release(bg)
	}
	key := pre + "raw"
	raw := func() error {
		if err := client.Add(&memcache.Item{Key: key, Value: []byte(rand.Text()), Expiration: 10}); err != nil {
			return err
		}
		return client.Delete(key)
	}
	fenceKey := pre + "raw:fence"
	if err := client.Set(&memcache.Item{Key: fenceKey, Value: []byte("0")}); err != nil {
		b.Fatal(err)
	}
	rawFenced := func() error {
		owner := []byte(rand.Text())
		if err := client.Add(&memcache.Item{Key: key, Value: owner, Expiration: 10}); err != nil {
			return err
		}
		if _, err := client.Increment(fenceKey, 1); err != nil {
			return err
		}
		it, err := client.Get(key) // gets: the item carries its cas id
		if err != nil {
			return err
		}
		if string(it.Value) != string(owner) {
			return errors.New("lock lost")
		}
		it.Expiration = -1 // stored as already expired: a delete if unchanged
		return client.CompareAndSwap(it)
	}
	b.Run("impl=cachekit", func(b *testing.B) { lockBenchRun(b, &requests, kit) })
	b.Run("impl=cachekit-byvalue", func(b *testing.B) { lockBenchRun(b, &requests, kitByValue) })
	b.Run("impl=raw-unsafe", func(b *testing.B) { lockBenchRun(b, &requests, raw) })
	b.Run("impl=raw-fenced", func(b *testing.B) { lockBenchRun(b, &requests, rawFenced) })
	b.Run("paired=raw-unsafe", func(b *testing.B) { lockBenchPaired(b, raw, kit) })
	b.Run("paired=raw-fenced", func(b *testing.B) { lockBenchPaired(b, rawFenced, kit) })
	b.Run("paired=cachekit-byvalue", func(b *testing.B) { lockBenchPaired(b, kitByValue, kit) })
	client.Delete(pre + "res:fence")
	client.Delete(pre + "bv-res:fence")
	client.Delete(fenceKey)
}

func BenchmarkUpdateMemcached(b *testing.B) {
	var requests atomic.Int64
	client := newMCClient(b, &requests)
	bg := context.Background()
	pre := lockBenchPrefix("update")
	c := memcached.New(client, nil)
	b.Cleanup(func() { c.Close() })
	ser := serializer.MsgPack{}
	start := lockBenchValue{Owner: "bench", Tags: []string{"a", "b", "c"}}

	typed := cachekit.NewTyped[lockBenchValue](c, &cachekit.TypedOptions{Serializer: ser})
	if err := typed.Set(bg, pre+"ck", start); err != nil {
		b.Fatal(err)
	}
	kit := func() error {
		_, err := typed.Update(bg, pre+"ck", lockBenchIncr)
		return err
	}
	typedByValue := cachekit.NewTyped[lockBenchValue](mcByValue{c, c}, &cachekit.TypedOptions{Serializer: ser})
	kitByValue := func() error {
		_, err := typedByValue.Update(bg, pre+"ck", lockBenchIncr)
		return err
	}
	key := pre + "raw"
	first, err := ser.Marshal(start)
	if err != nil {
		b.Fatal(err)
	}
	if err := client.Set(&memcache.Item{Key: key, Value: first}); err != nil {
		b.Fatal(err)
	}
	raw := func() error {
		it, err := client.Get(key) // gets: the item carries its cas id
		if err != nil {
			return err
		}
		var v lockBenchValue
		if err := ser.Unmarshal(it.Value, &v); err != nil {
			return err
		}
		v, _ = lockBenchIncr(v, true)
		if it.Value, err = ser.Marshal(v); err != nil {
			return err
		}
		return client.CompareAndSwap(it)
	}
	b.Run("impl=cachekit", func(b *testing.B) { lockBenchRun(b, &requests, kit) })
	b.Run("impl=cachekit-byvalue", func(b *testing.B) { lockBenchRun(b, &requests, kitByValue) })
	b.Run("impl=raw", func(b *testing.B) { lockBenchRun(b, &requests, raw) })
	b.Run("paired=raw", func(b *testing.B) { lockBenchPaired(b, raw, kit) })
	b.Run("paired=cachekit-byvalue", func(b *testing.B) { lockBenchPaired(b, kitByValue, kit) })
	client.Delete(pre + "ck")
	client.Delete(pre + "raw")
}
