package cachekit_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/serializer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var ctx = context.Background()

func newMem(t *testing.T) cachekit.Cache {
	t.Helper()
	c := memory.New(nil)
	t.Cleanup(func() { c.Close() })
	return c
}

type user struct {
	ID    int64             `json:"id" msgpack:"id"`
	Name  string            `json:"name" msgpack:"name"`
	Tags  []string          `json:"tags" msgpack:"tags"`
	Attrs map[string]string `json:"attrs" msgpack:"attrs"`
}

var serializers = map[string]serializer.Serializer{"json": serializer.JSON{}, "msgpack": serializer.MsgPack{}}

func TestTypedRoundTrip(t *testing.T) {
	for name, ser := range serializers {
		t.Run(name, func(t *testing.T) {
			c := cachekit.NewTyped[user](newMem(t), &cachekit.TypedOptions{Serializer: ser})
			want := user{ID: math.MaxInt64, Name: "Ada", Tags: []string{"a", "b"}, Attrs: map[string]string{"k": "v"}}
			if err := c.Set(ctx, "u", want); err != nil {
				t.Fatal(err)
			}
			got, err := c.Get(ctx, "u")
			if err != nil || got.ID != want.ID || got.Name != want.Name || len(got.Tags) != 2 || got.Attrs["k"] != "v" {
				t.Fatalf("Get = %+v, %v; want %+v", got, err, want)
			}
		})
	}
}

func TestTypedZeroValueIsAHit(t *testing.T) {
	for name, ser := range serializers {
		t.Run(name, func(t *testing.T) {
			mem := newMem(t)
			ints := cachekit.NewTyped[int](mem, &cachekit.TypedOptions{Serializer: ser})
			if err := ints.Set(ctx, "zero", 0); err != nil {
				t.Fatal(err)
			}
			if v, err := ints.Get(ctx, "zero"); err != nil || v != 0 {
				t.Fatalf("Get(zero) = %d, %v; want 0, nil", v, err)
			}
			ptrs := cachekit.NewTyped[*user](mem, &cachekit.TypedOptions{Serializer: ser})
			if err := ptrs.Set(ctx, "nil", nil); err != nil {
				t.Fatal(err)
			}
			if v, err := ptrs.Get(ctx, "nil"); err != nil || v != nil {
				t.Fatalf("Get(nil pointer) = %v, %v; want nil, nil", v, err)
			}
			loads := 0
			v, err := ints.GetOrLoad(ctx, "zero", func(context.Context) (int, error) { loads++; return 9, nil })
			if err != nil || v != 0 || loads != 0 {
				t.Fatalf("GetOrLoad of a stored zero = %d, %v after %d loads; want 0, nil, no load", v, err, loads)
			}
		})
	}
}

func TestTypedMiss(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	v, err := c.Get(ctx, "absent")
	if !errors.Is(err, cachekit.ErrNotFound) || v != "" {
		t.Fatalf("Get(absent) = %q, %v; want ErrNotFound", v, err)
	}
}

func TestTypedDecodeErrors(t *testing.T) {
	mem := newMem(t)
	for _, tc := range []struct {
		name string
		raw  []byte
		ser  serializer.Serializer
	}{
		{"json garbage", []byte("{not json"), serializer.JSON{}},
		{"json type mismatch", []byte(`"a string"`), serializer.JSON{}},
		{"msgpack array32 bomb", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, serializer.MsgPack{}},
		{"msgpack map32 bomb", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, serializer.MsgPack{}},
		{"msgpack truncated", []byte{0x92, 0x01}, serializer.MsgPack{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := mem.Set(ctx, "bad", tc.raw, 0); err != nil {
				t.Fatal(err)
			}
			c := cachekit.NewTyped[[]int](mem, &cachekit.TypedOptions{Serializer: tc.ser})
			v, err := c.Get(ctx, "bad")
			var ce *cachekit.Error
			if !errors.Is(err, cachekit.ErrDecode) || !errors.As(err, &ce) || ce.Op != "Get" || ce.Key != "bad" {
				t.Fatalf("Get of %s = %v, %v; want an *Error{Op: Get, Key: bad} wrapping ErrDecode", tc.name, v, err)
			}
			if v != nil {
				t.Fatalf("Get of %s returned a value %v alongside the error", tc.name, v)
			}
			if _, err := c.GetMany(ctx, []string{"bad"}); !errors.Is(err, cachekit.ErrDecode) {
				t.Fatalf("GetMany of %s = %v; want ErrDecode", tc.name, err)
			}
		})
	}
}

func TestTypedEncodeError(t *testing.T) {
	c := cachekit.NewTyped[float64](newMem(t), nil) // JSON cannot carry NaN
	err := c.Set(ctx, "nan", math.NaN())
	if !errors.Is(err, cachekit.ErrEncode) {
		t.Fatalf("Set(NaN) with JSON = %v; want ErrEncode", err)
	}
	if _, err := c.Get(ctx, "nan"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("a failed Set stored something: %v", err)
	}
}

