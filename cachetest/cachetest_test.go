package cachetest_test

import (
	"context"
	"errors"
	"hash/fnv"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/cachetest"
)

// The suite's own tests: each broken cache below breaks one promise, and
// the rule for that promise must catch it. A rule failing is a test failure
// of the test that runs the suite, so each broken cache runs in a child
// process (this test binary, re-run with CACHETEST_BROKEN set) whose
// failure the parent checks.

const brokenEnv = "CACHETEST_BROKEN"

// brokenCaches maps a broken cache's name to the rules that must fail for
// it and the suite's options for it.
var brokenCaches = map[string]struct {
	rules []string
	opts  cachetest.Options
	make  func(t *testing.T) cachetest.NewCacheFunc
}{
	// Namespaces as naive "ns:key" prefixes: "a" with key "b:k" is "a:b"
	// with key "k", and Clear on "a" removes "a:b"'s keys.
	"naive-prefix": {
		rules: []string{"NamespacesNeverNest"},
		make: func(t *testing.T) cachetest.NewCacheFunc {
			s := &prefixStore{m: map[string][]byte{}}
			return func(t *testing.T, ns string) cachekit.Cache { return &prefixCache{s: s, ns: ns} }
		},
	},
	// CompareAndDelete as a read, then a delete: two callers can both win.
	"racy-cad": {
		rules: []string{"CompareAndDeleteConcurrent"},
		make: func(t *testing.T) cachetest.NewCacheFunc {
			root := sharedMemory(t)
			return func(t *testing.T, ns string) cachekit.Cache { return racyCAD{root.WithNamespace(ns)} }
		},
	},
	// CompareAndSwap as a read, then a write: two callers can both win.
	"racy-cas": {
		rules: []string{"CompareAndSwapConcurrent"},
		make: func(t *testing.T) cachetest.NewCacheFunc {
			root := sharedMemory(t)
			return func(t *testing.T, ns string) cachekit.Cache { return racyCAS{root.WithNamespace(ns)} }
		},
	},
	// A wrapper that hides the CompareAndDelete and CompareAndSwap of what
	// it wraps, even when the options excuse the cache from having them.
	"hiding-wrapper": {
		rules: []string{"CompareAndDelete", "CompareAndDeleteConcurrent", "CompareAndSwap", "CompareAndSwapTTL", "SharedGet", "SharedGetImmutable", "SharedGetConcurrent",
			"Version", "VersionChangesOnEveryWrite", "VersionErrors", "VersionTTL", "VersionConcurrent"},
		opts: cachetest.Options{SkipCompareAndDelete: true, SkipCompareAndSwap: true},
		make: func(t *testing.T) cachetest.NewCacheFunc {
			root := sharedMemory(t)
			return func(t *testing.T, ns string) cachekit.Cache { return hidingWrapper{root.WithNamespace(ns)} }
		},
	},
	// GetShared returning a buffer that the next GetShared reuses: bytes
	// handed out change afterwards.
	"reused-buffer": {
		rules: []string{"SharedGetImmutable", "SharedGetConcurrent"},
		make: func(t *testing.T) cachetest.NewCacheFunc {
			root := sharedMemory(t)
			return func(t *testing.T, ns string) cachekit.Cache { return &reusedBuffer{Cache: root.WithNamespace(ns)} }
		},
	},
	// GetShared whose errors name the method "GetShared" instead of "Get".
	"shared-op-name": {
		rules: []string{"SharedGet", "InvalidKeyErrorsNameTheMethod"},
		make: func(t *testing.T) cachetest.NewCacheFunc {
			root := sharedMemory(t)
			return func(t *testing.T, ns string) cachekit.Cache { return sharedOpName{root.WithNamespace(ns)} }
		},
	},
	// Versions made from the value (a hash): a write of the same value
	// keeps the version, and a key deleted and added again gets its old
	// version back.
	"value-version": {
		rules: []string{"Version", "VersionChangesOnEveryWrite"},
		make: func(t *testing.T) cachetest.NewCacheFunc {
			root := sharedMemory(t)
			return func(t *testing.T, ns string) cachekit.Cache { return valueVersion{root.WithNamespace(ns)} }
		},
	},
	// SwapVersion as a GetVersion, then a Set: two callers can both win.
	"racy-version": {
		rules: []string{"VersionConcurrent"},
		make: func(t *testing.T) cachetest.NewCacheFunc {
			root := sharedMemory(t)
			return func(t *testing.T, ns string) cachekit.Cache { return racyVersion{root.WithNamespace(ns)} }
		},
	},
	// A cache without CompareAndDelete or CompareAndSwap, when the options
	// require them.
	"no-cad": {
		rules: []string{"CompareAndDelete", "CompareAndSwap"},
		make: func(t *testing.T) cachetest.NewCacheFunc {
			root := sharedMemory(t)
			return func(t *testing.T, ns string) cachekit.Cache { return plain{root.WithNamespace(ns)} }
		},
	},
	// Invalid keys reported as bare sentinels by the batch methods.
	"bare-errors": {
		rules: []string{"InvalidKeyErrorsNameTheMethod"},
		make: func(t *testing.T) cachetest.NewCacheFunc {
			root := sharedMemory(t)
			return func(t *testing.T, ns string) cachekit.Cache { return bareErrors{root.WithNamespace(ns)} }
		},
	},
	// A namespace-less Clear that clears, where the options say it must
	// refuse.
	"flushes": {
		rules: []string{"UnnamespacedClear"},
		opts:  cachetest.Options{UnnamespacedClear: cachetest.UnnamespacedClearRefused},
		make: func(t *testing.T) cachetest.NewCacheFunc {
			root := sharedMemory(t)
			return func(t *testing.T, ns string) cachekit.Cache { return root.WithNamespace(ns) }
		},
	},
}

