package decorator_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/decorator"
)

func keyOf[K comparable](t *testing.T, name string, k K) string {
	t.Helper()
	c := cachekit.NewTyped[int](newMem(t), nil)
	f := decorator.New(c, func(context.Context, K) (int, error) { return 0, nil }, &decorator.Options[K]{Name: name})
	key, err := f.Key(k)
	if err != nil {
		t.Fatalf("Key(%#v): %v", k, err)
	}
	return key
}

type pair struct{ A, B string }

type mixed struct {
	ID    int64
	Name  string
	Flags [2]bool
	Any   any
	score float64 // unexported fields count too
}

type userID string

// The keys are part of the stored format: they must not change between
// releases, or every deploy would start with a cold cache.
func TestKeysAreStable(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{keyOf(t, "users", "42"), "users:s:42"},
		{keyOf(t, "users", userID("42")), "users:s:42"},
		{keyOf(t, "users", 42), "users:i:42"},
		{keyOf(t, "users", int8(-7)), "users:i:-7"},
		{keyOf(t, "users", uint16(7)), "users:u:7"},
		{keyOf(t, "users", int16(-300)), "users:i:-300"},
		{keyOf(t, "users", int32(math.MinInt32)), "users:i:-2147483648"},
		{keyOf(t, "users", int64(math.MaxInt64)), "users:i:9223372036854775807"},
		{keyOf(t, "users", uint8(255)), "users:u:255"},
		{keyOf(t, "users", uint32(math.MaxUint32)), "users:u:4294967295"},
		{keyOf(t, "users", uint64(math.MaxUint64)), "users:u:18446744073709551615"},
		{keyOf(t, "users", uintptr(9)), "users:u:9"},
		{keyOf(t, "users", math.NaN()), "users:f:NaN"},
		{keyOf(t, "users", true), "users:b:true"},
		{keyOf(t, "users", 1.5), "users:f:1.5"},
		{keyOf(t, "users", float32(0.1)), "users:f:0.1"},
		{keyOf(t, "a:b#c!d%e", "x"), "a%3Ab%23c%21d%25e:s:x"},
		{keyOf(t, "p", pair{"a:b", ""}), "p:v:{s3:a:b,s0:,}"},
		{keyOf(t, "p", [2]int{1, -2}), "p:v:[i1;,i-2;,]"},
		{keyOf[any](t, "p", nil), "p:v:n"},
		{keyOf[any](t, "p", "x"), "p:v:T6:strings1:x"},
		{keyOf(t, "p", mixed{ID: 1, Name: "n", Flags: [2]bool{true, false}, Any: 2, score: 0.5}),
			"p:v:{i1;,s1:n,[b1,b0,],T3:inti2;,f0.5;,}"},
		{keyOf(t, "p", complex(1, -2)), "p:v:c1,-2;"},
	} {
		if tc.got != tc.want {
			t.Errorf("key = %q; want %q", tc.got, tc.want)
		}
	}
}

func TestEqualArgumentsShareAKey(t *testing.T) {
	if a, b := keyOf(t, "f", math.Copysign(0, -1)), keyOf(t, "f", 0.0); a != b {
		t.Errorf("-0 and 0 are equal arguments but have keys %q and %q", a, b)
	}
	if a, b := keyOf[any](t, "f", math.Copysign(0, -1)), keyOf[any](t, "f", 0.0); a != b {
		t.Errorf("-0 and 0 in an interface have keys %q and %q", a, b)
	}
}

