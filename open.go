package cachekit

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// URLOpener opens a Cache from a parsed URL. Backends implement it and
// register it for their schemes with [URLMux.Register], usually from an init
// function, so that a blank import of the backend package makes its scheme
// available to [Open].
//
// OpenCacheURL must reject query parameters it does not know with an error
// for which errors.Is(err, ErrInvalidURL) reports true, and must never put the
// URL's password in an error. A cache it returns owns its client and closes it
// on Close.
type URLOpener interface {
	OpenCacheURL(ctx context.Context, u *url.URL) (Cache, error)
}

// URLOpenerFunc adapts a function to the [URLOpener] interface.
type URLOpenerFunc func(ctx context.Context, u *url.URL) (Cache, error)

// OpenCacheURL calls f(ctx, u).
func (f URLOpenerFunc) OpenCacheURL(ctx context.Context, u *url.URL) (Cache, error) {
	return f(ctx, u)
}

// URLMux maps URL schemes to [URLOpener]s. The zero value is an empty mux
// ready to use. Most programs use the process-wide [DefaultURLMux] through
// [Open]; tests and programs that want a private set of schemes make their
// own.
type URLMux struct {
	mu      sync.RWMutex
	openers map[string]URLOpener
}

// Register makes opener responsible for scheme (compared case-insensitively).
// It panics if scheme is empty or already registered, as
// database/sql.Register does: both are programming errors found at init time.
func (m *URLMux) Register(scheme string, opener URLOpener) {
	scheme = strings.ToLower(scheme)
	if scheme == "" || opener == nil {
		panic("cachekit: Register with an empty scheme or a nil opener")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.openers[scheme]; dup {
		panic("cachekit: scheme " + scheme + " registered twice")
	}
	if m.openers == nil {
		m.openers = make(map[string]URLOpener)
	}
	m.openers[scheme] = opener
}

// Schemes returns the registered schemes, sorted.
func (m *URLMux) Schemes() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.openers))
	for s := range m.openers {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Open parses rawURL and opens a Cache with the opener registered for its
// scheme. Errors wrap ErrInvalidURL when the URL itself is at fault, and never
// contain the URL's password.
//
// Before an opener sees the URL, Open rejects URLs that are empty, have no
// scheme, or whose user name or password holds a character that must be
// percent-encoded ('@', '/', '?', '#'): Go's URL parser would split such a
// URL somewhere inside the password, so the cache would be opened with a
// wrong host, path or query and the rest of the password would show in
// errors. (An '@' in the path or query must then be written %40.)
func (m *URLMux) Open(ctx context.Context, rawURL string) (Cache, error) {
	u, err := m.parse(rawURL)
	if err != nil {
		return nil, err
	}
	scheme := strings.ToLower(u.Scheme)
	m.mu.RLock()
	opener := m.openers[scheme]
	m.mu.RUnlock()
	if opener == nil {
		hint := ""
		switch scheme {
		case "redis", "rediss", "redis+cluster", "redis+sentinel", "rediss+cluster", "rediss+sentinel":
			hint = ` (import _ "github.com/cachekit/cachekit/backend/redis")`
		case "memcached", "memcache":
			hint = ` (import _ "github.com/cachekit/cachekit/backend/memcached")`
		case "mem", "memory":
			hint = ` (import _ "github.com/cachekit/cachekit/backend/memory")`
		default:
			if u.Opaque != "" && !strings.Contains(rawURL, "://") {
				// "localhost:6379" parses as scheme "localhost".
				hint = " (a cache URL starts with a scheme and \"://\", as in redis://localhost:6379/0)"
			}
		}
		return nil, fmt.Errorf("%w: no backend registered for scheme %q%s; registered schemes: %s",
			ErrInvalidURL, u.Scheme, hint, m.schemeList())
	}
	c, err := opener.OpenCacheURL(ctx, u)
	if err != nil {
		return nil, redactErr(err, rawURL, u)
	}
	return c, nil
}

// schemeList returns the registered schemes for an error message.
func (m *URLMux) schemeList() string {
	s := m.Schemes()
	if len(s) == 0 {
		return "none (import a backend package, such as github.com/cachekit/cachekit/backend/memory)"
	}
	return strings.Join(s, ", ")
}

// parse parses rawURL for Open, with errors that say what is wrong and
// never show the password.
func (m *URLMux) parse(rawURL string) (*url.URL, error) {
	if strings.TrimSpace(rawURL) == "" {
		what := "empty"
		if rawURL != "" {
			what = "blank"
		}
		return nil, fmt.Errorf("%w: the URL is %s (is the variable it comes from set?); want one such as mem:// or redis://localhost:6379/0; registered schemes: %s",
			ErrInvalidURL, what, m.schemeList())
	}
	if strings.TrimSpace(rawURL) != rawURL {
		return nil, fmt.Errorf("%w: %q has white space around it", ErrInvalidURL, RedactURL(rawURL))
	}
	ui := findUserinfo(rawURL)
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse quotes the whole input in its error, password
		// included, and so may its reason ("invalid URL escape"). Parse
		// the redacted URL instead: if that fails too, its reason shows
		// no password; if not, the trouble is in the user information.
		reason := "its user name or password does not parse (percent-encode special characters: '%' as %25, ':' as %3A, '@' as %40, '/' as %2F)"
		if ui.end < 0 {
			reason = "it does not parse"
		}
		var ue *url.Error
		if _, rerr := url.Parse(RedactURL(rawURL)); rerr != nil && errors.As(rerr, &ue) {
			reason = ue.Err.Error()
		}
		return nil, fmt.Errorf("%w: cannot parse %q: %s", ErrInvalidURL, RedactURL(rawURL), reason)
	}
	if u.Scheme == "" {
		hint := ""
		for _, s := range m.Schemes() {
			if strings.HasPrefix(strings.ToLower(rawURL), s+"/") || strings.HasPrefix(strings.ToLower(rawURL), s+":/") {
				hint = fmt.Sprintf(" (did you mean %s://...?)", s)
				break
			}
		}
		return nil, fmt.Errorf("%w: %q has no scheme%s; want scheme://..., as in mem:// or redis://localhost:6379/0; registered schemes: %s",
			ErrInvalidURL, RedactURL(rawURL), hint, m.schemeList())
	}
	if ui.end >= 0 && ui.hasPassword && (u.User == nil || ui.goEnd != ui.end) {
		// The userinfo found by structure (up to the last '@' before the
		// host) is not the one url.Parse found: the password has an
		// unescaped '/', '?', '#' or '@' (or the path or query has an '@').
		if !strings.Contains(rawURL, "://") {
			return nil, fmt.Errorf("%w: %q has a user name and password but no \"://\" before them; want scheme://..., as in redis://user:password@localhost:6379/0",
				ErrInvalidURL, RedactURL(rawURL))
		}
		return nil, fmt.Errorf("%w: %q: its user name or password contains a character that must be percent-encoded ('/' as %%2F, '?' as %%3F, '#' as %%23, '@' as %%40); an '@' in the path or query must be written %%40 too",
			ErrInvalidURL, RedactURL(rawURL))
	}
	return u, nil
}

