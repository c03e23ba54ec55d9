package memcached

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/testpeer"
)

// refusedAddr returns a 127.0.0.1 address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestClearWithoutNamespaceNeedsAllowFlush: a cache with no namespace
// refuses to flush_all unless told it may, and sends nothing.
func TestClearWithoutNamespaceNeedsAllowFlush(t *testing.T) {
	bh := testpeer.NewBlackhole(t)
	client := memcache.New(bh.Addr())
	defer client.Close()
	c := New(client, nil)
	defer c.Close()
	err := c.Clear(context.Background())
	if !errors.Is(err, cachekit.ErrFlushNotAllowed) {
		t.Fatalf("Clear without a namespace or AllowFlush: %v; want ErrFlushNotAllowed", err)
	}
	var ce *cachekit.Error
	if !errors.As(err, &ce) || ce.Op != "Clear" {
		t.Fatalf("Clear: %v; want a *cachekit.Error for Clear", err)
	}
	if n := bh.Accepted(); n != 0 {
		t.Fatalf("the server saw %d connections; want none", n)
	}

	for _, u := range []string{"memcached://h1?allow_flush=true", "memcached://h1?allow_flush=1&namespace="} {
		oc, err := cachekit.Open(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		if !oc.(*Cache).allowFlush {
			t.Errorf("Open(%q): AllowFlush not set", u)
		}
		oc.Close()
	}
	oc, err := cachekit.Open(context.Background(), "memcached://"+bh.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Close()
	if err := oc.Clear(context.Background()); !errors.Is(err, cachekit.ErrFlushNotAllowed) {
		t.Fatalf("Clear on a URL without namespace or allow_flush: %v; want ErrFlushNotAllowed", err)
	}
}

// TestBatchKeyErrors: a bad key in a batch is reported as on the other
// backends: a *cachekit.Error with the operation and the bad key, wrapping
// ErrInvalidKey (or ErrTooLarge for a value).
func TestBatchKeyErrors(t *testing.T) {
	bh := testpeer.NewBlackhole(t)
	client := memcache.New(bh.Addr())
	defer client.Close()
	c := New(client, &Options{Namespace: "ns", MaxValueSize: 4})
	defer c.Close()
	ctx := context.Background()
	long := strings.Repeat("k", cachekit.MaxKeySize+1)
	check := func(op, key string, sentinel, err error) {
		t.Helper()
		var ce *cachekit.Error
		if !errors.Is(err, sentinel) || !errors.As(err, &ce) || ce.Op != op || ce.Key != key {
			t.Errorf("%s with a bad key %.20q: %v; want a *cachekit.Error{Op: %s, Key: the key} wrapping %v", op, key, err, op, sentinel)
		}
	}
	_, err := c.GetMany(ctx, []string{"ok", ""})
	check("GetMany", "", cachekit.ErrInvalidKey, err)
	_, err = c.GetMany(ctx, []string{"ok", long})
	check("GetMany", long, cachekit.ErrInvalidKey, err)
	check("SetMany", long, cachekit.ErrInvalidKey, c.SetMany(ctx, map[string][]byte{long: nil}, 0))
	check("SetMany", "big", cachekit.ErrTooLarge, c.SetMany(ctx, map[string][]byte{"big": []byte("12345")}, 0))
	_, err = c.Delete(ctx, "ok", long)
	check("Delete", long, cachekit.ErrInvalidKey, err)
	if n := bh.Accepted(); n != 0 {
		t.Fatalf("the server saw %d connections; want none", n)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want fate
		dead bool
	}{
		{nil, answered, false},
		{memcache.ErrCacheMiss, answered, false},
		{memcache.ErrNotStored, answered, false},
		{memcache.ErrServerError, answered, false},
		{fmt.Errorf("memcache: unexpected response line: %q", "ERROR"), answered, false},
		{&staleError{cause: io.EOF}, notSent, true},
		{&memcache.ConnectTimeoutError{Addr: &net.TCPAddr{}}, notSent, false},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, notSent, false},
		{&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}, notSent, true},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, lost, true},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, lost, false},
		{io.EOF, lost, true},
		{io.ErrUnexpectedEOF, lost, true},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %d; want %d", tc.err, got, tc.want)
		}
		if got := deadConn(tc.err); got != tc.dead {
			t.Errorf("deadConn(%v) = %v; want %v", tc.err, got, tc.dead)
		}
	}
}

