package redis

import (
	"context"
	"errors"
	"fmt"
	"github.com/cachekit/cachekit/internal/testpeer"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/cachekit/cachekit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// commandCounter is a go-redis hook counting the commands a client tries to
// send.
type commandCounter struct{ n atomic.Int64 }

func (h *commandCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *commandCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *commandCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// newClient returns a client for addr that the test closes at its end.
func newClient(t *testing.T, opt *goredis.Options) *goredis.Client {
	t.Helper()
	opt.MaxRetries = -1
	opt.Protocol = 2
	opt.DisableIdentity = true
	cl := goredis.NewClient(opt)
	t.Cleanup(func() { cl.Close() })
	return cl
}

func TestOptionDefaults(t *testing.T) {
	cl := newClient(t, &goredis.Options{Addr: "127.0.0.1:1"})
	c := New(cl, nil)
	if c.timeout != DefaultTimeout || c.maxValue != MaxValueSize || c.scanCount != DefaultScanCount ||
		c.prefix != "" || c.pattern != "" || c.owned || c.kind != single || c.ctxAware {
		t.Fatalf("New(client, nil) = %+v", c)
	}
	c = New(cl, &Options{Namespace: "a*b", Timeout: -1, MaxValueSize: MaxValueSize + 1, ScanCount: 7})
	if c.timeout != 0 || c.maxValue != MaxValueSize || c.scanCount != 7 || c.prefix != "a*b:" || c.pattern != `a\*b:*` {
		t.Fatalf("New with options = %+v", c)
	}
	c = New(cl, &Options{Timeout: 5 * time.Millisecond, MaxValueSize: 10})
	if c.timeout != 5*time.Millisecond || c.maxValue != 10 {
		t.Fatalf("New with options = %+v", c)
	}

	aware := newClient(t, &goredis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	if c := New(aware, nil); !c.ctxAware {
		t.Error("a ContextTimeoutEnabled client was not recognised")
	}
	noDeadlines := newClient(t, &goredis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true, ReadTimeout: -2})
	if c := New(noDeadlines, nil); c.ctxAware {
		t.Error("a client with ReadTimeout -2 ignores deadlines, but was taken as context-aware")
	}
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, ContextTimeoutEnabled: true})
	defer cc.Close()
	if c := New(cc, nil); c.kind != cluster || !c.ctxAware {
		t.Errorf("cluster client: kind %v ctxAware %v", c.kind, c.ctxAware)
	}
	rg := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer rg.Close()
	if c := New(rg, nil); c.kind != ring || c.ctxAware {
		t.Errorf("ring client: kind %v ctxAware %v", c.kind, c.ctxAware)
	}
}

func TestTTLRounding(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{0, 0},
		{time.Nanosecond, time.Millisecond},
		{time.Millisecond, time.Millisecond},
		{1500 * time.Microsecond, 2 * time.Millisecond},
		{time.Second + 1, time.Second + time.Millisecond},
		{time.Hour, time.Hour},
		{1<<63 - 1, 1<<63 - 1},
	} {
		if got := ttlArg(tc.in); got != tc.want {
			t.Errorf("ttlArg(%v) = %v; want %v", tc.in, got, tc.want)
		}
	}
}