var defaultMux = new(URLMux)

// DefaultURLMux returns the process-wide URLMux that [Open] uses and that
// backends register their schemes with.
func DefaultURLMux() *URLMux { return defaultMux }

// Open opens the cache that rawURL describes, using [DefaultURLMux]. The
// backend for the URL's scheme must be linked in, usually by a blank import:
//
//	import _ "github.com/cachekit/cachekit/backend/redis"
//
//	c, err := cachekit.Open(ctx, "redis://:secret@localhost:6379/0?namespace=app")
//
// URL forms:
//
//	mem://?max_bytes=64MiB&namespace=app                        (also memory://)
//	redis://user:pass@host:6379/0?namespace=app&timeout=100ms   (rediss:// for TLS)
//	redis+cluster://h1:7000,h2:7001?namespace=app
//	redis+sentinel://h1:26379,h2:26379?master_name=mymaster&namespace=app
//	memcached://h1:11211,h2:11211?namespace=app&timeout=100ms
//
// Unknown query parameters are errors. The caller owns the returned cache and
// must Close it, which also closes its client.
func Open(ctx context.Context, rawURL string) (Cache, error) {
	return defaultMux.Open(ctx, rawURL)
}

// RedactURL returns rawURL with any password replaced by "xxxxx", and
// every other byte as it was. Unlike url.URL.Redacted it also works on
// strings that do not parse, so it is safe to use in the error for a
// malformed URL.
//
// It finds the password by the structure of the URL, not by its text: the
// user information runs from after "scheme://" to the last '@' that is
// followed by something that can be a host list (so a password with an
// unescaped '@', '/', '?' or '#' is still found whole), and the password is
// what follows its first ':'. A URL whose path or query holds an '@' after
// a ':' may therefore be redacted more than needed; write such an '@' as
// %40.
func RedactURL(rawURL string) string {
	ui := findUserinfo(rawURL)
	if ui.end < 0 || !ui.hasPassword {
		return rawURL
	}
	return rawURL[:ui.colon+1] + "xxxxx" + rawURL[ui.end:]
}

// userinfo locates the user information of a raw URL, by byte offsets.
type userinfo struct {
	start, end  int  // rawURL[start:end] is the user information; end < 0: none
	colon       int  // offset of the ':' before the password
	hasPassword bool // there is a ':' in the user information
	goEnd       int  // where url.Parse ends the user information; -1: none
}