func TestTypedTTL(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), &cachekit.TypedOptions{TTL: 50 * time.Millisecond})
	if err := c.Set(ctx, "default", "v"); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "forever", "v", cachekit.WithTTL(0)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetMany(ctx, map[string]string{"m1": "v", "m2": "v"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(ctx, "added", "v", cachekit.WithTTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(120 * time.Millisecond)
	got, err := c.GetMany(ctx, []string{"default", "forever", "m1", "m2", "added"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["forever"] != "v" || got["added"] != "v" {
		t.Fatalf("after the default TTL: %v; want only forever and added", got)
	}
	if err := c.Set(ctx, "neg", "v", cachekit.WithTTL(-time.Second)); !errors.Is(err, cachekit.ErrInvalidTTL) {
		t.Fatalf("Set with a negative TTL = %v; want ErrInvalidTTL", err)
	}
}

func TestTypedAddAndDelete(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	if err := c.Add(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(ctx, "k", 2); !errors.Is(err, cachekit.ErrExists) {
		t.Fatalf("second Add = %v; want ErrExists", err)
	}
	if n, err := c.Delete(ctx, "k", "other"); err != nil || n != 1 {
		t.Fatalf("Delete = %d, %v; want 1, nil", n, err)
	}
}

func TestGetOrLoadStoresAndHits(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	loads := 0
	load := func(context.Context) (string, error) { loads++; return "loaded", nil }
	for range 3 {
		v, err := c.GetOrLoad(ctx, "k", load)
		if err != nil || v != "loaded" {
			t.Fatalf("GetOrLoad = %q, %v", v, err)
		}
	}
	if loads != 1 {
		t.Fatalf("load ran %d times; want 1", loads)
	}
	if v, err := c.Get(ctx, "k"); err != nil || v != "loaded" {
		t.Fatalf("Get after GetOrLoad = %q, %v", v, err)
	}
}

func TestGetOrLoadErrorsAreNotCached(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	boom := errors.New("boom")
	_, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "", boom })
	if !errors.Is(err, boom) {
		t.Fatalf("GetOrLoad = %v; want the load's error", err)
	}
	if _, err := c.Get(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("the failed load stored something: %v", err)
	}
}

func TestGetOrLoadOneLoadForConcurrentMisses(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	var loads atomic.Int32
	release := make(chan struct{})
	load := func(context.Context) (int, error) {
		loads.Add(1)
		<-release
		return 7, nil
	}
	const n = 2000
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := c.GetOrLoad(ctx, "hot", load); err != nil || v != 7 {
				t.Errorf("GetOrLoad = %d, %v", v, err)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	if l := loads.Load(); l != 1 {
		t.Fatalf("load ran %d times for %d concurrent misses; want 1", l, n)
	}
}

func TestGetOrLoadCancellation(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	release := make(chan struct{})
	loadCancelled := make(chan struct{}, 1)
	load := func(lctx context.Context) (string, error) {
		select {
		case <-release:
			return "v", nil
		case <-lctx.Done():
			loadCancelled <- struct{}{}
			return "", lctx.Err()
		}
	}
	leaving, leave := context.WithCancel(ctx)
	leftErr := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(leaving, "k", load)
		leftErr <- err
	}()
	time.Sleep(20 * time.Millisecond)
	stayed := make(chan string, 1)
	go func() {
		v, err := c.GetOrLoad(ctx, "k", load)
		if err != nil {
			t.Errorf("the caller that stayed got %v", err)
		}
		stayed <- v
	}()
	time.Sleep(20 * time.Millisecond)
	leave()
	if err := <-leftErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that left got %v; want context.Canceled", err)
	}
	close(release)
	if v := <-stayed; v != "v" {
		t.Fatalf("the caller that stayed got %q; want v", v)
	}
	select {
	case <-loadCancelled:
		t.Fatal("the load was cancelled while a caller still waited")
	default:
	}

	// When every caller leaves, the load's context is cancelled.
	only, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	blocking := func(lctx context.Context) (string, error) {
		<-lctx.Done()
		loadCancelled <- struct{}{}
		return "", lctx.Err()
	}
	if _, err := c.GetOrLoad(only, "other", blocking); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetOrLoad past its deadline = %v", err)
	}
	select {
	case <-loadCancelled:
	case <-time.After(time.Second):
		t.Fatal("the load was not cancelled after its only caller left")
	}
}

func TestGetOrLoadPanic(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.GetOrLoad(ctx, "k", func(context.Context) (int, error) { <-release; panic("boom") })
			if !errors.Is(err, cachekit.ErrLoaderPanic) {
				t.Errorf("GetOrLoad with a panicking load = %v; want ErrLoaderPanic", err)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	if _, err := c.Get(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("a panicking load stored something: %v", err)
	}
}

func TestGetOrLoadOverwritesUndecodableValue(t *testing.T) {
	mem := newMem(t)
	if err := mem.Set(ctx, "k", []byte("{corrupt"), 0); err != nil {
		t.Fatal(err)
	}
	var reported []error
	c := cachekit.NewTyped[string](mem, &cachekit.TypedOptions{OnError: func(_ context.Context, err error) {
		reported = append(reported, err)
	}})
	v, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "fresh", nil })
	if err != nil || v != "fresh" {
		t.Fatalf("GetOrLoad over a corrupt value = %q, %v; want fresh, nil", v, err)
	}
	if len(reported) != 1 || !errors.Is(reported[0], cachekit.ErrDecode) {
		t.Fatalf("OnError got %v; want one ErrDecode", reported)
	}
	if v, err := c.Get(ctx, "k"); err != nil || v != "fresh" {
		t.Fatalf("Get after the reload = %q, %v; want the corrupt value overwritten", v, err)
	}
}

func TestGetOrLoadOnClosedCache(t *testing.T) {
	mem := memory.New(nil)
	mem.Close()
	c := cachekit.NewTyped[int](mem, nil)
	loads := 0
	_, err := c.GetOrLoad(ctx, "k", func(context.Context) (int, error) { loads++; return 1, nil })
	if !errors.Is(err, cachekit.ErrClosed) || loads != 0 {
		t.Fatalf("GetOrLoad on a closed cache = %v after %d loads; want ErrClosed, no load", err, loads)
	}
}