// TestValidationBeforeIO checks that bad arguments, a done context and a
// closed cache are reported without sending anything.
func TestValidationBeforeIO(t *testing.T) {
	hole := testpeer.NewBlackhole(t)
	counter := &commandCounter{}
	cl := newClient(t, &goredis.Options{Addr: hole.Addr(), ContextTimeoutEnabled: true})
	cl.AddHook(counter)
	c := New(cl, &Options{Namespace: "ns", MaxValueSize: 4, Timeout: 50 * time.Millisecond})
	ctx := context.Background()
	long := strings.Repeat("k", cachekit.MaxKeySize+1)
	big := []byte("12345")

	check := func(what string, err, target error, op, key string) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Errorf("%s: %v; want errors.Is %v", what, err, target)
		}
		var ce *cachekit.Error
		if !errors.As(err, &ce) || ce.Op != op || ce.Key != key {
			t.Errorf("%s: %#v; want a *cachekit.Error with Op %q Key %q", what, err, op, key)
		}
	}
	for _, k := range []string{"", long} {
		_, err := c.Get(ctx, k)
		check("Get", err, cachekit.ErrInvalidKey, "Get", k)
		_, err = c.GetMany(ctx, []string{"ok", k})
		check("GetMany", err, cachekit.ErrInvalidKey, "GetMany", k)
		check("Set", c.Set(ctx, k, nil, 0), cachekit.ErrInvalidKey, "Set", k)
		check("SetMany", c.SetMany(ctx, map[string][]byte{k: nil}, 0), cachekit.ErrInvalidKey, "SetMany", k)
		check("Add", c.Add(ctx, k, nil, 0), cachekit.ErrInvalidKey, "Add", k)
		_, err = c.Delete(ctx, "ok", k)
		check("Delete", err, cachekit.ErrInvalidKey, "Delete", k)
		_, err = c.Exists(ctx, k)
		check("Exists", err, cachekit.ErrInvalidKey, "Exists", k)
		_, err = c.Increment(ctx, k, 1)
		check("Increment", err, cachekit.ErrInvalidKey, "Increment", k)
		_, err = c.Expire(ctx, k, 0)
		check("Expire", err, cachekit.ErrInvalidKey, "Expire", k)
	}
	check("Set ttl<0", c.Set(ctx, "k", nil, -1), cachekit.ErrInvalidTTL, "Set", "k")
	check("SetMany ttl<0", c.SetMany(ctx, map[string][]byte{"k": nil}, -1), cachekit.ErrInvalidTTL, "SetMany", "")
	check("Add ttl<0", c.Add(ctx, "k", nil, -1), cachekit.ErrInvalidTTL, "Add", "k")
	_, err := c.Expire(ctx, "k", -1)
	check("Expire ttl<0", err, cachekit.ErrInvalidTTL, "Expire", "k")
	check("Set too large", c.Set(ctx, "k", big, 0), cachekit.ErrTooLarge, "Set", "k")
	check("SetMany too large", c.SetMany(ctx, map[string][]byte{"a": nil, "k": big}, 0), cachekit.ErrTooLarge, "SetMany", "k")
	check("Add too large", c.Add(ctx, "k", big, 0), cachekit.ErrTooLarge, "Add", "k")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	expired, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel2()
	for _, tc := range []struct {
		ctx    context.Context
		target error
	}{{cancelled, context.Canceled}, {expired, context.DeadlineExceeded}} {
		for op, err := range everyOp(tc.ctx, c) {
			key := ""
			switch op {
			case "Get", "Set", "Add", "Exists", "Increment", "Expire":
				key = "k"
			}
			check(op+" with a done context", err, tc.target, op, key)
		}
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for op, err := range everyOp(ctx, c) {
		key := ""
		switch op {
		case "Get", "Set", "Add", "Exists", "Increment", "Expire":
			key = "k"
		}
		check(op+" after Close", err, cachekit.ErrClosed, op, key)
	}
	if n := counter.n.Load(); n != 0 {
		t.Errorf("%d commands were sent; want none", n)
	}
	if n := hole.Accepted(); n != 0 {
		t.Errorf("%d connections were made; want none", n)
	}
	// New's Close leaves the caller's client open.
	if err := cl.Close(); err != nil {
		t.Errorf("closing the caller's client after the cache's Close: %v", err)
	}
}

func everyOp(ctx context.Context, c cachekit.Cache) map[string]error {
	errs := map[string]error{}
	_, errs["Get"] = c.Get(ctx, "k")
	_, errs["GetMany"] = c.GetMany(ctx, []string{"k", "j"})
	errs["Set"] = c.Set(ctx, "k", []byte("v"), 0)
	errs["SetMany"] = c.SetMany(ctx, map[string][]byte{"k": []byte("v")}, 0)
	errs["Add"] = c.Add(ctx, "k", []byte("v"), 0)
	_, errs["Delete"] = c.Delete(ctx, "k")
	_, errs["Exists"] = c.Exists(ctx, "k")
	_, errs["Increment"] = c.Increment(ctx, "k", 1)
	_, errs["Expire"] = c.Expire(ctx, "k", time.Second)
	errs["Clear"] = c.Clear(ctx)
	return errs
}

