// Package urlparam reads a cache URL's query parameters strictly: every
// parameter must be read by the opener, and any left over is an error. It is
// shared by the backends' URL openers so they all behave the same way.
//
// The query is parsed strictly, with the rules of url.ParseQuery, and any
// pair it cannot parse is an error rather than dropped (url.URL.Query drops
// it silently, so "namespace=tenant;a" would open a cache with no namespace
// at all). A parameter given more than once is an error too, even with the
// same value: a URL assembled from two sources that both set namespace is a
// configuration mistake, and the cache cannot know which one was meant.
//
// Errors wrap cachekit.ErrInvalidURL. They name the parameter and the
// problem; they quote a value only when it failed to parse as the number,
// duration, size or bool the opener asked for, and never quote the URL, so
// no password reaches them.
//
// The opener style all backends follow:
//
//	p := urlparam.New(u)
//	ns := p.String("namespace", "")
//	timeout := p.Duration("timeout", time.Second)
//	...                   // ask for every parameter this URL may have
//	if err := p.Err(); err != nil {
//		return nil, err // malformed query, bad value, or unknown parameter
//	}
//
// Err lists the parameters the opener asked for when it reports an unknown
// one, so the opener must ask for every parameter it accepts before calling
// Err (asking for one that is absent just returns the default).
package urlparam

import (
	"errors"
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
	q     url.Values
	asked []string        // parameter names the opener asked for, in order
	used  map[string]bool // the same, as a set
	err   error
}

// New returns the query parameters of u, parsed strictly from u.RawQuery. A
// query that does not parse is reported by Err.
func New(u *url.URL) *Params {
	p := &Params{used: make(map[string]bool)}
	p.q, p.err = Parse(u.RawQuery)
	return p
}

// Parse parses a raw query strictly. It accepts exactly what url.ParseQuery
// accepts (pairs separated by '&', each key=value or key, both
// percent-encoded, '+' for a space) and fails on the first pair
// url.ParseQuery would skip: one with a ';' or a bad %-escape. Unlike
// url.ParseQuery it returns no values with an error, and its error names the
// pair's key and what is wrong without quoting the value. The error wraps
// cachekit.ErrInvalidURL.
func Parse(rawQuery string) (url.Values, error) {
	q := make(url.Values)
	for n, rest := 1, rawQuery; rest != ""; n++ {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if pair == "" {
			continue
		}
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, kerr := url.QueryUnescape(rawKey)
		which := "query pair " + strconv.Itoa(n)
		if kerr == nil && key != "" {
			which = "parameter " + strconv.Quote(key)
		}
		if strings.Contains(pair, ";") {
			return nil, fmt.Errorf("%w: %s contains ';', which a query may not: separate parameters with '&', and write a ';' inside a value as %%3B",
				cachekit.ErrInvalidURL, which)
		}
		if kerr != nil {
			return nil, fmt.Errorf("%w: %s has a malformed %%-escape in its name (write a literal '%%' as %%25)", cachekit.ErrInvalidURL, which)
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, fmt.Errorf("%w: %s has a malformed %%-escape in its value (write a literal '%%' as %%25)", cachekit.ErrInvalidURL, which)
		}
		q[key] = append(q[key], value)
	}
	return q, nil
}

func (p *Params) get(name string) (string, bool) {
	if !p.used[name] {
		p.used[name] = true
		p.asked = append(p.asked, name)
	}
	vs, ok := p.q[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	if len(vs) > 1 {
		p.setErr(fmt.Errorf("%w: parameter %s is given %d times; give it once", cachekit.ErrInvalidURL, name, len(vs)))
		return "", false
	}
	return vs[0], true
}

func (p *Params) fail(name, value, why string) {
	p.setErr(fmt.Errorf("%w: parameter %s=%q: %s", cachekit.ErrInvalidURL, name, value, why))
}

func (p *Params) setErr(err error) {
	if p.err == nil {
		p.err = err
	}
}

// Has reports whether the parameter is present, and counts it as known.
func (p *Params) Has(name string) bool {
	if !p.used[name] {
		p.used[name] = true
		p.asked = append(p.asked, name)
	}
	_, ok := p.q[name]
	return ok
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
		return 0, errors.New("want a size such as 64MiB")
	}
	return n * mult, nil
}

// Known returns the names of the parameters the opener asked for so far,
// sorted.
func (p *Params) Known() []string {
	out := append([]string(nil), p.asked...)
	sort.Strings(out)
	return out
}

// Err returns the first problem found: a query that does not parse, a
// parameter given more than once, a malformed value, else an error naming
// every parameter that was never asked for together with the ones that were
// (the valid parameters of this URL), else nil. All wrap
// cachekit.ErrInvalidURL.
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
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	known := p.Known()
	var b strings.Builder
	if len(unknown) == 1 {
		b.WriteString("unknown parameter ")
	} else {
		b.WriteString("unknown parameters ")
	}
	for i, k := range unknown {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(k))
		if s := suggest(k, known); s != "" {
			b.WriteString(" (did you mean " + s + "?)")
		}
	}
	if len(known) == 0 {
		b.WriteString("; this URL takes no parameters")
	} else {
		b.WriteString("; valid parameters: " + strings.Join(known, ", "))
	}
	return fmt.Errorf("%w: %s", cachekit.ErrInvalidURL, b.String())
}

// suggest returns the known name closest to k, if one is close enough to
// be a typo of it: a different case or separator, or at most two edits.
func suggest(k string, known []string) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "", ".", "").Replace(strings.ToLower(s))
	}
	best, bestD := "", 3
	for _, n := range known {
		if norm(n) == norm(k) {
			return n
		}
		if d := editDistance(k, n); d < bestD && d < len(n)/2 {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (short strings only).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
