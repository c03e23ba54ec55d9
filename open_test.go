package cachekit

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"redis://user:s3cret@host:6379/0", "redis://user:xxxxx@host:6379/0"},
		{"redis://:s3cret@host:6379", "redis://:xxxxx@host:6379"},
		{"redis://host:6379", "redis://host:6379"},
		{"mem://?max_bytes=1MiB", "mem://?max_bytes=1MiB"},
		// Does not parse (bad escape), still redacted.
		{"redis://user:s3cr%zzet@host:6379/0", "redis://user:xxxxx@host:6379/0"},
		{"redis://user:p@ss@host:6379/0", "redis://user:xxxxx@host:6379/0"},
		{"redis+cluster://u:s3cret@h1:7000,h2:7001?x=1", "redis+cluster://u:xxxxx@h1:7000,h2:7001?x=1"},
	} {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestOpenUnknownScheme(t *testing.T) {
	var m URLMux
	_, err := m.Open(context.Background(), "nosuch://x")
	if !errors.Is(err, ErrInvalidURL) {
		t.Fatalf("Open(nosuch://) = %v; want ErrInvalidURL", err)
	}
	_, err = m.Open(context.Background(), "redis://:pw@localhost")
	if !errors.Is(err, ErrInvalidURL) || !strings.Contains(err.Error(), "backend/redis") {
		t.Fatalf("Open(redis://) without the backend = %v; want ErrInvalidURL with an import hint", err)
	}
}

func TestOpenNeverShowsPassword(t *testing.T) {
	var m URLMux
	m.Register("leaky", URLOpenerFunc(func(_ context.Context, u *url.URL) (Cache, error) {
		// A careless opener (or its client library) quoting the URL.
		return nil, fmt.Errorf("cannot connect to %s: %w", u.String(), errors.New("refused"))
	}))
	for _, raw := range []string{
		"leaky://admin:hunter2@host:1/0",
		"leaky://admin:hunter2%zz@host:1/0", // does not parse
		"leaky://admin:p%40ss%2Fword@host:1/0",
	} {
		_, err := m.Open(context.Background(), raw)
		if err == nil {
			t.Fatalf("Open(%q) succeeded", raw)
		}
		for _, secret := range []string{"hunter2", "p@ss/word", "p%40ss%2Fword"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("Open(%q) error shows the password: %v", RedactURL(raw), err)
			}
		}
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	var m URLMux
	op := URLOpenerFunc(func(context.Context, *url.URL) (Cache, error) { return nil, nil })
	m.Register("x", op)
	defer func() {
		if recover() == nil {
			t.Fatal("second Register of the same scheme did not panic")
		}
	}()
	m.Register("X", op)
}

func TestErrorMessageAndUnwrap(t *testing.T) {
	err := WrapError("Get", "user:1", ErrNotFound)
	if got, want := err.Error(), `cachekit: Get "user:1": not found`; got != want {
		t.Fatalf("Error() = %q; want %q", got, want)
	}
	if !errors.Is(err, ErrNotFound) {
		t.Fatal("errors.Is(WrapError(..., ErrNotFound), ErrNotFound) = false")
	}
	if again := WrapError("GetOrLoad", "other", err); again != err {
		t.Fatalf("WrapError re-wrapped an *Error: %v", again)
	}
	if WrapError("Get", "k", nil) != nil {
		t.Fatal("WrapError(nil) != nil")
	}
	long := strings.Repeat("k", 500)
	if msg := WrapError("Get", long, ErrNotFound).Error(); len(msg) > 200 {
		t.Fatalf("error message for a 500-byte key is %d bytes; want it abbreviated", len(msg))
	}
}