// TestDeadlineHolds runs every operation against a server that never
// answers, with and without ContextTimeoutEnabled on the client, and checks
// that each returns context.DeadlineExceeded close to its deadline.
func TestDeadlineHolds(t *testing.T) {
	const deadline = 60 * time.Millisecond
	const slack = 50 * time.Millisecond
	for _, aware := range []bool{true, false} {
		t.Run(fmt.Sprintf("ContextTimeoutEnabled=%v", aware), func(t *testing.T) {
			hole := testpeer.NewBlackhole(t)
			// ReadTimeout ends the calls abandoned by the cache when the
			// client ignores the context (and keeps goleak happy).
			cl := newClient(t, &goredis.Options{Addr: hole.Addr(), ContextTimeoutEnabled: aware, ReadTimeout: 300 * time.Millisecond})
			for _, ns := range []string{"", "ns"} {
				for _, useDefault := range []bool{false, true} {
					for op, run := range ops() {
						t.Run(fmt.Sprintf("%s/namespace=%q/default-timeout=%v", op, ns, useDefault), func(t *testing.T) {
							t.Parallel()
							opts := &Options{Namespace: ns, AllowFlush: true, BreakerThreshold: -1}
							if useDefault {
								opts.Timeout = deadline
							}
							c := New(cl, opts)
							// A loaded machine can delay any one call; a
							// deadline that does not hold fails every time.
							var took time.Duration
							for attempt := 0; attempt < 3; attempt++ {
								ctx, cancel := context.Background(), context.CancelFunc(func() {})
								if !useDefault {
									ctx, cancel = context.WithTimeout(ctx, deadline)
								}
								start := time.Now()
								err := run(ctx, c)
								took = time.Since(start)
								cancel()
								if !errors.Is(err, context.DeadlineExceeded) {
									t.Fatalf("%v; want context.DeadlineExceeded", err)
								}
								if took <= deadline+slack {
									return
								}
							}
							t.Errorf("took %v (3 attempts); deadline %v", took, deadline)
						})
					}
				}
			}
		})
	}
}

// TestDeadlineKeepsClientError: a deadline that fires on the socket is
// context.DeadlineExceeded, and the client's i/o timeout stays reachable.
func TestDeadlineKeepsClientError(t *testing.T) {
	hole := testpeer.NewBlackhole(t)
	cl := newClient(t, &goredis.Options{Addr: hole.Addr(), ContextTimeoutEnabled: true})
	c := New(cl, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Get: %v; want context.DeadlineExceeded with the client's i/o timeout (os.ErrDeadlineExceeded) inside", err)
	}
	var ce *cachekit.Error
	if !errors.As(err, &ce) || ce.Op != "Get" || ce.Key != "k" {
		t.Fatalf("Get: %#v; want a *cachekit.Error", err)
	}
}

func ops() map[string]func(context.Context, *Cache) error {
	return map[string]func(context.Context, *Cache) error{
		"Get":     func(ctx context.Context, c *Cache) error { _, err := c.Get(ctx, "k"); return err },
		"GetMany": func(ctx context.Context, c *Cache) error { _, err := c.GetMany(ctx, []string{"a", "b"}); return err },
		"Set":     func(ctx context.Context, c *Cache) error { return c.Set(ctx, "k", []byte("v"), time.Second) },
		"SetMany": func(ctx context.Context, c *Cache) error {
			return c.SetMany(ctx, map[string][]byte{"a": nil, "b": nil}, 0)
		},
		"Add":       func(ctx context.Context, c *Cache) error { return c.Add(ctx, "k", []byte("v"), 0) },
		"Delete":    func(ctx context.Context, c *Cache) error { _, err := c.Delete(ctx, "a", "b"); return err },
		"Exists":    func(ctx context.Context, c *Cache) error { _, err := c.Exists(ctx, "k"); return err },
		"Increment": func(ctx context.Context, c *Cache) error { _, err := c.Increment(ctx, "k", 1); return err },
		"Expire":    func(ctx context.Context, c *Cache) error { _, err := c.Expire(ctx, "k", time.Second); return err },
		"Persist":   func(ctx context.Context, c *Cache) error { _, err := c.Expire(ctx, "k", 0); return err },
		"Clear":     func(ctx context.Context, c *Cache) error { return c.Clear(ctx) },
	}
}

