package integration_test

// This file would be backplane_test.go, but a _test.go file whose name sorts
// before doc.go breaks the package (see memoize_test.go).
//
// The Redis backplane across OS processes: this test binary runs again as
// a reader process holding a Typed with a local tier, and the parent writes.
// A write in the parent (or, in tracking mode, by a plain go-redis client)
// must reach the reader's next Get once the invalidation has arrived; the
// reader's LocalOptions.TTL is long, so nothing but the backplane can make
// it see the new value.
//
//	CACHEKIT_TEST_REDIS_ADDR=127.0.0.1:6379 go test -race -run 'TestBackplane' -v .

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memcached"
	"github.com/cachekit/cachekit/backend/redis"
	"github.com/cachekit/cachekit/internal/testserver"
)

const (
	bpEnvChild     = "CACHEKIT_TEST_BACKPLANE_CHILD" // the backend of the cache: redis or memcached
	bpEnvNamespace = "CACHEKIT_TEST_BACKPLANE_NAMESPACE"
	bpEnvURL       = "CACHEKIT_TEST_BACKPLANE_URL"
)

// bpCache opens the cache of a backplane test, over a client of its own.
func bpCache(t *testing.T, backend, ns, addr string) cachekit.Cache {
	t.Helper()
	switch backend {
	case "memcached":
		client := memcache.New(memcachedServers(t, 1)...)
		client.Timeout = 5 * time.Second
		c := memcached.New(client, &memcached.Options{Namespace: ns})
		t.Cleanup(func() { c.Close(); client.Close() })
		return c
	default:
		if addr == "" {
			addr = redisServer(t)
		}
		client := goredis.NewClient(&goredis.Options{Addr: addr, ReadTimeout: 5 * time.Second})
		c := redis.New(client, &redis.Options{Namespace: ns})
		t.Cleanup(func() { c.Close(); client.Close() })
		return c
	}
}

// bpTyped is a Typed with a local tier whose entries outlive the test, and
// a backplane opened from url.
func bpTyped(t *testing.T, backend, ns, url, addr string) *cachekit.Typed[string] {
	t.Helper()
	bp, err := cachekit.OpenBackplane(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	typed := cachekit.NewTyped[string](bpCache(t, backend, ns, addr), &cachekit.TypedOptions{
		Local:     &cachekit.LocalOptions{TTL: time.Hour},
		Backplane: bp,
		OnError:   func(_ context.Context, err error) { fmt.Fprintf(os.Stderr, "backplane test: %v\n", err) },
	})
	t.Cleanup(func() { typed.Close(); bp.Close() })
	return typed
}

// bpReader is the reader process, driven by lines on its stdin.
type bpReader struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// startReader starts the reader process, with its cache on the Redis
// server at addr ("": the harness's).
func startReader(t *testing.T, backend, ns, url, addr string) *bpReader {
	t.Helper()
	if addr == "" {
		addr = redisServer(t)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBackplaneReaderProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), bpEnvChild+"="+backend, bpEnvNamespace+"="+ns, bpEnvURL+"="+url,
		harnessEnvRedisAddr+"="+addr)
	if backend == "memcached" {
		cmd.Env = append(cmd.Env, harnessEnvMemcachedAddrs+"="+memcachedServers(t, 1)[0])
	}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &bpReader{t: t, cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(func() {
		in.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("reader process: %v", err)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("reader process did not exit")
		}
	})
	if got := r.reply(); got != "ready" {
		t.Fatalf("reader: %q; want ready", got)
	}
	return r
}

// reply returns the reader's next protocol line (its lines start "bp: ").
func (r *bpReader) reply() string {
	r.t.Helper()
	for r.out.Scan() {
		if s, ok := strings.CutPrefix(r.out.Text(), "bp: "); ok {
			return s
		}
	}
	r.t.Fatalf("reader process ended: %v", r.out.Err())
	return ""
}

func (r *bpReader) send(line string) string {
	r.t.Helper()
	if _, err := fmt.Fprintln(r.in, line); err != nil {
		r.t.Fatal(err)
	}
	return r.reply()
}

