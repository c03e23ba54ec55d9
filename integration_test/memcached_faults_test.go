package integration_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memcached"
	"github.com/cachekit/cachekit/internal/faultproxy"
	"github.com/cachekit/cachekit/internal/testserver"
)

// Fault injection against real memcached servers: a loopback proxy that
// delays, holds or loses traffic (internal/faultproxy) in front of the
// harness's shared server, and server processes of the test's own that it
// kills and restarts (internal/testserver). Each scenario is one of issue
// #12's: a late write overwriting a newer one (3), a delete lost after a
// Clear elsewhere (4), lost replies (6), a dead server (8), a restart (13),
// and CompareAndDelete (17).

// mcOpen opens a cache from a URL, closed when t ends.
func mcOpen(t *testing.T, url string) cachekit.Cache {
	t.Helper()
	c, err := cachekit.Open(mcBg, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mcProxied returns a client that reaches the harness's server through a
// fault proxy, with a generous socket timeout.
func mcProxied(t *testing.T) (*faultproxy.Proxy, *memcache.Client, string) {
	t.Helper()
	addr := memcachedServers(t, 1)[0]
	p := faultproxy.Start(t, addr)
	client := mcClient(t, p.Addr())
	client.Timeout = 3 * time.Second
	client.DialContext = memcached.LivenessDialer(nil)
	return p, client, addr
}

// TestMemcachedFaultLateWriteNeverWins is issue #12 item 3: a Set that
// returned its context's error must not land after a later successful Set
// of the same key. The proxy delays the first Set's traffic by 300ms; the
// caller gives up after 50ms, the delay is lifted and a second Set
// succeeds. Without a namespace the first request is already on the wire
// when the caller gives up (the second Set must wait for it); with a
// namespace that asks for its generation before every write, the first
// Set's request has not been sent yet (it must never be).
func TestMemcachedFaultLateWriteNeverWins(t *testing.T) {
	t.Parallel()
	for _, ns := range []string{"", "late-" + mcUnique(t)} {
		t.Run(fmt.Sprintf("namespace=%q", ns), func(t *testing.T) {
			p, client, addr := mcProxied(t)
			c := mcCache(t, client, &memcached.Options{Namespace: ns, GenerationTTL: -1})
			direct := mcCache(t, mcClient(t, addr), &memcached.Options{Namespace: ns})
			key := "late:" + mcUnique(t)

			if err := c.Set(mcBg, key, []byte("v0"), time.Minute); err != nil {
				t.Fatal(err)
			}
			p.SetDelay(300 * time.Millisecond)
			ctx, cancel := context.WithTimeout(mcBg, 50*time.Millisecond)
			err := c.Set(ctx, key, []byte("v1"), time.Minute)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Set(v1) under a 300ms delay with a 50ms deadline: %v; want DeadlineExceeded", err)
			}
			if ns == "" && !errors.Is(err, cachekit.ErrUnknownOutcome) {
				t.Errorf("Set(v1) abandoned after its request was sent: %v; want it to wrap ErrUnknownOutcome", err)
			}
			if ns != "" && errors.Is(err, cachekit.ErrUnknownOutcome) {
				t.Errorf("Set(v1) abandoned before its request was sent: %v; want no ErrUnknownOutcome", err)
			}
			p.SetDelay(0)
			if err := c.Set(mcBg, key, []byte("v2"), time.Minute); err != nil {
				t.Fatalf("Set(v2): %v", err)
			}
			time.Sleep(700 * time.Millisecond) // past the abandoned request's delay
			got, err := direct.Get(mcBg, key)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "v2" {
				t.Fatalf("after Set(v1) failed and Set(v2) succeeded, the server holds %q; want v2", got)
			}
		})
	}
}

// TestMemcachedFaultNothingSentAfterDeadline: with the network holding
// every byte, a Set that needs the namespace generation first gives up at
// its deadline; when the network heals, the generation's reply arrives but
// the Set itself must not be sent.
func TestMemcachedFaultNothingSentAfterDeadline(t *testing.T) {
	t.Parallel()
	p, client, addr := mcProxied(t)
	ns := "held-" + mcUnique(t)
	c := mcCache(t, client, &memcached.Options{Namespace: ns, GenerationTTL: -1})
	direct := mcCache(t, mcClient(t, addr), &memcached.Options{Namespace: ns})
	if err := direct.Set(mcBg, "other", []byte("x"), time.Minute); err != nil { // creates the generation
		t.Fatal(err)
	}
	p.Blackhole(true)
	ctx, cancel := context.WithTimeout(mcBg, 50*time.Millisecond)
	err := c.Set(ctx, "k", []byte("late"), time.Minute)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, cachekit.ErrUnknownOutcome) {
		t.Fatalf("Set with the network held: %v; want DeadlineExceeded (and nothing sent)", err)
	}
	p.Blackhole(false)
	time.Sleep(300 * time.Millisecond)
	if v, err := direct.Get(mcBg, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("a Set that returned DeadlineExceeded before sending was sent later: Get = %q, %v", v, err)
	}
}

