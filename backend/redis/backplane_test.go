package redis

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/faultproxy"
	"github.com/cachekit/cachekit/internal/testserver"
)

// collector records what a subscription receives.
type collector struct {
	mu   sync.Mutex
	msgs []cachekit.Invalidation
	errs []error
}

func (c *collector) onMessage(inv cachekit.Invalidation) {
	c.mu.Lock()
	c.msgs = append(c.msgs, inv)
	c.mu.Unlock()
}

func (c *collector) onError(err error) {
	c.mu.Lock()
	c.errs = append(c.errs, err)
	c.mu.Unlock()
}

func (c *collector) messages() []cachekit.Invalidation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]cachekit.Invalidation(nil), c.msgs...)
}

func (c *collector) errors() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.errs...)
}

// poll waits, with a generous bound, until cond holds.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitMessage waits for a message matching match and returns it.
func (c *collector) waitMessage(t *testing.T, what string, match func(cachekit.Invalidation) bool) cachekit.Invalidation {
	t.Helper()
	var got cachekit.Invalidation
	poll(t, what, func() bool {
		for _, m := range c.messages() {
			if match(m) {
				got = m
				return true
			}
		}
		return false
	})
	return got
}

func (c *collector) waitError(t *testing.T, what string, match func(error) bool) error {
	t.Helper()
	var got error
	poll(t, what, func() bool {
		for _, e := range c.errors() {
			if match(e) {
				got = e
				return true
			}
		}
		return false
	})
	return got
}

func isReset(inv cachekit.Invalidation) bool { return inv.Reset }

// nsCache is a cache that knows its namespace, for Watch.
type nsCache struct {
	cachekit.Cache
	ns string
}

func (c nsCache) Namespace() string { return c.ns }

func newBackplane(t *testing.T, cl goredis.UniversalClient, o *BackplaneOptions) cachekit.Backplane {
	t.Helper()
	bp, err := NewBackplane(cl, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })
	return bp
}