func sharedMemory(t *testing.T) *memory.Cache {
	root := memory.New(nil)
	t.Cleanup(func() { root.Close() })
	return root
}

// TestBrokenCache runs the suite on the broken cache CACHETEST_BROKEN names;
// without it, it does nothing. TestRulesCatchBrokenCaches runs it.
func TestBrokenCache(t *testing.T) {
	name := os.Getenv(brokenEnv)
	if name == "" {
		t.Skip(brokenEnv + " not set: run by TestRulesCatchBrokenCaches")
	}
	bc := brokenCaches[name]
	opts := bc.opts
	cachetest.Run(t, bc.make(t), &opts)
}

func TestRulesCatchBrokenCaches(t *testing.T) {
	if os.Getenv(brokenEnv) != "" {
		t.Skip("in a child process")
	}
	for name, bc := range brokenCaches {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, rule := range bc.rules {
				cmd := exec.Command(os.Args[0], "-test.run", "^TestBrokenCache$/^"+rule+"$", "-test.v")
				cmd.Env = append(os.Environ(), brokenEnv+"="+name)
				out, err := cmd.CombinedOutput()
				if err == nil {
					t.Errorf("rule %s passed a %s cache; want it to fail\n%s", rule, name, out)
					continue
				}
				if !strings.Contains(string(out), "--- FAIL: TestBrokenCache/"+rule+" ") {
					t.Errorf("running rule %s on a %s cache: %v; want the rule to fail\n%s", rule, name, err, out)
				}
			}
		})
	}
}

// TestRulesPassOnMemory checks that the new rules hold for a correct cache,
// the memory backend and that backend behind hooks. (backend/memory and the
// root package run the whole suite.)
func TestRulesPassOnMemory(t *testing.T) {
	root := sharedMemory(t)
	for _, hooked := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "hooked"}[hooked], func(t *testing.T) {
			cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
				c := cachekit.Cache(root.WithNamespace(ns))
				if hooked {
					c = cachekit.WithHooks(c, cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error { return op.Next(ctx) }))
				}
				return c
			}, &cachetest.Options{UnnamespacedClear: cachetest.UnnamespacedClearRemoves})
		})
	}
}

// plain hides every method beyond cachekit.Cache.
type plain struct{ cachekit.Cache }

// reusedBuffer's GetShared copies the value into one buffer per cache.
type reusedBuffer struct {
	*memory.Cache
	mu  sync.Mutex
	buf []byte
}

func (c *reusedBuffer) GetShared(ctx context.Context, key string) ([]byte, error) {
	v, err := c.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf[:0], v...)
	return c.buf[:len(v):len(v)], nil
}

// sharedOpName's GetShared errors say "GetShared".
type sharedOpName struct{ *memory.Cache }

func (c sharedOpName) GetShared(ctx context.Context, key string) ([]byte, error) {
	v, err := c.Cache.GetShared(ctx, key)
	var ce *cachekit.Error
	if errors.As(err, &ce) {
		return nil, &cachekit.Error{Op: "GetShared", Key: key, Err: ce.Err}
	}
	return v, err
}

// hidingWrapper is a wrapper that does not forward CompareAndDelete,
// CompareAndSwap or GetShared.
type hidingWrapper struct{ c cachekit.Cache }

func (w hidingWrapper) Unwrap() cachekit.Cache { return w.c }
func (w hidingWrapper) Get(ctx context.Context, k string) ([]byte, error) {
	return w.c.Get(ctx, k)
}
func (w hidingWrapper) GetMany(ctx context.Context, k []string) (map[string][]byte, error) {
	return w.c.GetMany(ctx, k)
}
func (w hidingWrapper) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	return w.c.Set(ctx, k, v, ttl)
}
func (w hidingWrapper) SetMany(ctx context.Context, m map[string][]byte, ttl time.Duration) error {
	return w.c.SetMany(ctx, m, ttl)
}
func (w hidingWrapper) Add(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	return w.c.Add(ctx, k, v, ttl)
}
func (w hidingWrapper) Delete(ctx context.Context, k ...string) (int, error) {
	return w.c.Delete(ctx, k...)
}
func (w hidingWrapper) Exists(ctx context.Context, k string) (bool, error) {
	return w.c.Exists(ctx, k)
}
func (w hidingWrapper) Increment(ctx context.Context, k string, d int64) (int64, error) {
	return w.c.Increment(ctx, k, d)
}
func (w hidingWrapper) Expire(ctx context.Context, k string, ttl time.Duration) (bool, error) {
	return w.c.Expire(ctx, k, ttl)
}
func (w hidingWrapper) Clear(ctx context.Context) error { return w.c.Clear(ctx) }
func (w hidingWrapper) Close() error                    { return w.c.Close() }

