package urlparam_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/cachekit/cachekit"
	_ "github.com/cachekit/cachekit/backend/memcached"
	_ "github.com/cachekit/cachekit/backend/memory"
	_ "github.com/cachekit/cachekit/backend/redis"
)

// These tests hold every registered opener to the one URL style: strict
// query parsing, unknown parameters listed with the valid ones, and no
// password in any error. Opening does not contact a server.

// baseURL returns a URL for scheme that opens without error, with
// user information userinfo ("" for none) and extra query pairs.
func baseURL(scheme, userinfo, query string) string {
	if userinfo != "" {
		userinfo += "@"
	}
	sep := "?"
	add := func(q string) string {
		if q == "" {
			return ""
		}
		s := sep + q
		sep = "&"
		return s
	}
	switch {
	case scheme == "mem" || scheme == "memory":
		return scheme + "://" + userinfo + add(query)
	case strings.HasSuffix(scheme, "+cluster"):
		return scheme + "://" + userinfo + "127.0.0.1:7000,127.0.0.1:7001" + add(query)
	case strings.HasSuffix(scheme, "+sentinel"):
		return scheme + "://" + userinfo + "127.0.0.1:26379/0" + add("master_name=mymaster") + add(query)
	case strings.HasPrefix(scheme, "redis"):
		return scheme + "://" + userinfo + "127.0.0.1:6379/0" + add(query)
	default: // memcached
		return scheme + "://" + userinfo + "127.0.0.1:11211" + add(query)
	}
}

func schemes(t *testing.T) []string {
	s := cachekit.DefaultURLMux().Schemes()
	for _, want := range []string{"mem", "redis", "rediss+cluster", "redis+sentinel", "memcached"} {
		found := false
		for _, x := range s {
			found = found || x == want
		}
		if !found {
			t.Fatalf("scheme %s is not registered (have %v)", want, s)
		}
	}
	return s
}

func TestOpenersAcceptTheirURLs(t *testing.T) {
	for _, scheme := range schemes(t) {
		raw := baseURL(scheme, "", "namespace=app")
		c, err := cachekit.Open(context.Background(), raw)
		if err != nil {
			t.Errorf("Open(%q): %v", raw, err)
			continue
		}
		c.Close()
	}
}

func TestOpenersListValidParameters(t *testing.T) {
	for _, scheme := range schemes(t) {
		raw := baseURL(scheme, "", "namespace=app&namespaces=x")
		c, err := cachekit.Open(context.Background(), raw)
		if c != nil {
			c.Close()
		}
		if !errors.Is(err, cachekit.ErrInvalidURL) {
			t.Errorf("Open(%q) = %v; want ErrInvalidURL", raw, err)
			continue
		}
		msg := err.Error()
		for _, want := range []string{`unknown parameter "namespaces" (did you mean namespace?)`, "valid parameters: ", "namespace", "max_value_size"} {
			if !strings.Contains(msg, want) {
				t.Errorf("Open(%q) = %q; want it to say %q", raw, msg, want)
			}
		}
	}
}

func TestOpenersRejectMalformedQueries(t *testing.T) {
	for _, scheme := range schemes(t) {
		for _, q := range []string{"namespace=tenant;a", "namespace=a%zz", "namespace=a&namespace=b"} {
			raw := baseURL(scheme, "", q)
			c, err := cachekit.Open(context.Background(), raw)
			if c != nil {
				c.Close()
			}
			if !errors.Is(err, cachekit.ErrInvalidURL) {
				t.Errorf("Open(%q) = %v; want ErrInvalidURL", raw, err)
			}
		}
	}
}

// TestOpenersHidePasswords opens a URL with each hostile password for every
// registered scheme, with an unknown parameter so that every opener fails,
// and checks the error.
func TestOpenersHidePasswords(t *testing.T) {
	passwords := []string{
		"pa#ss", "s3cr?et", "a/b/c", "p@ss@word", "a:b:c", "100%", "%zz", "%41%42",
		"hunter2", "пароль", "1234#abcd", "12/34", "7?x=y", "tail@", "@head",
	}
	for _, scheme := range schemes(t) {
		for _, pw := range passwords {
			for _, form := range []string{pw, url.PathEscape(pw), url.UserPassword("", pw).String()[1:]} {
				raw := baseURL(scheme, "user:"+form, "bogus=1")
				c, err := cachekit.Open(context.Background(), raw)
				if c != nil {
					c.Close()
				}
				if !errors.Is(err, cachekit.ErrInvalidURL) {
					t.Errorf("Open(%q) = %v; want ErrInvalidURL", cachekit.RedactURL(raw), err)
					continue
				}
				redacted := cachekit.RedactURL(raw)
				if want := baseURL(scheme, "user:xxxxx", "bogus=1"); redacted != want {
					t.Errorf("RedactURL(%q) = %q; want %q", raw, redacted, want)
				}
				msg := strings.ReplaceAll(err.Error(), redacted, "<url>")
				for _, s := range []string{pw, form} {
					if strings.Contains(msg, s) {
						t.Errorf("Open(%q) error shows the password: %s", redacted, err)
					}
				}
			}
		}
	}
}