// get is the reader's Get of key: "val <v>" or "miss".
func (r *bpReader) get(key string) string { return r.send("get " + key) }

// waitFor has the reader Get key in a loop until it reads want (or a miss,
// for want ""), and returns when it did, by the reader's clock.
func (r *bpReader) waitFor(key, want string) time.Time {
	r.t.Helper()
	got := r.send("wait " + key + " " + want)
	ns, ok := strings.CutPrefix(got, "seen ")
	if !ok {
		r.t.Fatalf("reader waiting for %s=%q: %s", key, want, got)
	}
	n, _ := strconv.ParseInt(ns, 10, 64)
	return time.Unix(0, n)
}

// TestBackplaneReaderProcess is the reader of the backplane tests; it does
// nothing on its own.
func TestBackplaneReaderProcess(t *testing.T) {
	backend := os.Getenv(bpEnvChild)
	if backend == "" {
		t.Skip("a process of the backplane tests")
	}
	typed := bpTyped(t, backend, os.Getenv(bpEnvNamespace), os.Getenv(bpEnvURL), "")
	ctx := context.Background()
	get := func(key string) string {
		v, err := typed.Get(ctx, key)
		switch {
		case err == nil:
			return "val " + v
		case errors.Is(err, cachekit.ErrNotFound):
			return "miss"
		default:
			return "error " + err.Error()
		}
	}
	fmt.Println("bp: ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 2 && f[0] == "get":
			fmt.Println("bp: " + get(f[1]))
		case len(f) >= 2 && f[0] == "wait":
			want := "miss"
			if len(f) == 3 {
				want = "val " + f[2]
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				if get(f[1]) == want {
					fmt.Printf("bp: seen %d\n", time.Now().UnixNano())
					break
				}
				if time.Now().After(deadline) {
					fmt.Printf("bp: timeout, last %q\n", get(f[1]))
					break
				}
				time.Sleep(50 * time.Microsecond)
			}
		default:
			fmt.Printf("bp: bad command %q\n", in.Text())
		}
	}
}

func isNotFound(s string) bool { return s == "miss" }

func TestBackplaneAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, tc := range []struct{ name, backend, mode string }{
		{"pubsub", "redis", "channel=it"},
		{"tracking", "redis", "mode=tracking"},
		{"pubsub-memcached", "memcached", "channel=it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			ns := sweepNamespace("bp-" + decUnique(t))
			url := "redis://" + redisServer(t) + "/0?" + tc.mode + "&timeout=5s"
			if tc.backend == "memcached" {
				memcachedServers(t, 1) // skip early without one
			}
			writer := bpTyped(t, tc.backend, ns, url, "")
			reader := startReader(t, tc.backend, ns, url, "")

			// The reader holds v1 in its local tier.
			if err := writer.Set(ctx, "k", "v1"); err != nil {
				t.Fatal(err)
			}
			reader.waitFor("k", "v1")
			if got := reader.get("k"); got != "val v1" {
				t.Fatalf("reader: %s", got)
			}
			// Each write in the writer reaches the reader's next Gets.
			var lat []time.Duration
			for i := 2; i <= 41; i++ {
				v := "v" + strconv.Itoa(i)
				if err := writer.Set(ctx, "k", v); err != nil {
					t.Fatal(err)
				}
				written := time.Now()
				lat = append(lat, reader.waitFor("k", v).Sub(written))
			}
			if _, err := writer.Delete(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			reader.waitFor("k", "")
			if !isNotFound(reader.get("k")) {
				t.Fatal("the reader still has k after the writer's Delete")
			}
			slices.Sort(lat)
			t.Logf("%s: write returned -> reader's Get sees it (includes the reader's polling): p50 %v, p90 %v, max %v over %d writes",
				tc.name, lat[len(lat)/2], lat[len(lat)*9/10], lat[len(lat)-1], len(lat))

			if tc.mode != "mode=tracking" {
				return
			}
			// Tracking: a plain client's write and DEL invalidate too.
			if err := writer.Set(ctx, "p", "old"); err != nil {
				t.Fatal(err)
			}
			reader.waitFor("p", "old")
			plain := goredis.NewClient(&goredis.Options{Addr: redisServer(t)})
			defer plain.Close()
			enc, _ := json.Marshal("new") // Typed's default serializer
			if err := plain.Set(ctx, ns+":p", enc, 0).Err(); err != nil {
				t.Fatal(err)
			}
			reader.waitFor("p", "new")
			if err := plain.Del(ctx, ns+":p").Err(); err != nil {
				t.Fatal(err)
			}
			reader.waitFor("p", "")
		})
	}
}