// TestLivenessDialer: a connection the peer closed while it sat idle fails
// the next request before anything is written; a live one passes.
func TestLivenessDialer(t *testing.T) {
	if !canCheck {
		t.Skip("no liveness check on this platform")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var got atomic.Int64 // bytes the server received
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 16)
		n, _ := s.Read(buf)
		got.Add(int64(n))
		s.Write([]byte("reply\r\n"))
		n, _ = s.Read(buf) // the second request
		got.Add(int64(n))
		s.Write([]byte("reply\r\n"))
		s.Close() // and the server goes away while the connection is idle
	}()
	nc, err := LivenessDialer(nil)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	buf := make([]byte, 16)
	for i := 0; i < 2; i++ {
		if _, err := nc.Write([]byte("get k\r\n")); err != nil {
			t.Fatalf("request %d on a live connection: %v", i, err)
		}
		if _, err := nc.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	time.Sleep(50 * time.Millisecond) // let the FIN arrive
	before := got.Load()
	_, err = nc.Write([]byte("set k 0 0 1\r\nx\r\n"))
	if !errors.Is(err, errStaleConn) || classify(err) != notSent {
		t.Fatalf("write on a connection the server closed: %v; want errStaleConn (not sent)", err)
	}
	if got.Load() != before {
		t.Fatal("the server received the request")
	}
}

// TestBreakerOpensOnRefusedDials: without a server, the first calls fail
// with the dial's cause; after BreakerThreshold of them the breaker answers
// at once with ErrUnavailable wrapping the cause, without dialing.
func TestBreakerOpensOnRefusedDials(t *testing.T) {
	addr := refusedAddr(t)
	var dials atomic.Int64
	client := memcache.New(addr)
	client.DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
	defer client.Close()
	c := New(client, &Options{Namespace: "ns", BreakerThreshold: 2, BreakerDuration: time.Hour})
	defer c.Close()
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		_, err := c.Get(ctx, "k")
		if !errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, cachekit.ErrUnavailable) {
			t.Fatalf("Get %d: %v; want ECONNREFUSED, breaker still closed", i, err)
		}
	}
	n := dials.Load()
	for op, err := range map[string]error{
		"Get": func() error { _, err := c.Get(ctx, "k"); return err }(),
		"Set": c.Set(ctx, "k", []byte("v"), 0),
		"Delete": func() error {
			_, err := c.Delete(ctx, "k")
			return err
		}(),
	} {
		if !errors.Is(err, cachekit.ErrUnavailable) || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s with the breaker open: %v; want ErrUnavailable wrapping ECONNREFUSED", op, err)
		}
		var ce *cachekit.Error
		if !errors.As(err, &ce) || ce.Op != op {
			t.Errorf("%s: %v is not a *cachekit.Error for %s", op, err, op)
		}
	}
	if dials.Load() != n {
		t.Fatalf("%d dials with the breaker open; want none", dials.Load()-n)
	}

	// A caller's own cancellation is not a server failure.
	client2 := memcache.New(testpeer.NewBlackhole(t).Addr())
	defer client2.Close()
	c2 := New(client2, &Options{BreakerThreshold: 1, BreakerDuration: time.Hour})
	for i := 0; i < 3; i++ {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err := c2.Get(cctx, "k")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get against a silent server: %v; want DeadlineExceeded", err)
		}
	}
	// The abandoned requests end at the client's Timeout (500ms) and count
	// as failures then: that timeout is the backend's own.
	c2.Close()
	if _, err := c2.Get(ctx, "k"); !errors.Is(err, cachekit.ErrClosed) {
		t.Fatal(err)
	}
}

