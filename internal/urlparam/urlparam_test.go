package urlparam

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
)

func TestParams(t *testing.T) {
	u, _ := url.Parse("x://?size=64MiB&d=100ms&n=3&b=true&s=hi")
	p := New(u)
	if got := p.Bytes("size", 0); got != 64<<20 {
		t.Errorf("Bytes = %d", got)
	}
	if got := p.Duration("d", 0); got != 100*time.Millisecond {
		t.Errorf("Duration = %v", got)
	}
	if got := p.Int("n", 0); got != 3 {
		t.Errorf("Int = %d", got)
	}
	if !p.Bool("b", false) || p.String("s", "") != "hi" || p.String("absent", "def") != "def" {
		t.Error("Bool/String/default wrong")
	}
	if err := p.Err(); err != nil {
		t.Fatalf("Err = %v", err)
	}
}

func TestParamErrors(t *testing.T) {
	for _, q := range []string{"size=lots", "d=-1s", "n=-2", "b=maybe", "n=1&n=2", "unknown=1"} {
		u, _ := url.Parse("x://?" + q)
		p := New(u)
		p.Bytes("size", 0)
		p.Duration("d", 0)
		p.Int("n", 0)
		p.Bool("b", false)
		if err := p.Err(); !errors.Is(err, cachekit.ErrInvalidURL) {
			t.Errorf("%s: Err = %v; want ErrInvalidURL", q, err)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1024": 1024, "1KB": 1000, "1KiB": 1024, "2GiB": 2 << 30, "10MB": 10e6, "5B": 5} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "MiB", "99999999999GiB"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) succeeded", in)
		}
	}
}

// TestParseMatchesParseQuery checks that Parse accepts what url.ParseQuery
// accepts, with the same result, and fails exactly where ParseQuery reports
// an error (where Query would silently drop a pair).
func TestParseMatchesParseQuery(t *testing.T) {
	for _, raw := range []string{
		"", "a=1", "a=1&b=2", "a", "a=", "=x", "&&a=1&", "a=1&a=2", "a+b=c+d", "a=%41%2f", "k=v=w",
		"namespace=tenant;a", "a;b", "a=%zz", "%zz=1", "a=1&b=%", "a=1;b=2",
	} {
		want, wantErr := url.ParseQuery(raw)
		got, err := Parse(raw)
		if (err != nil) != (wantErr != nil) {
			t.Errorf("Parse(%q) error %v; url.ParseQuery error %v", raw, err, wantErr)
			continue
		}
		if err != nil {
			if !errors.Is(err, cachekit.ErrInvalidURL) {
				t.Errorf("Parse(%q) = %v; want ErrInvalidURL", raw, err)
			}
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Parse(%q) = %v; url.ParseQuery = %v", raw, got, want)
		}
	}
}

// TestMalformedQueryIsAnError is issue 12's first defect: url.URL.Query
// dropped "namespace=tenant;a", so the cache opened with no namespace.
func TestMalformedQueryIsAnError(t *testing.T) {
	for _, tc := range []struct{ query, want string }{
		{"namespace=tenant;a", `parameter "namespace" contains ';'`},
		{"timeout=1s;namespace=a", `parameter "timeout" contains ';'`},
		{"namespace=a%zz", `parameter "namespace" has a malformed %-escape in its value`},
		{"name%zz=a", `query pair 1 has a malformed %-escape in its name`},
	} {
		u := &url.URL{Scheme: "x", RawQuery: tc.query}
		p := New(u)
		if ns := p.String("namespace", ""); ns != "" {
			t.Errorf("%s: namespace = %q", tc.query, ns)
		}
		p.Duration("timeout", 0)
		err := p.Err()
		if !errors.Is(err, cachekit.ErrInvalidURL) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Err = %v; want ErrInvalidURL saying %q", tc.query, err, tc.want)
		}
		if strings.Contains(err.Error(), "tenant") {
			t.Errorf("%s: Err = %v quotes the value", tc.query, err)
		}
	}
}

func TestRepeatedParameterIsAnError(t *testing.T) {
	for _, q := range []string{"namespace=a&namespace=b", "namespace=a&namespace=a", "namespace=a&namespace="} {
		p := New(&url.URL{RawQuery: q})
		if ns := p.String("namespace", "def"); ns != "def" {
			t.Errorf("%s: namespace = %q; want the default, as the URL is rejected", q, ns)
		}
		if err := p.Err(); !errors.Is(err, cachekit.ErrInvalidURL) || !strings.Contains(err.Error(), "namespace is given 2 times") {
			t.Errorf("%s: Err = %v; want ErrInvalidURL naming the repeated parameter", q, err)
		}
	}
}

func TestUnknownParameterListsValidOnes(t *testing.T) {
	p := New(&url.URL{RawQuery: "max_byte=1MiB&zzz=1&namespace=a"})
	p.String("namespace", "")
	p.Bytes("max_bytes", 0)
	p.Int("max_entries", 0)
	err := p.Err()
	want := `unknown parameters "max_byte" (did you mean max_bytes?), "zzz"; valid parameters: max_bytes, max_entries, namespace`
	if !errors.Is(err, cachekit.ErrInvalidURL) || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("Err = %v; want ErrInvalidURL ending %q", err, want)
	}
	p = New(&url.URL{RawQuery: "a=1"})
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "takes no parameters") {
		t.Errorf("Err with nothing asked = %v", err)
	}
	if got := suggest("Max-Bytes", []string{"max_bytes", "namespace"}); got != "max_bytes" {
		t.Errorf("suggest(Max-Bytes) = %q", got)
	}
	if got := suggest("foo", []string{"max_bytes", "namespace"}); got != "" {
		t.Errorf("suggest(foo) = %q", got)
	}
}