func TestBackplanePubSubRoundTrip(t *testing.T) {
	srv := testserver.StartRedis(t)
	ctx := context.Background()
	b1 := newBackplane(t, realClient(t, srv.Addr(), nil), &BackplaneOptions{Channel: "rt"})
	b2 := newBackplane(t, realClient(t, srv.Addr(), nil), &BackplaneOptions{Channel: "rt"})
	other := newBackplane(t, realClient(t, srv.Addr(), nil), &BackplaneOptions{Channel: "other"})
	var c1, c2, c3 collector
	defer b1.Subscribe(c1.onMessage, c1.onError)()
	defer b2.Subscribe(c2.onMessage, c2.onError)()
	defer other.Subscribe(c3.onMessage, c3.onError)()

	sent := []cachekit.Invalidation{
		{Namespace: "a:b%", Keys: []string{"k1", "", "\xff\x00bin", strings.Repeat("x", 1000)}, Origin: "p1"},
		{Namespace: "app", All: true, Origin: "p1"},
		{Keys: []string{"only"}},
	}
	for _, inv := range sent {
		if err := b1.Publish(ctx, inv); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []*collector{&c1, &c2} {
		poll(t, "three messages", func() bool { return len(c.messages()) >= 3 })
		if got := c.messages(); !reflect.DeepEqual(got, sent) {
			t.Fatalf("received %#v\nwant %#v", got, sent)
		}
	}
	// The other channel: a message sent there arrives, and it is the only one.
	if err := other.Publish(ctx, cachekit.Invalidation{Namespace: "x"}); err != nil {
		t.Fatal(err)
	}
	got := c3.waitMessage(t, "the other channel's message", func(inv cachekit.Invalidation) bool { return inv.Namespace == "x" })
	if msgs := c3.messages(); len(msgs) != 1 || got.Namespace != "x" {
		t.Fatalf("other channel received %#v; want only its own message", msgs)
	}
	if errs := append(c1.errors(), c2.errors()...); len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
}

func TestBackplaneStopAndClose(t *testing.T) {
	srv := testserver.StartRedis(t)
	ctx := context.Background()
	bp := newBackplane(t, realClient(t, srv.Addr(), nil), nil)
	var stopped, kept collector
	stop := bp.Subscribe(stopped.onMessage, stopped.onError)
	defer bp.Subscribe(kept.onMessage, kept.onError)()
	stop()
	stop() // harmless twice
	if err := bp.Publish(ctx, cachekit.Invalidation{Namespace: "n", Keys: []string{"k"}}); err != nil {
		t.Fatal(err)
	}
	kept.waitMessage(t, "the message", func(inv cachekit.Invalidation) bool { return inv.Namespace == "n" })
	if n := len(stopped.messages()); n != 0 {
		t.Fatalf("a stopped subscription received %d messages", n)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := bp.Publish(cancelled, cachekit.Invalidation{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish with a cancelled context: %v", err)
	}
	if err := bp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bp.Publish(ctx, cachekit.Invalidation{}); !errors.Is(err, cachekit.ErrClosed) {
		t.Fatalf("Publish after Close: %v; want ErrClosed", err)
	}
	bp.Subscribe(func(cachekit.Invalidation) {}, nil)() // after Close: a no-op
}

// TestBackplaneGarbageIsReported: messages on the channel that are not
// invalidations go to onError and never stop the subscription.
func TestBackplaneGarbageIsReported(t *testing.T) {
	srv := testserver.StartRedis(t)
	ctx := context.Background()
	cl := realClient(t, srv.Addr(), nil)
	bp := newBackplane(t, cl, &BackplaneOptions{Channel: "g"})
	var c collector
	defer bp.Subscribe(c.onMessage, c.onError)()
	valid := encodeInvalidation(cachekit.Invalidation{Namespace: "ns", Keys: []string{"a", "b"}, Origin: "o"})
	garbage := []string{
		"", "hello", "ckbp", "ckbp\x02\x00", "ckbp\x01\x80", "ckbp\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
		"ckbp\x01\x00\x00\x00\x7f", string(valid) + "x", string(valid[:len(valid)-1]),
	}
	for _, g := range garbage {
		if err := cl.Publish(ctx, BackplaneChannelPrefix+"g", g).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := bp.Publish(ctx, cachekit.Invalidation{Namespace: "after"}); err != nil {
		t.Fatal(err)
	}
	c.waitMessage(t, "the valid message after the garbage", func(inv cachekit.Invalidation) bool { return inv.Namespace == "after" })
	poll(t, "an error per garbage message", func() bool { return len(c.errors()) >= len(garbage) })
	if msgs := c.messages(); len(msgs) != 1 {
		t.Fatalf("received %#v; want only the valid message", msgs)
	}
	for _, err := range c.errors() {
		if !strings.Contains(err.Error(), "dropped a message") {
			t.Fatalf("error %v; want a dropped message", err)
		}
	}
}

// TestDecodeInvalidationNeverPanics: every prefix and every one-byte
// corruption of valid messages decodes or fails, without panicking.
func TestDecodeInvalidationNeverPanics(t *testing.T) {
	for _, inv := range []cachekit.Invalidation{
		{},
		{Namespace: "n", Keys: []string{"a", "bb", strings.Repeat("c", 300)}, Origin: "o", All: true, Reset: true},
	} {
		enc := encodeInvalidation(inv)
		got, err := decodeInvalidation(string(enc))
		if err != nil {
			t.Fatal(err)
		}
		if len(inv.Keys) == 0 {
			inv.Keys = nil
		}
		if !reflect.DeepEqual(got, inv) {
			t.Fatalf("decoded %#v; want %#v", got, inv)
		}
		for i := range enc {
			_, _ = decodeInvalidation(string(enc[:i]))
			for _, b := range []byte{0, 0x7f, 0x80, 0xff} {
				m := append([]byte(nil), enc...)
				m[i] = b
				_, _ = decodeInvalidation(string(m))
			}
		}
	}
}

// TestBackplaneResubscribesAfterRestart: a server restart is reported to
// onError, and once the subscription is back a Reset arrives and messages
// flow again.
func TestBackplaneResubscribesAfterRestart(t *testing.T) {
	srv := testserver.StartRedis(t)
	ctx := context.Background()
	bp, err := cachekit.OpenBackplane(ctx, "redis://"+srv.Addr()+"/0?channel=restart&timeout=500ms")
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	var c collector
	defer bp.Subscribe(c.onMessage, c.onError)()
	if err := bp.Publish(ctx, cachekit.Invalidation{Namespace: "before"}); err != nil {
		t.Fatal(err)
	}
	c.waitMessage(t, "a message before the restart", func(inv cachekit.Invalidation) bool { return inv.Namespace == "before" })

	srv.Kill()
	c.waitError(t, "the disconnect reported", func(error) bool { return true })
	srv.Restart()
	c.waitMessage(t, "a Reset after resubscribing", isReset)
	poll(t, "a message after the restart", func() bool {
		_ = bp.Publish(ctx, cachekit.Invalidation{Namespace: "after"})
		for _, m := range c.messages() {
			if m.Namespace == "after" {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
		return false
	})
	if n := countResets(c.messages()); n != 1 {
		t.Fatalf("%d Resets; want 1", n)
	}
}

func countResets(msgs []cachekit.Invalidation) int {
	n := 0
	for _, m := range msgs {
		if m.Reset {
			n++
		}
	}
	return n
}

// TestBackplaneCutConnections: connections cut under the subscription are
// reported and followed by a Reset.
func TestBackplaneCutConnections(t *testing.T) {
	srv := testserver.StartRedis(t)
	proxy := faultproxy.Start(t, srv.Addr())
	ctx := context.Background()
	for _, mode := range []string{ModePubSub, ModeTracking} {
		t.Run(mode, func(t *testing.T) {
			bp := newBackplane(t, realClient(t, proxy.Addr(), nil), &BackplaneOptions{Mode: mode})
			if w, ok := bp.(cachekit.BackplaneWatcher); ok {
				if err := w.Watch(nsCache{ns: "cut"}); err != nil {
					t.Fatal(err)
				}
			}
			var c collector
			defer bp.Subscribe(c.onMessage, c.onError)()
			proxy.CutAll()
			c.waitError(t, "the cut reported", func(error) bool { return true })
			c.waitMessage(t, "a Reset", isReset)
			// Invalidations flow again.
			writer := realClient(t, srv.Addr(), nil)
			poll(t, "a message after the cut", func() bool {
				if mode == ModeTracking {
					_ = writer.Set(ctx, "cut:k", "v", 0).Err()
				} else {
					_ = bp.Publish(ctx, cachekit.Invalidation{Namespace: "cut", Keys: []string{"k"}})
				}
				time.Sleep(20 * time.Millisecond)
				for _, m := range c.messages() {
					if m.Namespace == "cut" && reflect.DeepEqual(m.Keys, []string{"k"}) {
						return true
					}
				}
				return false
			})
		})
	}
}

// TestBackplaneFrozenServer: a server that stops answering but keeps its
// connections open is found by the idle PING; the subscription comes back
// with a Reset once it answers again.
func TestBackplaneFrozenServer(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the health check")
	}
	srv := testserver.StartRedis(t)
	bp := newBackplane(t, realClient(t, srv.Addr(), nil), &BackplaneOptions{Timeout: 200 * time.Millisecond})
	var c collector
	defer bp.Subscribe(c.onMessage, c.onError)()
	srv.Freeze()
	c.waitError(t, "the frozen server reported", func(err error) bool { return strings.Contains(err.Error(), "PING") })
	srv.Thaw()
	c.waitMessage(t, "a Reset after the thaw", isReset)
}

// TestBackplaneServerDownAtStart: Subscribe returns while the server is
// down; the backplane keeps trying and sends a Reset once it receives.
func TestBackplaneServerDownAtStart(t *testing.T) {
	srv := testserver.StartRedis(t)
	proxy := faultproxy.Start(t, srv.Addr())
	proxy.Refuse(true)
	bp := newBackplane(t, realClient(t, proxy.Addr(), &goredis.Options{DialerRetries: 1}), &BackplaneOptions{Timeout: 200 * time.Millisecond})
	var c collector
	defer bp.Subscribe(c.onMessage, c.onError)()
	c.waitError(t, "the failed subscription reported", func(error) bool { return true })
	proxy.Refuse(false)
	c.waitMessage(t, "a Reset once subscribed", isReset)
}

func TestBackplaneTracking(t *testing.T) {
	srv := testserver.StartRedis(t)
	ctx := context.Background()
	bp := newBackplane(t, realClient(t, srv.Addr(), nil), &BackplaneOptions{Mode: ModeTracking})
	w, ok := bp.(cachekit.BackplaneWatcher)
	if !ok {
		t.Fatal("a tracking backplane is not a BackplaneWatcher")
	}
	for _, ns := range []string{"app", "a:b%", "app"} { // watching twice is harmless
		if err := w.Watch(nsCache{ns: ns}); err != nil {
			t.Fatal(err)
		}
	}
	// A cache of this package, as NewTyped would pass it.
	if err := w.Watch(New(realClient(t, srv.Addr(), nil), &Options{Namespace: "real"})); err != nil {
		t.Fatal(err)
	}
	var c collector
	defer bp.Subscribe(c.onMessage, c.onError)()
	if err := bp.Publish(ctx, cachekit.Invalidation{Namespace: "app", Keys: []string{"x"}}); err != nil {
		t.Fatalf("Publish in tracking mode: %v; want nil (a no-op)", err)
	}

	// Writes by a plain client, as any other program's.
	plain := realClient(t, srv.Addr(), nil)
	if err := plain.Set(ctx, "other:k", "v", 0).Err(); err != nil { // not watched
		t.Fatal(err)
	}
	if err := plain.Set(ctx, "app:k1", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	inv := c.waitMessage(t, "app:k1 invalidated", func(inv cachekit.Invalidation) bool { return inv.Namespace == "app" })
	if !reflect.DeepEqual(inv, cachekit.Invalidation{Namespace: "app", Keys: []string{"k1"}}) {
		t.Fatalf("got %#v", inv)
	}
	if err := plain.Del(ctx, "a%3Ab%25:x:y").Err(); err != nil { // DEL of a missing key sends nothing
		t.Fatal(err)
	}
	if err := plain.Set(ctx, "a%3Ab%25:x:y", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	inv = c.waitMessage(t, "a:b%'s key invalidated", func(inv cachekit.Invalidation) bool { return inv.Namespace == "a:b%" })
	if !reflect.DeepEqual(inv.Keys, []string{"x:y"}) {
		t.Fatalf("got %#v; want key x:y", inv)
	}
	if err := plain.Del(ctx, "app:k1").Err(); err != nil {
		t.Fatal(err)
	}
	poll(t, "the DEL invalidated", func() bool {
		n := 0
		for _, m := range c.messages() {
			if m.Namespace == "app" && reflect.DeepEqual(m.Keys, []string{"k1"}) {
				n++
			}
		}
		return n == 2
	})
	for _, m := range c.messages() {
		if m.Namespace != "app" && m.Namespace != "a:b%" && m.Namespace != "real" {
			t.Fatalf("received %#v for a namespace not watched", m)
		}
	}

	if err := plain.Set(ctx, "real:r", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.waitMessage(t, "real:r invalidated", func(inv cachekit.Invalidation) bool {
		return inv.Namespace == "real" && reflect.DeepEqual(inv.Keys, []string{"r"})
	})

	// A namespace watched while subscribed is tracked from Watch's return.
	if err := w.Watch(nsCache{ns: "late"}); err != nil {
		t.Fatal(err)
	}
	if err := plain.Set(ctx, "late:k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.waitMessage(t, "late:k invalidated", func(inv cachekit.Invalidation) bool { return inv.Namespace == "late" })

	// FLUSHDB: every watched namespace changed.
	if err := plain.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"app", "a:b%", "real", "late"} {
		c.waitMessage(t, "All for "+ns, func(inv cachekit.Invalidation) bool { return inv.Namespace == ns && inv.All })
	}

	// A cache without a namespace: every key, including those of the
	// namespaces (a key "app:k" is also key "app:k" of that cache).
	if err := w.Watch(nsCache{}); err != nil {
		t.Fatal(err)
	}
	if err := plain.Set(ctx, "plain", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.waitMessage(t, "a key of the namespace-less cache", func(inv cachekit.Invalidation) bool {
		return inv.Namespace == "" && reflect.DeepEqual(inv.Keys, []string{"plain"})
	})
	if err := plain.Set(ctx, "app:k2", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.waitMessage(t, "app:k2 for the namespace-less cache", func(inv cachekit.Invalidation) bool {
		return inv.Namespace == "" && reflect.DeepEqual(inv.Keys, []string{"app:k2"})
	})
	c.waitMessage(t, "app:k2 for app", func(inv cachekit.Invalidation) bool {
		return inv.Namespace == "app" && reflect.DeepEqual(inv.Keys, []string{"k2"})
	})
	if errs := c.errors(); len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
}

// TestBackplaneTrackingRestart: tracking is set up again after a server
// restart, with a Reset.
func TestBackplaneTrackingRestart(t *testing.T) {
	srv := testserver.StartRedis(t)
	ctx := context.Background()
	bp, err := cachekit.OpenBackplane(ctx, "redis://"+srv.Addr()+"?mode=tracking&timeout=500ms")
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	if err := bp.(cachekit.BackplaneWatcher).Watch(nsCache{ns: "r"}); err != nil {
		t.Fatal(err)
	}
	var c collector
	defer bp.Subscribe(c.onMessage, c.onError)()
	srv.Kill()
	c.waitError(t, "the disconnect reported", func(error) bool { return true })
	srv.Restart()
	c.waitMessage(t, "a Reset", isReset)
	plain := realClient(t, srv.Addr(), nil)
	if err := plain.Set(ctx, "r:k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.waitMessage(t, "r:k invalidated", func(inv cachekit.Invalidation) bool { return inv.Namespace == "r" })
}

func TestNewBackplaneOptions(t *testing.T) {
	cl := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer cl.Close()
	cluster := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cluster.Close()
	ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	for _, tc := range []struct {
		client goredis.UniversalClient
		opts   *BackplaneOptions
	}{
		{cl, &BackplaneOptions{Mode: "bogus"}},
		{cl, &BackplaneOptions{Mode: ModeTracking, Channel: "x"}},
		{ring, &BackplaneOptions{Mode: ModeTracking}},
		{nil, nil},
	} {
		if _, err := NewBackplane(tc.client, tc.opts); err == nil {
			t.Errorf("NewBackplane(%T, %+v) succeeded", tc.client, tc.opts)
		}
	}
	// Valid ones contact nothing, and Close leaves the client open.
	for _, o := range []*BackplaneOptions{nil, {}, {Mode: ModeTracking}} {
		bp, err := NewBackplane(cl, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := bp.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range []*BackplaneOptions{nil, {Mode: ModeTracking}} {
		bp, err := NewBackplane(cluster, o)
		if err != nil {
			t.Fatal(err)
		}
		bp.Close()
	}
	if err := cl.Ping(context.Background()).Err(); errors.Is(err, goredis.ErrClosed) {
		t.Fatal("Close closed the caller's client")
	}
}

func TestBackplaneURLs(t *testing.T) {
	ctx := context.Background()
	for _, u := range []string{
		"redis://127.0.0.1:1",
		"redis://127.0.0.1:1/3?channel=app",
		"redis://:pw@127.0.0.1:1/0?channel=app&timeout=250ms&dial_timeout=1s&mode=pubsub",
		"redis://127.0.0.1:1?mode=tracking",
		"rediss://user:pw@127.0.0.1:1/0?channel=app",
	} {
		bp, err := cachekit.OpenBackplane(ctx, u)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if err := bp.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{
		"redis://:s3cr3tpw@127.0.0.1:1/0?bogus=1",
		"redis://:s3cr3tpw@127.0.0.1:1/0?mode=bad",
		"redis://:s3cr3tpw@127.0.0.1:1/0?mode=tracking&channel=app",
		"redis://:s3cr3tpw@127.0.0.1:1/0?channel=",
		"redis://:s3cr3tpw@127.0.0.1:1/0?timeout=0",
		"redis://:s3cr3tpw@127.0.0.1:1/0?timeout=soon",
		"redis://:s3cr3tpw@127.0.0.1:1/x",
		"redis://:s3cr3tpw@127.0.0.1:1/0?namespace=app",
		"redis://:s3cr3tpw@127.0.0.1:1/0?channel=a&channel=b",
		"redis://:s3cr3tpw@127.0.0.1:1/0#frag",
		"redis://:s3cr3tpw@/0",
	} {
		bp, err := cachekit.OpenBackplane(ctx, u)
		if err == nil {
			bp.Close()
			t.Errorf("%s: opened", u)
			continue
		}
		if !errors.Is(err, cachekit.ErrInvalidURL) {
			t.Errorf("%s: %v; want ErrInvalidURL", u, err)
		}
		if strings.Contains(err.Error(), "s3cr3tpw") || strings.Contains(fmt.Sprintf("%+v", err), "s3cr3tpw") {
			t.Errorf("%s: the error shows the password: %v", u, err)
		}
	}
}

// TestBackplaneTrackingConnectionKilled: the tracking connection killed
// alone (the subscription lives on, but the server no longer tracks) is
// found by the health check; tracking is set up again, with a Reset.
func TestBackplaneTrackingConnectionKilled(t *testing.T) {
	srv := testserver.StartRedis(t)
	ctx := context.Background()
	bp := newBackplane(t, realClient(t, srv.Addr(), nil), &BackplaneOptions{Mode: ModeTracking, Timeout: 200 * time.Millisecond})
	if err := bp.(cachekit.BackplaneWatcher).Watch(nsCache{ns: "kill"}); err != nil {
		t.Fatal(err)
	}
	var c collector
	defer bp.Subscribe(c.onMessage, c.onError)()
	plain := realClient(t, srv.Addr(), nil)
	// Every normal (not pub/sub) connection but the caller's: the
	// backplane's tracking connection.
	if err := plain.Do(ctx, "client", "kill", "type", "normal").Err(); err != nil {
		t.Fatal(err)
	}
	c.waitError(t, "the lost tracking connection reported", func(err error) bool { return strings.Contains(err.Error(), "tracking connection") })
	c.waitMessage(t, "a Reset", isReset)
	poll(t, "invalidations again", func() bool {
		_ = plain.Set(ctx, "kill:k", "v", 0).Err()
		time.Sleep(20 * time.Millisecond)
		for _, m := range c.messages() {
			if m.Namespace == "kill" {
				return true
			}
		}
		return false
	})
}