// TestCancelWithoutContextTimeouts: with a client that ignores contexts on
// the wire, a cancellation mid-command still returns at once.
func TestCancelWithoutContextTimeouts(t *testing.T) {
	hole := testpeer.NewBlackhole(t)
	cl := newClient(t, &goredis.Options{Addr: hole.Addr(), ReadTimeout: 300 * time.Millisecond})
	c := New(cl, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Get(ctx, "k")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Get: %v; want context.Canceled", err)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Fatalf("Get took %v after a cancel at 30ms", took)
	}
}

// srvErr stands in for an error reply from the server.
type srvErr string

func (e srvErr) Error() string { return string(e) }
func (srvErr) RedisError()     {}

func TestErrorMapping(t *testing.T) {
	for _, msg := range []string{
		"ERR Protocol error: invalid bulk length",
		"ERR string exceeds maximum allowed size (proto-max-bulk-len)",
	} {
		err := tooLarge(srvErr(msg))
		var se srvErr
		if !errors.Is(err, cachekit.ErrTooLarge) || !errors.As(err, &se) {
			t.Errorf("tooLarge(%q) = %v; want ErrTooLarge with the reply reachable", msg, err)
		}
	}
	for _, msg := range []string{
		"ERR value is not an integer or out of range",
		"ERR increment or decrement would overflow",
	} {
		err := notInteger(srvErr(msg))
		var se srvErr
		if !errors.Is(err, cachekit.ErrNotInteger) || !errors.As(err, &se) {
			t.Errorf("notInteger(%q) = %v; want ErrNotInteger with the reply reachable", msg, err)
		}
	}
	other := srvErr("WRONGTYPE Operation against a key holding the wrong kind of value")
	if err := notInteger(other); err != error(other) {
		t.Errorf("notInteger(WRONGTYPE) = %v; want it unchanged", err)
	}
	// A plain network error is not a server reply, whatever it says.
	if err := tooLarge(errors.New("invalid bulk length")); errors.Is(err, cachekit.ErrTooLarge) {
		t.Errorf("tooLarge(non-reply) = %v", err)
	}

	// contextError: i/o timeouts at the context's deadline become
	// DeadlineExceeded; server replies never do.
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: osTimeout{}}
	past, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	defer cancel()
	if err := contextError(past, timeout); !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, new(*net.OpError)) {
		t.Errorf("contextError(i/o timeout past the deadline) = %v", err)
	}
	if err := contextError(context.Background(), timeout); errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("contextError(i/o timeout without a deadline) = %v; a client read timeout is not the context's", err)
	}
	if err := contextError(past, srvErr("ERR x")); err != error(srvErr("ERR x")) {
		t.Errorf("contextError(server reply) = %v; want it unchanged", err)
	}
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := contextError(cancelled, io.EOF); !errors.Is(err, context.Canceled) || !errors.Is(err, io.EOF) {
		t.Errorf("contextError(EOF after cancel) = %v", err)
	}
}

type osTimeout struct{}

func (osTimeout) Error() string   { return "i/o timeout" }
func (osTimeout) Timeout() bool   { return true }
func (osTimeout) Temporary() bool { return true }

func TestSlot(t *testing.T) {
	// Reference values from CLUSTER KEYSLOT and the cluster specification.
	for key, want := range map[string]uint16{
		"123456789":                 12739,
		"foo":                       12182,
		"bar":                       5061,
		"{user1000}.following":      slot("user1000"),
		"{user1000}.followers":      slot("user1000"),
		"foo{}{bar}":                slot("foo{}{bar}"),
		"foo{{bar}}zap":             slot("{bar"),
		"foo{bar}{zap}":             slot("bar"),
		"ns:{tag}":                  slot("tag"),
		"":                          0,
		"\xff\x00binary":            slot("\xff\x00binary"),
		"key with {hash} tag":       slot("hash"),
		"cachetest-0f0f0f0f-1:k1":   slot("cachetest-0f0f0f0f-1:k1"),
		"somekey{with}{two}{tags}x": slot("with"),
	} {
		if got := slot(key); got != want {
			t.Errorf("slot(%q) = %d; want %d", key, got, want)
		}
	}
	if slot("foo{}{bar}") == slot("bar") {
		t.Error("an empty hash tag must hash the whole key")
	}
}