// findUserinfo finds the user information of rawURL by structure.
//
// The authority starts after "scheme:" and the slashes that follow it (or,
// for input without a scheme, after leading slashes, or at the start for
// something like "user:pw@host"). It ends at the last '@' whose following
// text, up to the next '/', '?' or '#', is a plausible host list; failing
// that, at the last '@'. A password may hold any byte except that a later
// '@' must be followed by a non-host character for the password to be found
// whole.
func findUserinfo(rawURL string) userinfo {
	ui := userinfo{end: -1, goEnd: -1}
	start := 0
	if i := schemeEnd(rawURL); i > 0 && i < len(rawURL) && rawURL[i] == '/' {
		start = i
	}
	for start < len(rawURL) && rawURL[start] == '/' {
		start++
	}
	rest := rawURL[start:]
	at := -1
	for i := strings.LastIndexByte(rest, '@'); i >= 0; i = strings.LastIndexByte(rest[:i], '@') {
		if at < 0 {
			at = i // the last '@', if none is followed by a host
		}
		if hostLike(rest[i+1:]) {
			at = i
			break
		}
	}
	if at < 0 {
		return ui
	}
	ui.start, ui.end = start, start+at
	if c := strings.IndexByte(rest[:at], ':'); c >= 0 {
		ui.colon, ui.hasPassword = start+c, true
	}
	// url.Parse: the authority ends at the first '/', '?' or '#', and the
	// user information at its last '@'.
	auth := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		auth = rest[:i]
	}
	if i := strings.LastIndexByte(auth, '@'); i >= 0 {
		ui.goEnd = start + i
	}
	return ui
}

// schemeEnd returns the offset just past "scheme:" at the start of s, or 0.
func schemeEnd(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return i + 1
		default:
			return 0
		}
	}
	return 0
}

// hostLike reports whether s, up to its first '/', '?' or '#', can be the
// host list of a cache URL: names, IP addresses (IPv6 in brackets, with a
// zone), ports, commas; possibly empty.
func hostLike(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '/' || c == '?' || c == '#':
			return true
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c >= 0x80:
		case strings.IndexByte(".-_~:,[]%", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// redactErr removes the password of the URL from err's message, should an
// opener or its client library have put it there. The result still unwraps
// to err.
//
// It replaces the URL's own forms (as given, as url.URL.String prints it,
// and its user information, escaped and not) with their redacted forms. As a
// last resort it replaces the password where it stands alone, as a token not
// joined to letters or digits on either side, so that a one-letter password
// never turns "path" into "xxxxxath".
func redactErr(err error, rawURL string, u *url.URL) error {
	pw, ok := u.User.Password()
	if !ok || pw == "" {
		return err
	}
	msg := err.Error()
	red := redactMessage(msg, rawURL, u, pw)
	if red == msg {
		return err
	}
	return &redactedError{err: err, msg: red}
}

func redactMessage(msg, rawURL string, u *url.URL, pw string) string {
	redacted := url.UserPassword(u.User.Username(), "xxxxx").String() + "@"
	// One pass over msg, longest form first, so that no replacement is
	// matched again inside another's result. The user information forms
	// end with the '@' that closes it, so they match nothing else.
	pairs := [][2]string{
		{rawURL, RedactURL(rawURL)},
		{u.String(), u.Redacted()},
		{u.User.String() + "@", redacted},
		{u.User.Username() + ":" + pw + "@", redacted},
		{":" + pw + "@", ":xxxxx@"},
	}
	sort.SliceStable(pairs, func(i, j int) bool { return len(pairs[i][0]) > len(pairs[j][0]) })
	args := make([]string, 0, 2*len(pairs))
	for _, p := range pairs {
		args = append(args, p[0], p[1])
	}
	msg = strings.NewReplacer(args...).Replace(msg)
	// The user information printed on its own (fmt of u.User).
	msg = replaceToken(msg, u.User.String(), strings.TrimSuffix(redacted, "@"))
	for _, form := range []string{pw, url.QueryEscape(pw), url.PathEscape(pw), url.UserPassword("", pw).String()[1:]} {
		msg = replaceToken(msg, form, "xxxxx")
	}
	return msg
}

// replaceToken replaces by with each occurrence of tok in s that stands
// alone: not continued by a letter or digit where tok starts or ends with
// one, and, where it starts or ends with punctuation, bordered by white
// space, quotes, brackets, '=', ',' or the ends of s. So a password "p"
// leaves "path" alone, and a password ":" leaves "host:6379" alone.
func replaceToken(s, tok, with string) string {
	if tok == "" {
		return s
	}
	var b strings.Builder
	last := 0 // s[:last] is written
	for i := 0; i+len(tok) <= len(s); {
		k := strings.Index(s[i:], tok)
		if k < 0 {
			break
		}
		i += k
		j := i + len(tok)
		if separated(s, i-1, tok[0]) && separated(s, j, tok[len(tok)-1]) {
			b.WriteString(s[last:i])
			b.WriteString(with)
			last, i = j, j
			continue
		}
		i++
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// separated reports whether s[at] (out of range: an end of s) separates a
// token whose edge byte is edge from the text beside it.
func separated(s string, at int, edge byte) bool {
	if at < 0 || at >= len(s) {
		return true
	}
	c := s[at]
	if isAlnum(edge) {
		return !isAlnum(c)
	}
	return strings.IndexByte(" \t\n\"'`()[]{}<>=,;", c) >= 0
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c >= 0x80
}

type redactedError struct {
	err error
	msg string
}

func (e *redactedError) Error() string { return e.msg }

func (e *redactedError) Unwrap() error { return e.err }
