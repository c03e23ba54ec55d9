package cachekit_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"

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
