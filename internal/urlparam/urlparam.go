// Package urlparam reads a cache URL's query parameters strictly: every
// parameter must be read by the opener, and any left over is an error. It is
// shared by the backends' URL openers so they all behave the same way.
package urlparam

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cachekit/cachekit"
)

// Params hands out a URL's query parameters and remembers which were read.
// Parse errors are collected; Err reports the first one, or the unknown
// parameters.
type Params struct {
	q    url.Values
	used map[string]bool
	err  error
}

// New returns the query parameters of u.
func New(u *url.URL) *Params {
	return &Params{q: u.Query(), used: make(map[string]bool)}
}

func (p *Params) get(name string) (string, bool) {
	p.used[name] = true
	vs, ok := p.q[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	if len(vs) > 1 {
		p.fail(name, strings.Join(vs, ","), "given more than once")
	}
	return vs[len(vs)-1], true
}

func (p *Params) fail(name, value, why string) {
	if p.err == nil {
		p.err = fmt.Errorf("%w: parameter %s=%q: %s", cachekit.ErrInvalidURL, name, value, why)
	}
}

// String returns the parameter's value, or def when it is absent.
func (p *Params) String(name, def string) string {
	if v, ok := p.get(name); ok {
		return v
	}
	return def
}

// Duration returns the parameter parsed with time.ParseDuration ("100ms",
// "2s"), or def when it is absent. Negative durations are errors.
func (p *Params) Duration(name string, def time.Duration) time.Duration {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		p.fail(name, v, "want a non-negative duration such as 100ms")
		return def
	}
	return d
}

// Int returns the parameter as a non-negative int, or def when it is absent.
func (p *Params) Int(name string, def int) int {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		p.fail(name, v, "want a non-negative integer")
		return def
	}
	return n
}

// Bool returns the parameter as a bool ("true", "1", "false", "0"), or def.
func (p *Params) Bool(name string, def bool) bool {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, v, "want true or false")
		return def
	}
	return b
}

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// Bytes returns a size such as "64MiB", "10MB" or "1024", or def when
// absent.
func (p *Params) Bytes(name string, def int64) int64 {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	n, err := ParseBytes(v)
	if err != nil {
		p.fail(name, v, err.Error())
		return def
	}
	return n
}

// ParseBytes parses a non-negative size with an optional unit: B, KB, MB, GB
// (powers of 1000) or KiB, MiB, GiB (powers of 1024).
func ParseBytes(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("want a size such as 64MiB")
	}
	return n * mult, nil
}

// Err returns the first malformed parameter, else an error naming every
// parameter that was never read, else nil. Both wrap cachekit.ErrInvalidURL.
func (p *Params) Err() error {
	if p.err != nil {
		return p.err
	}
	var unknown []string
	for k := range p.q {
		if !p.used[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("%w: unknown parameter(s) %s", cachekit.ErrInvalidURL, strings.Join(unknown, ", "))
	}
	return nil
}