// globMatch is Redis's stringmatchlen (util.c) for the subset of syntax
// that matters here: * ? [...] and backslash escapes. It lets the tests
// check escapeGlob without a server.
func globMatch(pattern, s string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for len(pattern) > 1 && pattern[1] == '*' {
				pattern = pattern[1:]
			}
			if len(pattern) == 1 {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if globMatch(pattern[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
			s = s[1:]
		case '[':
			if len(s) == 0 {
				return false
			}
			pattern = pattern[1:]
			not := len(pattern) > 0 && pattern[0] == '^'
			if not {
				pattern = pattern[1:]
			}
			match := false
			for len(pattern) > 0 && pattern[0] != ']' {
				switch {
				case pattern[0] == '\\' && len(pattern) >= 2:
					pattern = pattern[1:]
					if pattern[0] == s[0] {
						match = true
					}
				case len(pattern) >= 3 && pattern[1] == '-':
					lo, hi := pattern[0], pattern[2]
					if lo > hi {
						lo, hi = hi, lo
					}
					if s[0] >= lo && s[0] <= hi {
						match = true
					}
					pattern = pattern[2:]
				default:
					if pattern[0] == s[0] {
						match = true
					}
				}
				pattern = pattern[1:]
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			s = s[1:]
		case '\\':
			if len(pattern) >= 2 {
				pattern = pattern[1:]
			}
			fallthrough
		default:
			if len(s) == 0 || pattern[0] != s[0] {
				return false
			}
			s = s[1:]
		}
		if len(pattern) > 0 {
			pattern = pattern[1:]
		}
	}
	return len(s) == 0
}

func TestEscapeGlob(t *testing.T) {
	for in, want := range map[string]string{
		"app":     "app",
		"a*":      `a\*`,
		"a?b":     `a\?b`,
		"[b]":     `\[b\]`,
		`back\`:   `back\\`,
		"x-y^z:{": "x-y^z:{",
	} {
		if got := escapeGlob(in); got != want {
			t.Errorf("escapeGlob(%q) = %q; want %q", in, got, want)
		}
	}
	// The Clear pattern of a namespace matches its own keys and no
	// neighbour's, whatever glob characters the namespaces hold.
	namespaces := []string{"a", "a*", "ab", "a?", "a[b]", "ab]", `a\`, `a\*`, "a:b", "[", "]", "*", "?", `\`, "a[^b]", "a-b", "x[a-c]"}
	for _, ns := range namespaces {
		pattern := escapeGlob(ns+":") + "*"
		for _, other := range namespaces {
			for _, key := range []string{"k", "", "*", `\`, "x:y"} {
				got := globMatch(pattern, other+":"+key)
				want := strings.HasPrefix(other+":", ns+":")
				if got != want {
					t.Errorf("pattern %q for namespace %q on %q = %v; want %v", pattern, ns, other+":"+key, got, want)
				}
			}
		}
	}
	// The matcher itself: unescaped patterns do over-match.
	if !globMatch("a*:*", "ab:k") || !globMatch("a[b]:*", "ab:k") {
		t.Fatal("globMatch is wrong")
	}
}

// TestPrint checks that printing options and caches never shows a
// password.
func TestPrint(t *testing.T) {
	const pw = "hunter2-secret"
	u := mustParse(t, "redis://user:"+pw+"@127.0.0.1:1/3?namespace=app&timeout=50ms")
	cfg, err := parseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	c, err := URLOpener{}.OpenCacheURL(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, v := range []any{cfg, *cfg, cfg.opts, &cfg.opts, c} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			if s := fmt.Sprintf(verb, v); strings.Contains(s, pw) {
				t.Errorf("fmt %s of %T shows the password: %s", verb, v, s)
			}
		}
	}
}

func TestOpenedCacheOwnsClient(t *testing.T) {
	c, err := cachekit.Open(context.Background(), "redis://127.0.0.1:1?timeout=20ms")
	if err != nil {
		t.Fatal(err)
	}
	rc := c.(*Cache)
	if !rc.owned || !rc.ctxAware || rc.timeout != 20*time.Millisecond {
		t.Fatalf("opened cache: %+v", rc)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rc.client.Ping(context.Background()).Err(); !errors.Is(err, goredis.ErrClosed) {
		t.Fatalf("client after the cache's Close: %v; want it closed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

type ctxKey struct{}

// ctxRecorder is a go-redis hook that records the context of each command.
type ctxRecorder struct {
	mu   sync.Mutex
	seen []context.Context
}

func (h *ctxRecorder) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *ctxRecorder) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.mu.Lock()
		h.seen = append(h.seen, ctx)
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}
func (h *ctxRecorder) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.mu.Lock()
		h.seen = append(h.seen, ctx)
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

// TestDefaultTimeoutKeepsValues: the default timeout reaches the client as
// a deadline, and the caller's context values (tracing, say) still reach
// the client's hooks.
func TestDefaultTimeoutKeepsValues(t *testing.T) {
	hole := testpeer.NewBlackhole(t)
	rec := &ctxRecorder{}
	cl := newClient(t, &goredis.Options{Addr: hole.Addr(), ContextTimeoutEnabled: true})
	cl.AddHook(rec)
	const timeout = 30 * time.Millisecond
	c := New(cl, &Options{Timeout: timeout, BreakerThreshold: -1})
	cancellable, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	defer cancel()
	for _, ctx := range []context.Context{
		context.WithValue(context.Background(), ctxKey{}, "v"),
		cancellable,
		context.WithoutCancel(cancellable),
	} {
		rec.seen = nil
		start := time.Now()
		_, err := c.Get(ctx, "k")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get: %v; want the default timeout to fire", err)
		}
		_, err = c.GetMany(ctx, []string{"a", "b"})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("GetMany: %v; want the default timeout to fire", err)
		}
		for _, got := range rec.seen {
			dl, ok := got.Deadline()
			if !ok || dl.Before(start.Add(timeout)) || dl.After(time.Now().Add(timeout)) {
				t.Errorf("hook context deadline %v, %v; want about %v after the call", dl, ok, timeout)
			}
			if got.Value(ctxKey{}) != "v" {
				t.Errorf("the caller's context value did not reach the hook")
			}
		}
		if len(rec.seen) < 2 {
			t.Errorf("hook saw %d calls; want at least 2", len(rec.seen))
		}
	}
}

// TestSharedDeadline: calls with a context that cannot end share one timer
// per slack interval, and their deadline is within [timeout, timeout+slack].
func TestSharedDeadline(t *testing.T) {
	cl := newClient(t, &goredis.Options{Addr: "127.0.0.1:1"})
	c := New(cl, &Options{Timeout: 10 * time.Second})
	if c.slack != 100*time.Millisecond {
		t.Fatalf("slack %v; want 1%% of the timeout", c.slack)
	}
	a, cancelA := c.bound(context.Background())
	b, cancelB := c.bound(context.Background())
	end := time.Now()
	if cancelA != nil || cancelB != nil || a != b {
		t.Fatalf("two calls in a row got different timers")
	}
	dl, ok := a.Deadline()
	if !ok || dl.Before(end.Add(10*time.Second)) || dl.After(end.Add(10*time.Second+c.slack)) {
		t.Fatalf("shared deadline %v; want in [%v, %v]", dl, end.Add(10*time.Second), end.Add(10*time.Second+c.slack))
	}
	time.Sleep(2 * c.slack)
	if d, _ := c.bound(context.Background()); d == a {
		t.Fatal("a timer was reused after its slack ran out")
	}
	// Contexts that can end get a timer of their own; ones with a deadline
	// are used as they are.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if d, cancel := c.bound(ctx); cancel == nil || d == a {
		t.Fatal("a cancellable context shared the timer")
	} else {
		cancel()
	}
	dctx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if d, cancel := c.bound(dctx); d != dctx || cancel != nil {
		t.Fatal("a context with a deadline before the timeout was replaced")
	}
	// The timeout bounds a context whose own deadline is later.
	late, cancel3 := context.WithTimeout(context.WithValue(context.Background(), ctxKey{}, "v"), time.Hour)
	defer cancel3()
	d, cancel := c.bound(late)
	if cancel == nil {
		t.Fatal("a context with a deadline after the timeout was used as it is")
	}
	defer cancel()
	if dl, _ := d.Deadline(); dl.After(time.Now().Add(10*time.Second)) || d.Value(ctxKey{}) != "v" {
		t.Fatalf("bounded deadline %v (value %v); want at most the timeout from now, with the caller's values", dl, d.Value(ctxKey{}))
	}
}