// bpCollect subscribes to bp and returns a function that waits for a
// message matching match.
func bpCollect(t *testing.T, bp cachekit.Backplane) func(what string, match func(cachekit.Invalidation) bool) {
	t.Helper()
	msgs := make(chan cachekit.Invalidation, 1024)
	stop := bp.Subscribe(func(inv cachekit.Invalidation) {
		select {
		case msgs <- inv:
		default:
		}
	}, func(err error) { t.Logf("backplane: %v", err) })
	t.Cleanup(stop)
	return func(what string, match func(cachekit.Invalidation) bool) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case inv := <-msgs:
				if match(inv) {
					return
				}
			case <-timeout:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
}

// TestBackplanePubSubOnCluster: NewBackplane over ClusterClients, the
// publisher's and the subscriber's each its own.
func TestBackplanePubSubOnCluster(t *testing.T) {
	addrs := redisCluster(t)
	ctx := context.Background()
	cl := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { cl.Close() })
	ch := "cluster-" + decUnique(t)
	sub, err := redis.NewBackplane(cl, &redis.BackplaneOptions{Channel: ch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	pubCl := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { pubCl.Close() })
	pub, err := redis.NewBackplane(pubCl, &redis.BackplaneOptions{Channel: ch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	wait := bpCollect(t, sub)
	want := cachekit.Invalidation{Namespace: "{app}", Keys: []string{"a", "b"}, Origin: "p"}
	if err := pub.Publish(ctx, want); err != nil {
		t.Fatal(err)
	}
	wait("the message across the cluster", func(inv cachekit.Invalidation) bool {
		return inv.Namespace == want.Namespace && slices.Equal(inv.Keys, want.Keys) && inv.Origin == want.Origin
	})

	// Publishes go to the master of the channel's slot, where go-redis
	// subscribes, not to a random node (whence the message would reach the
	// subscriber over the cluster bus, 20-40 ms late now and then). Other
	// tests may publish at the same time, so this counts at least the 20
	// publishes made here, on that master.
	master, err := pubCl.MasterForKey(ctx, "cachekit:bp:"+ch)
	if err != nil {
		t.Fatal(err)
	}
	publishes := func() int {
		info, err := master.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`cmdstat_publish:calls=(\d+)`).FindStringSubmatch(info)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	before := publishes()
	for range 20 {
		if err := pub.Publish(ctx, want); err != nil {
			t.Fatal(err)
		}
	}
	if got := publishes() - before; got < 20 {
		t.Errorf("%d of 20 publishes reached %s, the master of the channel's slot", got, master.Options().Addr)
	}
}

// TestBackplaneTrackingSentinel: tracking mode over a Sentinel failover
// client.
func TestBackplaneTrackingSentinel(t *testing.T) {
	addrs, master := redisSentinel(t)
	ctx := context.Background()
	cl := goredis.NewFailoverClient(&goredis.FailoverOptions{MasterName: master, SentinelAddrs: addrs})
	t.Cleanup(func() { cl.Close() })
	bp, err := redis.NewBackplane(cl, &redis.BackplaneOptions{Mode: redis.ModeTracking})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })
	ns := sweepNamespace("bp-" + decUnique(t))
	c := redis.New(cl, &redis.Options{Namespace: ns})
	if err := bp.(cachekit.BackplaneWatcher).Watch(c); err != nil {
		t.Fatal(err)
	}
	wait := bpCollect(t, bp)
	if err := c.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	wait("k invalidated", func(inv cachekit.Invalidation) bool {
		return inv.Namespace == ns && slices.Equal(inv.Keys, []string{"k"})
	})
}