// TestBreakerDisabled: a negative threshold turns the breaker off.
func TestBreakerDisabled(t *testing.T) {
	client := memcache.New(refusedAddr(t))
	defer client.Close()
	c := New(client, &Options{BreakerThreshold: -1})
	defer c.Close()
	for i := 0; i < 10; i++ {
		if _, err := c.Get(context.Background(), "k"); !errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, cachekit.ErrUnavailable) {
			t.Fatalf("Get %d: %v; want ECONNREFUSED and no breaker", i, err)
		}
	}
	oc, err := cachekit.Open(context.Background(), "memcached://h1,h2?breaker_threshold=5&breaker_duration=250ms")
	if err != nil {
		t.Fatal(err)
	}
	mc := oc.(*Cache)
	if mc.breakerThreshold != 5 || mc.breakerDuration != 250*time.Millisecond || len(mc.breakers) != 2 {
		t.Errorf("URL breaker params: threshold %d duration %v breakers %d", mc.breakerThreshold, mc.breakerDuration, len(mc.breakers))
	}
	oc.Close()
	oc, err = cachekit.Open(context.Background(), "memcached://h1?breaker_threshold=0")
	if err != nil {
		t.Fatal(err)
	}
	if oc.(*Cache).br != nil {
		t.Error("breaker_threshold=0 left a breaker")
	}
	oc.Close()
}