// racyCAD compares and deletes in two steps.
type racyCAD struct{ cachekit.Cache }

func (c racyCAD) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	v, err := c.Get(ctx, key)
	if errors.Is(err, cachekit.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if string(v) != string(old) {
		return false, nil
	}
	time.Sleep(5 * time.Millisecond) // widen the window
	_, err = c.Delete(ctx, key)
	return err == nil, err
}

// racyCAS compares and swaps in two steps.
type racyCAS struct{ *memory.Cache }

func (c racyCAS) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	v, err := c.Get(ctx, key)
	switch {
	case errors.Is(err, cachekit.ErrNotFound):
		if old != nil {
			return false, nil
		}
	case err != nil:
		return false, err
	case old == nil || string(v) != string(old):
		return false, nil
	}
	time.Sleep(5 * time.Millisecond) // widen the window
	return true, c.Set(ctx, key, new, ttl)
}

// valueVersion's versions are a hash of the value.
type valueVersion struct{ *memory.Cache }

func hashVersion(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64() | 1
}

func (c valueVersion) GetVersion(ctx context.Context, key string) ([]byte, uint64, error) {
	v, _, err := c.Cache.GetVersion(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	return v, hashVersion(v), nil
}

func (c valueVersion) AddVersion(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if _, err := c.Cache.AddVersion(ctx, key, value, ttl); err != nil {
		return 0, err
	}
	return hashVersion(value), nil
}

func (c valueVersion) SwapVersion(ctx context.Context, key string, version uint64, value []byte, ttl time.Duration) (uint64, bool, error) {
	for {
		cur, err := c.Cache.Get(ctx, key)
		if errors.Is(err, cachekit.ErrNotFound) || (err == nil && hashVersion(cur) != version) {
			return 0, false, nil
		} else if err != nil {
			return 0, false, err
		}
		ok, err := c.Cache.CompareAndSwap(ctx, key, cur, value, ttl)
		if err != nil || ok {
			return hashVersion(value), ok, err
		}
	}
}

func (c valueVersion) DeleteVersion(ctx context.Context, key string, version uint64) (bool, error) {
	cur, err := c.Cache.Get(ctx, key)
	if errors.Is(err, cachekit.ErrNotFound) || (err == nil && hashVersion(cur) != version) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return c.Cache.CompareAndDelete(ctx, key, cur)
}

// racyVersion swaps by version in two steps.
type racyVersion struct{ *memory.Cache }

func (c racyVersion) SwapVersion(ctx context.Context, key string, version uint64, value []byte, ttl time.Duration) (uint64, bool, error) {
	_, cur, err := c.GetVersion(ctx, key)
	if errors.Is(err, cachekit.ErrNotFound) || (err == nil && cur != version) {
		return 0, false, nil
	} else if err != nil {
		return 0, false, err
	}
	time.Sleep(5 * time.Millisecond) // widen the window
	if err := c.Set(ctx, key, value, ttl); err != nil {
		return 0, false, err
	}
	_, nv, err := c.GetVersion(ctx, key)
	return nv, err == nil, err
}

// bareErrors returns ErrInvalidKey unwrapped from GetMany.
type bareErrors struct{ *memory.Cache }

func (c bareErrors) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	for _, k := range keys {
		if cachekit.CheckKey(k) != nil {
			return nil, cachekit.ErrInvalidKey
		}
	}
	return c.Cache.GetMany(ctx, keys)
}

// prefixStore and prefixCache: a map with namespaces as "ns:" prefixes,
// enough of a Cache for the namespace rule.
type prefixStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

type prefixCache struct {
	plain // methods the namespace rule does not use: nil, never called
	s     *prefixStore
	ns    string
}

func (c *prefixCache) Get(_ context.Context, k string) ([]byte, error) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	v, ok := c.s.m[c.ns+":"+k]
	if !ok {
		return nil, cachekit.ErrNotFound
	}
	return append([]byte{}, v...), nil
}

func (c *prefixCache) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, k := range keys {
		if v, err := c.Get(ctx, k); err == nil {
			out[k] = v
		}
	}
	return out, nil
}

func (c *prefixCache) Set(_ context.Context, k string, v []byte, _ time.Duration) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.m[c.ns+":"+k] = append([]byte{}, v...)
	return nil
}

func (c *prefixCache) Clear(context.Context) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	for k := range c.s.m {
		if strings.HasPrefix(k, c.ns+":") {
			delete(c.s.m, k)
		}
	}
	return nil
}

func (c *prefixCache) Close() error { return nil }