// TestMemcachedDeleteAfterClearElsewhere is issue #12 item 4: a cache that
// saw the namespace generation a moment ago must not delete in it after
// another cache cleared the namespace: the delete must reach the live key.
func TestMemcachedDeleteAfterClearElsewhere(t *testing.T) {
	t.Parallel()
	client := mcClient(t, memcachedServers(t, 1)...)
	ns := "del-" + mcUnique(t)
	a := mcCache(t, client, &memcached.Options{Namespace: ns, GenerationTTL: time.Hour})
	b := mcCache(t, client, &memcached.Options{Namespace: ns})
	for i := 0; i < 5; i++ {
		k := "k" + strconv.Itoa(i)
		if err := a.Set(mcBg, k, []byte("old"), time.Minute); err != nil { // a learns the generation
			t.Fatal(err)
		}
		if err := b.Clear(mcBg); err != nil {
			t.Fatal(err)
		}
		if err := b.Set(mcBg, k, []byte("new"), time.Minute); err != nil {
			t.Fatal(err)
		}
		n, err := a.Delete(mcBg, k)
		if err != nil || n != 1 {
			t.Fatalf("Delete after a Clear elsewhere: %d, %v; want 1", n, err)
		}
		if v, err := b.Get(mcBg, k); !errors.Is(err, cachekit.ErrNotFound) {
			t.Fatalf("round %d: Delete reported 1 but the value is still readable: %q, %v", i, v, err)
		}
		// CompareAndDelete reads the generation too.
		if err := b.Set(mcBg, k, []byte("tok"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := a.Set(mcBg, "learn", []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
		if err := b.Clear(mcBg); err != nil {
			t.Fatal(err)
		}
		if err := b.Set(mcBg, k, []byte("tok"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if ok, err := a.CompareAndDelete(mcBg, k, []byte("tok")); err != nil || !ok {
			t.Fatalf("CompareAndDelete after a Clear elsewhere: %v, %v; want true", ok, err)
		}
		if v, err := b.Get(mcBg, k); !errors.Is(err, cachekit.ErrNotFound) {
			t.Fatalf("CompareAndDelete reported true but the value is still readable: %q, %v", v, err)
		}
	}
}

// TestMemcachedFaultLostReply is issue #12 item 6: the proxy loses the
// reply of one write after the server executed it. Every write is applied
// at most once, and when its outcome is unknown the error says so: never a
// wrong success, count or ErrExists. (A read's lost reply is resent.)
func TestMemcachedFaultLostReply(t *testing.T) {
	t.Parallel()
	p, client, addr := mcProxied(t)
	// No namespace: Add and Delete are then one request each, so the next
	// reply the proxy drops is theirs.
	c := mcCache(t, client, &memcached.Options{BreakerThreshold: -1})
	direct := mcCache(t, mcClient(t, addr), nil)
	id := mcUnique(t)

	t.Run("Get", func(t *testing.T) {
		key := "lost-get:" + id
		t.Cleanup(func() { _, _ = direct.Delete(mcBg, key) })
		if err := direct.Set(mcBg, key, []byte("x"), time.Minute); err != nil {
			t.Fatal(err)
		}
		p.DropNextReply()
		if v, err := c.Get(mcBg, key); err != nil || string(v) != "x" {
			t.Fatalf("Get with a lost reply: %q, %v; want it resent on a fresh connection", v, err)
		}
		if !p.ReplyDropped() {
			t.Fatal("the proxy dropped no reply")
		}
	})

	t.Run("Add", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			key := "lost-add:" + id + ":" + strconv.Itoa(i)
			t.Cleanup(func() { _, _ = direct.Delete(mcBg, key) })
			p.DropNextReply()
			err := c.Add(mcBg, key, []byte("mine"), time.Minute)
			if !p.ReplyDropped() {
				t.Fatal("the proxy dropped no reply")
			}
			if errors.Is(err, cachekit.ErrExists) {
				t.Fatalf("Add of a fresh key whose reply was lost reported ErrExists: %v", err)
			}
			if !errors.Is(err, cachekit.ErrUnknownOutcome) {
				t.Fatalf("Add with a lost reply: %v; want ErrUnknownOutcome", err)
			}
			if got, gerr := direct.Get(mcBg, key); gerr != nil || string(got) != "mine" {
				t.Fatalf("after Add: %q, %v; want mine (the server executed it)", got, gerr)
			}
		}
	})

	t.Run("Delete", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			key := "lost-del:" + id + ":" + strconv.Itoa(i)
			if err := direct.Set(mcBg, key, []byte("x"), time.Minute); err != nil {
				t.Fatal(err)
			}
			p.DropNextReply()
			n, err := c.Delete(mcBg, key)
			if !p.ReplyDropped() {
				t.Fatal("the proxy dropped no reply")
			}
			if err == nil && n != 1 {
				t.Fatalf("Delete of a present key with a lost reply reported %d; want 1 or ErrUnknownOutcome", n)
			}
			if err != nil && !errors.Is(err, cachekit.ErrUnknownOutcome) {
				t.Fatalf("Delete with a lost reply: %v; want a count or ErrUnknownOutcome", err)
			}
			if _, gerr := direct.Get(mcBg, key); !errors.Is(gerr, cachekit.ErrNotFound) {
				t.Fatalf("after Delete: %v; want a miss (the server executed it)", gerr)
			}
		}
	})

	t.Run("Increment", func(t *testing.T) {
		// A positive delta is one incr: the proxy drops its reply. A
		// negative one reads (gets), then writes (cas): the proxy lets the
		// gets reply through and drops the cas reply.
		key := "lost-ctr:" + id
		t.Cleanup(func() { _, _ = direct.Delete(mcBg, key) })
		for i := 0; i < 10; i++ {
			delta, verb := int64(1), "incr"
			if i%2 == 1 {
				delta, verb = -1, "cas"
			}
			before, err := direct.Increment(mcBg, key, 0)
			if err != nil {
				t.Fatal(err)
			}
			if delta > 0 {
				p.DropNextReply()
			} else {
				p.DropReplyAfter(1)
			}
			_, err = c.Increment(mcBg, key, delta)
			if !p.ReplyDropped() {
				t.Fatal("the proxy dropped no reply")
			}
			after, aerr := direct.Increment(mcBg, key, 0)
			if aerr != nil {
				t.Fatal(aerr)
			}
			if !errors.Is(err, cachekit.ErrUnknownOutcome) {
				t.Fatalf("Increment(%d) whose %s reply was lost: %v; want ErrUnknownOutcome", delta, verb, err)
			}
			if after != before+delta {
				t.Fatalf("Increment(%d) whose %s reply was lost: server went %d -> %d; want exactly %+d (executed once, never resent)", delta, verb, before, after, delta)
			}
		}
	})
}

// TestMemcachedFaultDeadServer is issue #12 item 8: a killed server's
// cause is in the error, and after a few failures the circuit breaker
// answers at once with ErrUnavailable wrapping that cause; after a restart
// the cache recovers once the breaker's period has passed.
func TestMemcachedFaultDeadServer(t *testing.T) {
	t.Parallel()
	srv := testserver.StartMemcached(t)
	c := mcOpen(t, "memcached://"+srv.Addr()+"?namespace=dead&timeout=2s&breaker_threshold=3&breaker_duration=500ms")
	if err := c.Set(mcBg, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	for i := 0; i < 3; i++ {
		start := time.Now()
		_, err := c.Get(mcBg, "k")
		took := time.Since(start)
		if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("Get %d against a killed server: %v; want the cause, ECONNREFUSED", i, err)
		}
		if errors.Is(err, cachekit.ErrUnavailable) {
			t.Fatalf("Get %d: breaker open before 3 failures: %v", i, err)
		}
		if took > time.Second {
			t.Errorf("Get %d against a killed server took %v; want well within the 2s op timeout", i, took)
		}
		t.Logf("Get %d against the killed server: %v", i, took)
	}
	start := time.Now()
	_, err := c.Get(mcBg, "k")
	took := time.Since(start)
	if !errors.Is(err, cachekit.ErrUnavailable) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Get after 3 failures: %v; want ErrUnavailable wrapping ECONNREFUSED", err)
	}
	if took > 200*time.Millisecond {
		t.Errorf("Get with the breaker open took %v; want at once", took)
	}
	t.Logf("Get with the breaker open: %v", took)
	var ce *cachekit.Error
	if !errors.As(err, &ce) || ce.Op != "Get" || ce.Key != "k" {
		t.Errorf("breaker error %v is not a *cachekit.Error for Get k", err)
	}

	srv.Restart()
	restarted := time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Get(mcBg, "k")
		if errors.Is(err, cachekit.ErrNotFound) { // the restarted server is empty
			t.Logf("recovered %v after the restart", time.Since(restarted).Round(time.Millisecond))
			break
		}
		if !errors.Is(err, cachekit.ErrUnavailable) {
			t.Fatalf("Get after the restart: %v; want ErrUnavailable until the probe, then a miss", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery 10s after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.Set(mcBg, "k", []byte("v2"), time.Minute); err != nil {
		t.Fatalf("Set after recovery: %v", err)
	}
}

// TestMemcachedFaultFrozenServer: a frozen server (SIGSTOP) costs each call
// at most the op timeout, its own timeout counts against the breaker, and
// once the breaker is open calls fail at once; after a thaw the cache
// recovers.
func TestMemcachedFaultFrozenServer(t *testing.T) {
	t.Parallel()
	srv := testserver.StartMemcached(t)
	c := mcOpen(t, "memcached://"+srv.Addr()+"?namespace=frozen&timeout=300ms&breaker_threshold=2&breaker_duration=300ms")
	if err := c.Set(mcBg, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			srv.Thaw()
		}
	}()
	for i := 0; i < 2; i++ {
		start := time.Now()
		_, err := c.Get(mcBg, "k")
		took := time.Since(start)
		if err == nil || errors.Is(err, cachekit.ErrUnavailable) {
			t.Fatalf("Get %d against a frozen server: %v; want its timeout", i, err)
		}
		if took > 2*time.Second {
			t.Fatalf("Get %d against a frozen server took %v; want about the 300ms op timeout", i, took)
		}
		t.Logf("Get %d against the frozen server: %v", i, took)
	}
	start := time.Now()
	_, err := c.Get(mcBg, "k")
	if !errors.Is(err, cachekit.ErrUnavailable) || time.Since(start) > 200*time.Millisecond {
		t.Fatalf("Get with the breaker open: %v after %v; want ErrUnavailable at once", err, time.Since(start))
	}
	srv.Thaw()
	thawed = true
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := c.Get(mcBg, "k")
		if err == nil {
			if string(v) != "v" {
				t.Fatalf("Get after the thaw: %q", v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery 10s after the thaw: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMemcachedFaultOneDeadServerOfAPool: the breakers are per server, so
// once one server of a pool is dead, keys on the other keep working and
// keys on the dead one fail at once.
func TestMemcachedFaultOneDeadServerOfAPool(t *testing.T) {
	t.Parallel()
	live, dead := testserver.StartMemcached(t), testserver.StartMemcached(t)
	// No namespace: the generation key would live on one of them.
	c := mcOpen(t, "memcached://"+live.Addr()+","+dead.Addr()+"?timeout=2s&breaker_duration=1m")
	ring, err := memcached.NewRing(live.Addr(), dead.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var onLive, onDead []string
	for i := 0; len(onLive) < 5 || len(onDead) < 5; i++ {
		k := "pool:" + strconv.Itoa(i)
		a, _ := ring.PickServer(k)
		if a.String() == live.Addr() {
			onLive = append(onLive, k)
		} else {
			onDead = append(onDead, k)
		}
	}
	dead.Kill()
	for _, k := range onDead[:4] {
		if err := c.Set(mcBg, k, []byte("v"), time.Minute); err == nil {
			t.Fatalf("Set of %s on the killed server succeeded", k)
		}
	}
	start := time.Now()
	err = c.Set(mcBg, onDead[4], []byte("v"), time.Minute)
	if !errors.Is(err, cachekit.ErrUnavailable) || time.Since(start) > 200*time.Millisecond {
		t.Fatalf("Set on the dead server after 4 failures: %v after %v; want ErrUnavailable at once", err, time.Since(start))
	}
	for _, k := range onLive {
		if err := c.Set(mcBg, k, []byte("v"), time.Minute); err != nil {
			t.Fatalf("Set of %s on the live server while the other is dead: %v", k, err)
		}
		if v, err := c.Get(mcBg, k); err != nil || string(v) != "v" {
			t.Fatalf("Get of %s on the live server: %q, %v", k, v, err)
		}
	}
}

// TestMemcachedFaultRestart is issue #12 item 13: after the server
// restarts, every pooled connection is dead; the first calls must still
// succeed, reads by a resend on a fresh connection, writes because the dead
// connection is found before anything is written to it (LivenessDialer).
func TestMemcachedFaultRestart(t *testing.T) {
	t.Parallel()
	srv := testserver.StartMemcached(t)
	urlCache := mcOpen(t, "memcached://"+srv.Addr()+"?namespace=restart&timeout=2s&max_idle_conns=8")
	// A client built in code without LivenessDialer: reads still recover.
	plainClient := mcClient(t, srv.Addr())
	plain := mcCache(t, plainClient, &memcached.Options{Namespace: "restart"})

	warm := func() {
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ { // fill both pools with idle connections
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 20; j++ {
					k := "w" + strconv.Itoa(i)
					_ = urlCache.Set(mcBg, k, []byte("v"), time.Minute)
					_, _ = urlCache.Get(mcBg, k)
					_, _ = plain.Get(mcBg, k)
				}
			}()
		}
		wg.Wait()
	}
	for round := 0; round < 3; round++ {
		warm()
		srv.Kill()
		srv.Restart()
		// Sequential calls, each of which could take a dead pooled connection.
		for i := 0; i < 5; i++ {
			if _, err := urlCache.Get(mcBg, "k"); !errors.Is(err, cachekit.ErrNotFound) {
				t.Fatalf("round %d: Get %d after a restart: %v; want a miss", round, i, err)
			}
			if _, err := plain.Get(mcBg, "k"); !errors.Is(err, cachekit.ErrNotFound) {
				t.Fatalf("round %d: Get %d (client without LivenessDialer) after a restart: %v; want a miss", round, i, err)
			}
		}
		warm()
		srv.Kill()
		srv.Restart()
		for i := 0; i < 5; i++ {
			if err := urlCache.Set(mcBg, "s"+strconv.Itoa(i), []byte("v"), time.Minute); err != nil {
				t.Fatalf("round %d: Set %d after a restart: %v; want success", round, i, err)
			}
			// Without the dialer's check a write to a dead connection has
			// an unknown outcome (EOF after sending); it must say so.
			if err := plain.Set(mcBg, "p"+strconv.Itoa(i), []byte("v"), time.Minute); err != nil &&
				!errors.Is(err, cachekit.ErrUnknownOutcome) {
				t.Fatalf("round %d: Set %d (client without LivenessDialer): %v; want success or ErrUnknownOutcome", round, i, err)
			}
		}
	}
}

// TestMemcachedCompareAndDelete is issue #12 item 17 against a real server:
// 100 concurrent releases of one token delete it exactly once, readers miss
// afterwards, and Add can take the key again at once (no tombstone).
func TestMemcachedCompareAndDelete(t *testing.T) {
	t.Parallel()
	addrs := memcachedServers(t, 2)
	for _, ns := range []string{"", "cad-" + mcUnique(t)} {
		c := mcCache(t, mcClient(t, addrs...), &memcached.Options{Namespace: ns})
		var cad cachekit.CompareAndDeleter = c
		for round := 0; round < 5; round++ {
			key := "lease:" + mcUnique(t)
			if err := c.Set(mcBg, key, []byte("token"), time.Minute); err != nil {
				t.Fatal(err)
			}
			if ok, err := cad.CompareAndDelete(mcBg, key, []byte("other")); ok || err != nil {
				t.Fatalf("CompareAndDelete with the wrong value: %v, %v; want false, nil", ok, err)
			}
			var deleted atomic.Int32
			var wg sync.WaitGroup
			for i := 0; i < 100; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ok, err := cad.CompareAndDelete(mcBg, key, []byte("token"))
					if err != nil {
						t.Error(err)
					}
					if ok {
						deleted.Add(1)
					}
				}()
			}
			wg.Wait()
			if n := deleted.Load(); n != 1 {
				t.Fatalf("100 concurrent CompareAndDeletes: %d deleted; want exactly 1", n)
			}
			if _, err := c.Get(mcBg, key); !errors.Is(err, cachekit.ErrNotFound) {
				t.Fatalf("Get after CompareAndDelete: %v; want a miss", err)
			}
			if ok, _ := c.Exists(mcBg, key); ok {
				t.Fatal("Exists after CompareAndDelete: true")
			}
			if n, err := c.Delete(mcBg, key); n != 0 || err != nil {
				t.Fatalf("Delete after CompareAndDelete: %d, %v; want 0", n, err)
			}
			if err := c.Add(mcBg, key, []byte("next"), time.Minute); err != nil {
				t.Fatalf("Add after CompareAndDelete: %v; want the key free at once", err)
			}
		}
	}
}