// TestDeleteSeesClearElsewhere is issue #12 item 4 as a unit test: a cache
// that trusts its last-seen generation for an hour still deletes the live
// key after another cache cleared the namespace.
func TestDeleteSeesClearElsewhere(t *testing.T) {
	addrs := testServers(t, 1)
	client := memcache.New(addrs...)
	defer client.Close()
	ns := "del-" + fmt.Sprint(time.Now().UnixNano())
	a := New(client, &Options{Namespace: ns, GenerationTTL: time.Hour})
	b := New(client, &Options{Namespace: ns})
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	if err := a.Set(ctx, "k", []byte("old"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(ctx, "k", []byte("new"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if n, err := a.Delete(ctx, "k"); n != 1 || err != nil {
		t.Fatalf("Delete: %d, %v; want 1", n, err)
	}
	if v, err := b.Get(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("after Delete reported 1: Get = %q, %v; want a miss", v, err)
	}
}

// TestCompareAndDelete against a server from the environment: exactly one
// of 100 concurrent releases deletes, readers miss after, Add works at once.
func TestCompareAndDelete(t *testing.T) {
	addrs := testServers(t, 1)
	client := memcache.New(addrs...)
	client.MaxIdleConns = 16
	defer client.Close()
	for _, ns := range []string{"", fmt.Sprint("cad-", time.Now().UnixNano())} {
		c := New(client, &Options{Namespace: ns})
		ctx := context.Background()
		key := fmt.Sprint("lease-", time.Now().UnixNano())
		if ok, err := c.CompareAndDelete(ctx, key, []byte("t")); ok || err != nil {
			t.Fatalf("CompareAndDelete of a missing key: %v, %v", ok, err)
		}
		if err := c.Set(ctx, key, []byte("t"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if ok, err := c.CompareAndDelete(ctx, key, []byte("u")); ok || err != nil {
			t.Fatalf("CompareAndDelete with another value: %v, %v", ok, err)
		}
		var wins atomic.Int64
		var wg sync.WaitGroup
		for i := 0; i < 100; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := c.CompareAndDelete(ctx, key, []byte("t"))
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("ns %q: %d of 100 CompareAndDeletes deleted; want 1", ns, wins.Load())
		}
		if _, err := c.Get(ctx, key); !errors.Is(err, cachekit.ErrNotFound) {
			t.Fatalf("Get after CompareAndDelete: %v", err)
		}
		if err := c.Add(ctx, key, []byte("next"), time.Minute); err != nil {
			t.Fatalf("Add after CompareAndDelete: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGetManyPartialPool: in a pool of a live server and a refused
// address, GetMany returns the live server's keys with an error wrapping
// cachekit.ErrUnavailable and the dial error, naming the dead server and
// counting the keys it could not read. With a single generation key, the
// whole namespace depends on the server holding it: when that is the dead
// one, no key is read, and GetMany fails with the dial error and a nil
// map, as it does without the selector; when it is the live one, the live
// keys are read.
func TestGetManyPartialPool(t *testing.T) {
	live := testServers(t, 1)[0]
	dead := refusedAddr(t)
	ring := mustRing(t, live, dead)
	client := memcache.NewFromSelector(ring)
	client.Timeout = 2 * time.Second
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()
	id := strconv.FormatInt(time.Now().UnixNano(), 36)

	// The namespaces used below: for the single-key layout, one whose
	// generation key is on the dead server and one on the live server.
	var singleDead, singleLive string
	for i := 0; singleDead == "" || singleLive == ""; i++ {
		ns := "partial-" + id + "-" + strconv.Itoa(i)
		a, err := ring.PickServer(generationKey(namespacePart(ns)))
		if err != nil {
			t.Fatal(err)
		}
		if a.String() == dead && singleDead == "" {
			singleDead = ns
		} else if a.String() == live && singleLive == "" {
			singleLive = ns
		}
	}
	tests := []struct {
		name      string
		opts      Options
		wholeFail bool // nothing read
	}{
		{"no namespace", Options{Selector: ring}, false},
		{"per-server generations", Options{Namespace: "partial-" + id, Selector: ring}, false},
		{"single key on the live server", Options{Namespace: singleLive, Selector: ring, SingleGenerationKey: true}, false},
		{"single key on the dead server", Options{Namespace: singleDead, Selector: ring, SingleGenerationKey: true}, true},
		{"no selector", Options{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.BreakerThreshold = -1 // every call dials: the dial error each time
			c := New(client, &opts)
			defer c.Close()
			var keys []string
			liveKeys := map[string]bool{}
			for i := 0; len(liveKeys) < 20 || len(keys)-len(liveKeys) < 20; i++ {
				k := "k" + strconv.Itoa(i)
				keys = append(keys, k)
				placed := k // the Ring places a namespaced key without its generation
				if c.nsPart != "" {
					placed = "~" + c.nsPart + "::" + k
				}
				a, err := ring.PickServer(placed)
				if err != nil {
					t.Fatal(err)
				}
				if a.String() == live {
					liveKeys[k] = true
					if tc.opts.SingleGenerationKey && tc.wholeFail {
						continue // its generation's server is dead: Set fails
					}
					if err := c.Set(ctx, k, []byte("v"+k), time.Minute); err != nil {
						t.Fatal(err)
					}
				}
			}
			for round := range 2 {
				if round == 1 && tc.opts.SingleGenerationKey && tc.wholeFail {
					// As if the generation had been seen before its
					// server died: the request holds the live keys too.
					c.slots[0].cur.Store(c.newGenState(12345))
				}
				got, err := c.GetMany(ctx, keys)
				if tc.wholeFail {
					if !errors.Is(err, syscall.ECONNREFUSED) || got != nil {
						t.Fatalf("round %d: GetMany = %d keys, %v; want a nil map and the dial error", round, len(got), err)
					}
					continue
				}
				mustPartial(t, err, got, dead, len(keys), liveKeys)
			}
		})
	}
}

// mustPartial checks a GetMany result with dead down: liveKeys and their
// values ("v"+key), and an error saying how many of total keys it missed.
func mustPartial(t *testing.T, err error, got map[string][]byte, dead string, total int, liveKeys map[string]bool) {
	t.Helper()
	if !errors.Is(err, cachekit.ErrUnavailable) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("GetMany with %s dead: %v; want ErrUnavailable and ECONNREFUSED", dead, err)
	}
	msg := fmt.Sprintf("%d of %d keys not read", total-len(liveKeys), total)
	if !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), dead) {
		t.Fatalf("GetMany error %q; want it to say %q and name %s", err, msg, dead)
	}
	if got == nil || len(got) != len(liveKeys) {
		t.Fatalf("GetMany returned %d keys (nil map: %v); want %d", len(got), got == nil, len(liveKeys))
	}
	for k, v := range got {
		if !liveKeys[k] || string(v) != "v"+k {
			t.Fatalf("GetMany returned %q = %q", k, v)
		}
	}
}
