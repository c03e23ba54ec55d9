package urlparam

import (
	"errors"
	"net/url"
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
