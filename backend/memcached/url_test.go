package memcached

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
)

func TestOpenURL(t *testing.T) {
	tests := []struct {
		url      string
		servers  string
		ns       string
		timeout  time.Duration
		idle     int
		maxValue int
		genTTL   time.Duration
		batch    int
	}{
		{"memcached://h1", "[h1:11211]", "", 500 * time.Millisecond, 16, DefaultMaxValueSize, time.Second, 16},
		{"memcache://h1:11212/", "[h1:11212]", "", 500 * time.Millisecond, 16, DefaultMaxValueSize, time.Second, 16},
		{"memcached://h1:11211,h2:11211?namespace=app&timeout=100ms&max_idle_conns=4",
			"[h1:11211 h2:11211]", "app", 100 * time.Millisecond, 4, DefaultMaxValueSize, time.Second, 8},
		{"MEMCACHED://h0,10.0.0.1:5?max_value_size=4MiB&generation_ttl=250ms&batch_concurrency=3&namespace=a%20b",
			"[h0:11211 10.0.0.1:5]", "a b", 500 * time.Millisecond, 16, 4 << 20, 250 * time.Millisecond, 3},
		{"memcached://[::1]", "[[::1]:11211]", "", 500 * time.Millisecond, 16, DefaultMaxValueSize, time.Second, 16},
		{"memcached:///run/memcached.sock?namespace=x", "[/run/memcached.sock]", "x", 500 * time.Millisecond, 16, DefaultMaxValueSize, time.Second, 16},
	}
	for _, tc := range tests {
		c, err := cachekit.Open(context.Background(), tc.url)
		if err != nil {
			t.Errorf("Open(%q): %v", tc.url, err)
			continue
		}
		mc := c.(*Cache)
		got := fmt.Sprint(mc.servers)
		if got != tc.servers || mc.client.Timeout != tc.timeout || mc.client.MaxIdleConns != tc.idle ||
			mc.maxValue != tc.maxValue || mc.genTTL != tc.genTTL || mc.batch != tc.batch || !mc.ownClient {
			t.Errorf("Open(%q): servers %s timeout %v idle %d maxValue %d genTTL %v batch %d owned %v",
				tc.url, got, mc.client.Timeout, mc.client.MaxIdleConns, mc.maxValue, mc.genTTL, mc.batch, mc.ownClient)
		}
		if want := ""; tc.ns != "" {
			want = namespacePart(tc.ns)
			if mc.nsPart != want {
				t.Errorf("Open(%q): namespace part %q; want %q", tc.url, mc.nsPart, want)
			}
		} else if mc.nsPart != "" {
			t.Errorf("Open(%q): namespace part %q; want none", tc.url, mc.nsPart)
		}
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

func TestOpenURLErrors(t *testing.T) {
	for _, u := range []string{
		"memcached://h1?nope=1",
		"memcached://h1?namespace=a&Namespace=b",
		"memcached://h1?namespace=a&namespace=b",
		"memcached://h1?timeout=fast",
		"memcached://h1?timeout=0s",
		"memcached://h1?max_idle_conns=-1",
		"memcached://h1?max_value_size=0",
		"memcached://h1?max_value_size=lots",
		"memcached://user:s3cret-pw@h1:11211",
		"memcached://h1/db0",
		"memcached://",
		"memcached://h1,,h2",
		"memcached://h1:port",
		"memcached://h1:11211,h1:11211",
	} {
		c, err := cachekit.Open(context.Background(), u)
		if err == nil {
			c.Close()
			t.Errorf("Open(%q): no error", u)
			continue
		}
		if !errors.Is(err, cachekit.ErrInvalidURL) {
			t.Errorf("Open(%q): %v; want ErrInvalidURL", u, err)
		}
		if strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("Open(%q): the error shows the password: %v", u, err)
		}
	}
	_, err := cachekit.Open(context.Background(), "memcached://h1?nope=1&namespace=x")
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown parameter error %v does not name the parameter", err)
	}
}

// TestOpenURLGenerationLayout: a namespaced cache opened from a URL keeps a
// generation on every server of its Ring by default, one server included;
// per_server_generations=false keeps the single generation key.
func TestOpenURLGenerationLayout(t *testing.T) {
	tests := []struct {
		url  string
		keys []string
	}{
		{"memcached://h1:1,h2:2?namespace=app", []string{"~app:gen@h1:1", "~app:gen@h2:2"}},
		{"memcached://h1:1?namespace=app", []string{"~app:gen@h1:1"}},
		{"memcached://h1:1,h2:2?namespace=app&per_server_generations=true", []string{"~app:gen@h1:1", "~app:gen@h2:2"}},
		{"memcached://h1:1,h2:2?namespace=app&per_server_generations=false", []string{"~app:gen"}},
		{"memcached://h1:1,h2:2", nil},
	}
	for _, tc := range tests {
		c, err := cachekit.Open(context.Background(), tc.url)
		if err != nil {
			t.Fatalf("Open(%q): %v", tc.url, err)
		}
		mc := c.(*Cache)
		var keys []string
		for _, s := range mc.slots {
			keys = append(keys, s.key)
		}
		if fmt.Sprint(keys) != fmt.Sprint(tc.keys) {
			t.Errorf("Open(%q): generation keys %q; want %q", tc.url, keys, tc.keys)
		}
		if per := len(tc.keys) > 0 && tc.keys[0] != "~app:gen"; per != (mc.ring != nil) {
			t.Errorf("Open(%q): ring %v; want per-server placement %v", tc.url, mc.ring != nil, per)
		}
		c.Close()
	}
}
