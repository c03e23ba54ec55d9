package cachekit

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
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

// hostilePasswords are passwords that break naive redaction: URL
// delimiters, escapes, one character that also occurs in the host or path,
// and non-ASCII.
var hostilePasswords = []string{
	"pa#ss", "s3cr?et", "a/b", "p@ss", "a:b", "100%", "%zz", "%41", "p%40ss%2Fword",
	"p", "a", "h", "o", "0", "6", "x", ":", "@", "/", "?", "#", "%", "//",
	"", "пароль", "🔑key", "a@b/c", "x?y#z@w", "@host", "a@b.c:1/0?x=y#",
	"tail@", "hunter2", "1234#abcd", "12/34", "7?x=y",
}

// redactTemplates are URL prefixes and suffixes around a password.
var redactTemplates = []struct{ prefix, suffix string }{
	{"redis://user:", "@localhost:6379/0?namespace=path"},
	{"redis://:", "@localhost:6379/0"},
	{"rediss://admin:", "@[::1]:6380/2?timeout=1s"},
	{"redis+cluster://u:", "@h1:7000,h2:7001?namespace=app"},
	{"redis+sentinel://u:", "@h1:26379/0?master_name=mymaster"},
	{"memcached://u:", "@host:11211"},
	{"mem://u:", "@?namespace=a"},
	{"user:", "@host:6379"},
	{"//user:", "@host/0"},
}

// gluedRedaction matches a redaction joined to a letter or digit, the sign
// of a password replaced inside some other word.
var gluedRedaction = regexp.MustCompile(`[A-Za-z0-9]xxxxx|xxxxx[A-Za-z0-9]`)

func TestRedactURLHostilePasswords(t *testing.T) {
	for _, tmpl := range redactTemplates {
		for _, pw := range hostilePasswords {
			if !strings.Contains(tmpl.prefix, "//") && strings.HasPrefix(pw, "/") {
				// "user:/..." reads as scheme "user" and a path: without
				// "//" such a password is not user information at all.
				continue
			}
			raw := tmpl.prefix + pw + tmpl.suffix
			want := tmpl.prefix + "xxxxx" + tmpl.suffix
			if got := RedactURL(raw); got != want {
				t.Errorf("RedactURL(%q) = %q; want %q", raw, got, want)
			}
		}
	}
	// No password: unchanged, whatever else the URL holds.
	for _, raw := range []string{
		"redis://user@host:6379/0", "redis://host:6379/0?namespace=a", "mem://",
		"memcached:///run/memcached.sock", "memcached///host", "", "redis://host/0#frag",
		"redis://host:6379/0?namespace=a%40b", "memcached://@/path",
	} {
		if got := RedactURL(raw); got != raw {
			t.Errorf("RedactURL(%q) = %q; want it unchanged", raw, got)
		}
	}
}

// TestOpenHidesHostilePasswords opens URLs with hostile passwords through a
// mux whose opener quotes the URL it was given, and one that only fails.
func TestOpenHidesHostilePasswords(t *testing.T) {
	var m URLMux
	leaky := URLOpenerFunc(func(_ context.Context, u *url.URL) (Cache, error) {
		pw, _ := u.User.Password()
		return nil, fmt.Errorf("cannot connect to %s as %s (password %q, path %q): %w",
			u.String(), u.User, pw, u.Path, errors.New("refused"))
	})
	for _, s := range []string{"redis", "rediss", "redis+cluster", "redis+sentinel", "memcached", "mem"} {
		m.Register(s, leaky)
	}
	for _, tmpl := range redactTemplates {
		for _, pw := range hostilePasswords {
			for _, form := range []string{pw, url.PathEscape(pw), url.UserPassword("", pw).String()[1:]} {
				raw := tmpl.prefix + form + tmpl.suffix
				_, err := m.Open(context.Background(), raw)
				if err == nil {
					t.Fatalf("Open(%q) succeeded", raw)
				}
				msg := err.Error()
				// The redacted URL may hold the password's text elsewhere
				// (password "@host" in u:xxxxx@host).
				msg = strings.ReplaceAll(msg, RedactURL(raw), "<url>")
				checkNoPassword(t, raw, msg, pw, form)
				if form != "" && strings.Contains(msg, tmpl.prefix+form+"@") {
					t.Errorf("Open(%q) error shows the user information: %s", raw, msg)
				}
			}
		}
	}
}