// TestKeysAreInjective checks the property that matters: distinct
// arguments never share a key, over adversarial and random values.
func TestKeysAreInjective(t *testing.T) {
	check := func(t *testing.T, name string, vals []any, key func(any) string) {
		seen := map[string]any{}
		for _, v := range vals {
			k := key(v)
			if prev, dup := seen[k]; dup && prev != v {
				t.Fatalf("%s: %#v and %#v share key %q", name, prev, v, k)
			}
			seen[k] = v
		}
	}
	seps := []string{"", ":", "s", "s1:", ",", "}", "{", "a", "a:b", ";", "i1;", "%3A", "#", "!", "\x00", "é", "T3:int"}
	var strs []any
	for _, a := range seps {
		for _, b := range seps {
			strs = append(strs, a+b)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, r.IntN(8))
		for i := range b {
			b[i] = ":s1{},;#!ab"[r.IntN(11)]
		}
		strs = append(strs, string(b))
	}

	t.Run("string", func(t *testing.T) {
		c := cachekit.NewTyped[int](newMem(t), nil)
		f := decorator.New(c, func(context.Context, string) (int, error) { return 0, nil }, &decorator.Options[string]{Name: "f"})
		check(t, "string", strs, func(v any) string { k, _ := f.Key(v.(string)); return k })
	})
	t.Run("pair", func(t *testing.T) {
		c := cachekit.NewTyped[int](newMem(t), nil)
		f := decorator.New(c, func(context.Context, pair) (int, error) { return 0, nil }, &decorator.Options[pair]{Name: "f"})
		var vals []any
		for i := 0; i+1 < len(strs); i += 2 {
			vals = append(vals, pair{strs[i].(string), strs[i+1].(string)}, pair{strs[i+1].(string), strs[i].(string)})
		}
		for _, a := range seps {
			for _, b := range seps {
				vals = append(vals, pair{a, b})
			}
		}
		check(t, "pair", vals, func(v any) string { k, _ := f.Key(v.(pair)); return k })
	})
	t.Run("any", func(t *testing.T) {
		c := cachekit.NewTyped[int](newMem(t), nil)
		f := decorator.New(c, func(context.Context, any) (int, error) { return 0, nil }, &decorator.Options[any]{Name: "f"})
		type otherString string
		vals := []any{nil, 1, int64(1), uint(1), int8(1), "1", userID("1"), otherString("1"), 1.0, float32(1), true,
			"a:b", pair{"a", "b"}, [2]string{"a", "b"}, [2]any{"a", "b"}, [1]any{nil}, [0]int{}, struct{}{},
			pair{"a:b", ""}, [2]any{1, "1"}, [2]any{"1", 1}, struct{ A any }{nil}, struct{ A any }{0}, struct{ B any }{0},
			struct {
				A string `json:"a"`
			}{"x"}, struct{ A string }{"x"}}
		vals = append(vals, strs...)
		check(t, "any", vals, func(v any) string { k, _ := f.Key(v); return k })
	})
	t.Run("int", func(t *testing.T) {
		c := cachekit.NewTyped[int](newMem(t), nil)
		f := decorator.New(c, func(context.Context, int64) (int, error) { return 0, nil }, &decorator.Options[int64]{Name: "f"})
		vals := []any{int64(math.MinInt64), int64(math.MaxInt64), int64(0), int64(-1)}
		for range 5000 {
			vals = append(vals, r.Int64()-r.Int64())
		}
		check(t, "int64", vals, func(v any) string { k, _ := f.Key(v.(int64)); return k })
	})
}

func TestFunctionsHaveSeparateKeySpaces(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	double := decorator.Cached(c, func(_ context.Context, s string) (string, error) { return s + s, nil },
		&decorator.Options[string]{Name: "double"})
	upper := decorator.Cached(c, func(_ context.Context, s string) (string, error) { return strings.ToUpper(s), nil },
		&decorator.Options[string]{Name: "upper"})
	if v, _ := double(bg, "ab"); v != "abab" {
		t.Fatalf("double = %q", v)
	}
	if v, _ := upper(bg, "ab"); v != "AB" {
		t.Fatalf("upper read double's value: %q", v)
	}
}

func TestLongKeysAreHashed(t *testing.T) {
	long := strings.Repeat("x", cachekit.MaxKeySize)
	k1 := keyOf(t, "f", long)
	k2 := keyOf(t, "f", long+"y")
	if len(k1) > cachekit.MaxKeySize-1 || !strings.HasPrefix(k1, "f#") || k1 == k2 {
		t.Fatalf("long keys: %q (%d bytes), %q", k1[:20], len(k1), k2[:20])
	}
	// And they work end to end.
	c := cachekit.NewTyped[int](newMem(t), nil)
	calls := 0
	f := decorator.Cached(c, func(_ context.Context, s string) (int, error) { calls++; return len(s), nil },
		&decorator.Options[string]{Name: "len"})
	for range 2 {
		if v, err := f(bg, long); err != nil || v != len(long) {
			t.Fatalf("f = %d, %v", v, err)
		}
	}
	if calls != 1 {
		t.Fatalf("fn called %d times; want 1", calls)
	}
}

func TestKeyFunc(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	f := decorator.New(c, func(context.Context, *pair) (int, error) { return 0, nil },
		&decorator.Options[*pair]{Name: "users", KeyFunc: func(p *pair) string { return p.A + "/" + p.B }})
	got, err := f.Key(&pair{"a", "b"})
	if err != nil || got != "users:a/b" {
		t.Fatalf("Key = %q, %v; want users:a/b", got, err)
	}
}

