package cachekit_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
)

func TestMemoryBackplaneDeliversSynchronously(t *testing.T) {
	bp := cachekit.NewMemoryBackplane()
	defer bp.Close()
	var mu sync.Mutex
	var got []cachekit.Invalidation
	stop := bp.Subscribe(func(inv cachekit.Invalidation) {
		mu.Lock()
		got = append(got, inv)
		mu.Unlock()
	}, nil)
	keys := []string{"a", "b"}
	if err := bp.Publish(context.Background(), cachekit.Invalidation{Namespace: "ns", Keys: keys, Origin: "p1"}); err != nil {
		t.Fatal(err)
	}
	keys[0] = "changed" // the subscriber got its own copy
	mu.Lock()
	if len(got) != 1 || got[0].Namespace != "ns" || got[0].Keys[0] != "a" || got[0].Origin != "p1" {
		t.Fatalf("after Publish returned: %+v", got)
	}
	mu.Unlock()

	stop()
	_ = bp.Publish(context.Background(), cachekit.Invalidation{All: true})
	if len(got) != 1 {
		t.Fatalf("delivered after stop: %+v", got)
	}
	if err := bp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bp.Publish(context.Background(), cachekit.Invalidation{All: true}); !errors.Is(err, cachekit.ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", err)
	}
}

func TestMemoryBackplaneHonoursCtx(t *testing.T) {
	bp := cachekit.NewMemoryBackplane()
	defer bp.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := bp.Publish(ctx, cachekit.Invalidation{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish with a cancelled ctx: %v", err)
	}
}

func TestOpenBackplaneErrors(t *testing.T) {
	ctx := context.Background()
	for _, raw := range []string{"", "  ", "localhost:6379", "nosuch://h/0", "redis://:s3cr?et@host:6379/0"} {
		_, err := cachekit.OpenBackplane(ctx, raw)
		if !errors.Is(err, cachekit.ErrInvalidURL) {
			t.Errorf("OpenBackplane(%q) = %v, want ErrInvalidURL", raw, err)
			continue
		}
		if strings.Contains(err.Error(), "s3cr") {
			t.Errorf("OpenBackplane(%q) error shows the password: %v", raw, err)
		}
	}
}

func TestRegisterBackplaneOpensByScheme(t *testing.T) {
	opened := cachekit.NewMemoryBackplane()
	cachekit.RegisterBackplane("testbp", cachekit.BackplaneOpenerFunc(func(ctx context.Context, u *url.URL) (cachekit.Backplane, error) {
		if u.Query().Get("fail") != "" {
			return nil, errors.New("cannot reach " + u.String())
		}
		return opened, nil
	}))
	bp, err := cachekit.OpenBackplane(context.Background(), "testbp://host/x")
	if err != nil || bp != opened {
		t.Fatalf("OpenBackplane = %v, %v", bp, err)
	}
	_, err = cachekit.OpenBackplane(context.Background(), "testbp://user:hunter2@host/x?fail=1")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("opener error %v: want an error without the password", err)
	}
	found := false
	for _, s := range cachekit.BackplaneSchemes() {
		found = found || s == "testbp"
	}
	if !found {
		t.Fatalf("BackplaneSchemes() = %v, want testbp in it", cachekit.BackplaneSchemes())
	}
}

func TestNamespaceOfLooksThroughWrappers(t *testing.T) {
	m := memory.New(nil)
	defer m.Close()
	c := m.WithNamespace("users")
	if _, ok := any(c).(cachekit.Namespacer); !ok {
		t.Fatal("backend/memory does not implement Namespacer")
	}
	if got := cachekit.NamespaceOf(cachekit.WithHooks(c)); got != "users" {
		t.Fatalf("NamespaceOf(WithHooks(users)) = %q", got)
	}
}

// stuckBackplane is a Backplane whose Publish blocks until release is
// closed (or its context ends), as a frozen server's would.
type stuckBackplane struct {
	release chan struct{}
	mu      sync.Mutex
	got     []cachekit.Invalidation
}

func (b *stuckBackplane) Publish(ctx context.Context, inv cachekit.Invalidation) error {
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	b.mu.Lock()
	b.got = append(b.got, inv)
	b.mu.Unlock()
	return nil
}

func (b *stuckBackplane) Subscribe(func(cachekit.Invalidation), func(error)) func() { return func() {} }
func (b *stuckBackplane) Close() error                                              { return nil }

// TestStuckBackplaneDoesNotHoldWrites: a write whose publish hangs returns
// by its caller's deadline, successfully (the write landed; backplane
// trouble never fails a write), and the publish goes on in the background,
// with the keys as they were when the write returned; Wait waits for it.
func TestStuckBackplaneDoesNotHoldWrites(t *testing.T) {
	bp := &stuckBackplane{release: make(chan struct{})}
	var errs []error
	var errMu sync.Mutex
	mem := memory.New(nil)
	defer mem.Close()
	typed := cachekit.NewTyped[string](mem, &cachekit.TypedOptions{
		Backplane:    bp,
		Local:        &cachekit.LocalOptions{},
		WriteTimeout: time.Minute,
		OnError: func(_ context.Context, err error) {
			errMu.Lock()
			errs = append(errs, err)
			errMu.Unlock()
		},
	})
	defer typed.Close()
	for name, write := range map[string]func(context.Context) error{
		"Set": func(ctx context.Context) error { return typed.Set(ctx, "k", "v") },
		"Delete": func(ctx context.Context) error {
			keys := []string{"k", "l"}
			_, err := typed.Cache().Delete(ctx, keys...)
			keys[0] = "changed after Delete returned"
			return err
		},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		start := time.Now()
		err := write(ctx)
		took := time.Since(start)
		cancel()
		if err != nil {
			t.Errorf("%s with a stuck backplane: %v; want success (the write landed)", name, err)
		}
		if took > 10*time.Second { // the publish is bounded by a minute: this is the caller's 50ms, loaded
			t.Errorf("%s took %v with a 50ms deadline; want it back by its deadline", name, took)
		}
	}
	waited := make(chan struct{})
	go func() { typed.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("Wait returned while publishes were still running")
	case <-time.After(50 * time.Millisecond):
	}
	close(bp.release)
	<-waited
	bp.mu.Lock()
	defer bp.mu.Unlock()
	var keys []string
	for _, inv := range bp.got {
		keys = append(keys, inv.Keys...)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"k", "k", "l"}) {
		t.Fatalf("published keys %q; want k (Set), then k and l (Delete)", keys)
	}
	errMu.Lock()
	defer errMu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("OnError: %v", errs)
	}
}