// checkNoPassword fails if msg holds the password pw, or its form in the
// URL, as more than a coincidence: any password of 4 bytes or more must not
// appear at all; a shorter one must not appear as a token of its own. And no
// redaction may be glued to the text around it ("xxxxxath").
func checkNoPassword(t *testing.T, raw, msg, pw, form string) {
	t.Helper()
	for _, s := range []string{pw, form} {
		if len(s) >= 4 && strings.Contains(msg, s) {
			t.Errorf("Open(%q) error shows the password %q: %s", raw, s, msg)
		}
	}
	if strings.Contains(msg, `"`+pw+`"`) && pw != "" {
		t.Errorf("Open(%q) error quotes the password %q: %s", raw, pw, msg)
	}
	if pw != "xxxxx" && gluedRedaction.MatchString(msg) {
		t.Errorf("Open(%q) error has a redaction glued to other text: %s", raw, msg)
	}
}

func TestOpenEmptyAndSchemeless(t *testing.T) {
	var m URLMux
	m.Register("mem", URLOpenerFunc(func(context.Context, *url.URL) (Cache, error) { return nil, errors.New("unused") }))
	m.Register("memcached", URLOpenerFunc(func(context.Context, *url.URL) (Cache, error) { return nil, errors.New("unused") }))
	for _, tc := range []struct {
		raw  string
		want []string
	}{
		{"", []string{"URL is empty", "mem://", "registered schemes: mem, memcached"}},
		{"  ", []string{"URL is blank", "mem://"}},
		{" mem://", []string{"white space"}},
		{"memcached//host", []string{"has no scheme", "did you mean memcached://", "registered schemes: mem, memcached"}},
		{"localhost:11211", []string{`scheme "localhost"`, `"://"`, "registered schemes: mem, memcached"}},
		{"nosuch://x", []string{`scheme "nosuch"`, "registered schemes: mem, memcached"}},
		{"memcached://h:1%zz", []string{"cannot parse", "invalid port"}},
		{"memcached://u:p%zzw@h:1", []string{"cannot parse", "user name or password"}},
		{"u:secret@host", []string{`"u:xxxxx@host"`, `no "://"`}},
	} {
		_, err := m.Open(context.Background(), tc.raw)
		if !errors.Is(err, ErrInvalidURL) {
			t.Errorf("Open(%q) = %v; want ErrInvalidURL", tc.raw, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Open(%q) = %q; want it to say %q", tc.raw, err, w)
			}
		}
		if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "p%zzw") {
			t.Errorf("Open(%q) = %q shows the password", tc.raw, err)
		}
	}
}

func TestRedactErrorTokens(t *testing.T) {
	for _, tc := range []struct{ msg, tok, want string }{
		{"path p (p) p", "p", "path xxxxx (xxxxx) xxxxx"},
		{"hunter2x hunter2 xhunter2", "hunter2", "hunter2x xxxxx xhunter2"},
		{"a#b (#) '#'", "#", "a#b (xxxxx) 'xxxxx'"},
		{"host:6379 pw=:", ":", "host:6379 pw=xxxxx"},
		{"xxxxx x", "x", "xxxxx xxxxx"},
		{"", "p", ""},
	} {
		if got := replaceToken(tc.msg, tc.tok, "xxxxx"); got != tc.want {
			t.Errorf("replaceToken(%q, %q) = %q; want %q", tc.msg, tc.tok, got, tc.want)
		}
	}
}