func TestPointerKeysAreRejected(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	mustPanic(t, "pointer argument", func() {
		decorator.New(c, func(context.Context, *pair) (int, error) { return 0, nil }, &decorator.Options[*pair]{Name: "f"})
	})
	mustPanic(t, "struct with a channel", func() {
		decorator.New(c, func(context.Context, struct{ C chan int }) (int, error) { return 0, nil },
			&decorator.Options[struct{ C chan int }]{Name: "f"})
	})
	// An interface holding a pointer is found when the key is made.
	f := decorator.Cached(c, func(context.Context, any) (int, error) { return 1, nil }, &decorator.Options[any]{Name: "f"})
	if _, err := f(bg, &pair{}); !errors.Is(err, cachekit.ErrInvalidKey) {
		t.Fatalf("interface holding a pointer: err = %v; want ErrInvalidKey", err)
	}
	if _, err := f(bg, [1]any{make(chan int)}); !errors.Is(err, cachekit.ErrInvalidKey) {
		t.Fatalf("nested channel: err = %v; want ErrInvalidKey", err)
	}
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r == nil {
			t.Errorf("%s: no panic", what)
		} else if !strings.HasPrefix(fmt.Sprint(r), "decorator: ") {
			t.Errorf("%s: panic %q does not say where it comes from", what, r)
		}
	}()
	f()
}

// loadUser is a named function: its name is derived.
func loadUser(_ context.Context, id int) (string, error) { return fmt.Sprint("user", id), nil }

type repo struct{}

func (repo) load(_ context.Context, id int) (string, error) { return fmt.Sprint("repo", id), nil }

func generic[K comparable](context.Context, K) (string, error) { return "g", nil }

func TestDerivedNames(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	f := decorator.New(c, loadUser, nil)
	if k, _ := f.Key(1); k != "github.com/cachekit/cachekit/decorator_test.loadUser:i:1" {
		t.Errorf("derived key = %q", k)
	}
	m := decorator.New(c, repo{}.load, nil)
	if k, _ := m.Key(1); k != "github.com/cachekit/cachekit/decorator_test.repo.load-fm:i:1" {
		t.Errorf("method value key = %q", k)
	}
	mustPanic(t, "function literal without Name", func() {
		decorator.Cached(c, func(context.Context, int) (string, error) { return "", nil }, nil)
	})
	mustPanic(t, "generic instance without Name", func() {
		decorator.Cached(c, generic[int], nil)
	})
	mustPanic(t, "negative TTL", func() {
		decorator.Cached(c, loadUser, &decorator.Options[int]{TTL: -1})
	})
	mustPanic(t, "NegativeTTL without NegativeError", func() {
		decorator.Cached(c, loadUser, &decorator.Options[int]{NegativeTTL: 1})
	})
	mustPanic(t, "SoftTimeout without fail-safe", func() {
		decorator.Cached(c, loadUser, &decorator.Options[int]{SoftTimeout: 1})
	})
	mustPanic(t, "RefreshAhead of 1", func() {
		decorator.Cached(c, loadUser, &decorator.Options[int]{RefreshAhead: 1})
	})
}

// Keys of scalar arguments are remembered in a small cache; collisions in
// it must never return another argument's key.
func TestRecentKeysNeverMixUp(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	fi := decorator.New(c, func(context.Context, int) (int, error) { return 0, nil }, &decorator.Options[int]{Name: "f"})
	fs := decorator.New(c, func(context.Context, string) (int, error) { return 0, nil }, &decorator.Options[string]{Name: "f"})
	fb := decorator.New(c, func(context.Context, bool) (int, error) { return 0, nil }, &decorator.Options[bool]{Name: "f"})
	for round := range 3 {
		for i := -1000; i < 1000; i++ {
			if k, _ := fi.Key(i); k != fmt.Sprintf("f:i:%d", i) {
				t.Fatalf("round %d: Key(%d) = %q", round, i, k)
			}
			s := fmt.Sprint("s", i)
			if k, _ := fs.Key(s); k != "f:s:"+s {
				t.Fatalf("round %d: Key(%q) = %q", round, s, k)
			}
		}
		for _, b := range []bool{true, false} {
			if k, _ := fb.Key(b); k != fmt.Sprintf("f:b:%v", b) {
				t.Fatalf("Key(%v) = %q", b, k)
			}
		}
	}
}