// TestBackplaneTrackingCluster: tracking mode on a Redis Cluster tracks
// every master, so a plain client's write of any key of the namespace,
// whatever its slot, invalidates.
func TestBackplaneTrackingCluster(t *testing.T) {
	addrs := redisCluster(t)
	ctx := context.Background()
	cl := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { cl.Close() })
	bp, err := redis.NewBackplane(cl, &redis.BackplaneOptions{Mode: redis.ModeTracking})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })
	ns := sweepNamespace("bp-" + decUnique(t))
	c := redis.New(cl, &redis.Options{Namespace: ns})
	if err := bp.(cachekit.BackplaneWatcher).Watch(c); err != nil {
		t.Fatal(err)
	}
	wait := bpCollect(t, bp)
	plain := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { plain.Close() })
	for i := range 20 { // keys spread over the masters
		key := "k" + strconv.Itoa(i)
		if err := plain.Set(ctx, ns+":"+key, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		wait(key+" invalidated", func(inv cachekit.Invalidation) bool {
			return inv.Namespace == ns && slices.Equal(inv.Keys, []string{key})
		})
	}
}

// TestBackplaneTLS: rediss:// backplane URLs, pub/sub and tracking, against
// a TLS-only server.
func TestBackplaneTLS(t *testing.T) {
	addr := redisTLS(t)
	ctx := context.Background()
	for _, mode := range []string{"channel=tls-" + decUnique(t), "mode=tracking"} {
		t.Run(mode, func(t *testing.T) {
			url := "rediss://" + addr + "/0?" + mode
			sub, err := cachekit.OpenBackplane(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sub.Close() })
			ns := "tls"
			if w, ok := sub.(cachekit.BackplaneWatcher); ok {
				c, err := cachekit.Open(ctx, "rediss://"+addr+"/0?namespace="+ns) // owns its client
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				if err := w.Watch(c); err != nil {
					t.Fatal(err)
				}
			}
			wait := bpCollect(t, sub)
			if mode == "mode=tracking" {
				c, err := cachekit.Open(ctx, "rediss://"+addr+"/0?namespace="+ns)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				if err := c.Set(ctx, "k", []byte("v"), 0); err != nil {
					t.Fatal(err)
				}
			} else {
				pub, err := cachekit.OpenBackplane(ctx, url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { pub.Close() })
				if err := pub.Publish(ctx, cachekit.Invalidation{Namespace: ns, Keys: []string{"k"}}); err != nil {
					t.Fatal(err)
				}
			}
			wait("k over TLS", func(inv cachekit.Invalidation) bool {
				return inv.Namespace == ns && slices.Equal(inv.Keys, []string{"k"})
			})
		})
	}
}

// TestBackplaneServerRestartAcrossProcesses: the Redis server of the cache
// and the backplane is killed and restarted under a reader process whose
// local entries would live an hour; the reader's backplane reconnects, drops
// its local tier (Reset), and sees the writer's next write.
func TestBackplaneServerRestartAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, mode := range []string{"channel=restart", "mode=tracking"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			srv := testserver.StartRedis(t)
			url := "redis://" + srv.Addr() + "/0?" + mode + "&timeout=500ms"
			writer := bpTyped(t, "redis", "restart", url, srv.Addr())
			reader := startReader(t, "redis", "restart", url, srv.Addr())
			if err := writer.Set(ctx, "k", "v1"); err != nil {
				t.Fatal(err)
			}
			reader.waitFor("k", "v1")

			srv.Kill()
			srv.Restart() // empty: its data is gone
			deadline := time.Now().Add(20 * time.Second)
			for writer.Set(ctx, "k", "v2") != nil { // the writer's client reconnects too
				if time.Now().After(deadline) {
					t.Fatal("the writer could not write after the restart")
				}
				time.Sleep(50 * time.Millisecond)
			}
			reader.waitFor("k", "v2")
			// And invalidation works as before.
			if err := writer.Set(ctx, "k", "v3"); err != nil {
				t.Fatal(err)
			}
			reader.waitFor("k", "v3")
		})
	}
}
