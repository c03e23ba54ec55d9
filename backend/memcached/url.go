package memcached

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/urlparam"
)

// schemes are the URL schemes this package registers with
// cachekit.DefaultURLMux.
var schemes = []string{"memcached", "memcache"}

// DefaultPort is the port used for a server address in a URL that has none.
const DefaultPort = "11211"

// DefaultURLMaxIdleConns is the max_idle_conns of a cache opened from a URL
// that does not set it: gomemcache's own default of 2 would make any
// concurrent use dial and drop connections.
const DefaultURLMaxIdleConns = 16

func init() {
	for _, s := range schemes {
		cachekit.DefaultURLMux().Register(s, cachekit.URLOpenerFunc(OpenURL))
	}
}

// OpenURL opens a Cache from a URL of the form
//
//	memcached://host1:11211,host2:11211?namespace=app&timeout=100ms
//
// (memcache:// works too; a host without a port gets 11211, but in a list
// give every host its port, or none: Go's URL parser rejects "h1:11211,h2";
// an empty host and a path, memcached:///run/memcached.sock, is a Unix
// socket). Several
// servers are spread with a consistent-hashing [Ring]. Parameters:
//
//	namespace        Options.Namespace (default none)
//	timeout          the client's socket timeout (default 500ms)
//	max_idle_conns   idle connections kept per server (default 16)
//	max_value_size   Options.MaxValueSize, e.g. 1MiB or 4194304 (default 1MiB-512B)
//	generation_ttl   Options.GenerationTTL (default 1s)
//	batch_concurrency  Options.BatchConcurrency (default max_idle_conns times the servers)
//	allow_flush      Options.AllowFlush: let Clear without a namespace flush_all every server (default false)
//	breaker_threshold  Options.BreakerThreshold (default 3; 0: no circuit breaker)
//	breaker_duration   Options.BreakerDuration (default 1s; 0: no circuit breaker)
//	auto_pipeline    Options.AutoPipeline: batch concurrent Gets per server (default true; false: off)
//	per_server_generations  a namespace generation on every server, so adding or losing a
//	                 server touches only its keys (default true; false: Options.SingleGenerationKey)
//
// The client dials through [LivenessDialer], the circuit breakers are per
// server, and concurrent Gets are batched per server (Options.AutoPipeline)
// unless auto_pipeline=false: measured on loopback, batching costs a lone
// caller nothing and reads faster than plain gomemcache from 8 goroutines
// up, where the unbatched path costs some CPU per read over gomemcache
// (see BENCHMARKS.md, "Memcached auto-batching").
//
// Unknown parameters, user information and paths (other than a socket path)
// are errors wrapping cachekit.ErrInvalidURL. Nothing is dialed until the
// first call. The returned cache owns its client and closes it on Close.
// Most programs call cachekit.Open, which calls OpenURL for these schemes.
func OpenURL(ctx context.Context, u *url.URL) (cachekit.Cache, error) {
	if u.User != nil {
		return nil, fmt.Errorf("%w: memcached URLs take no user name or password (memcached's text protocol has no authentication)", cachekit.ErrInvalidURL)
	}
	if u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("%w: memcached URL has an unexpected fragment or opaque part", cachekit.ErrInvalidURL)
	}
	var servers []string
	switch {
	case u.Host != "":
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("%w: memcached URL has a path %q; servers go in the host part, a Unix socket as memcached:///path", cachekit.ErrInvalidURL, u.Path)
		}
		for _, h := range strings.Split(u.Host, ",") {
			s, err := serverWithPort(strings.TrimSpace(h))
			if err != nil {
				return nil, err
			}
			servers = append(servers, s)
		}
	case u.Path != "" && u.Path != "/":
		servers = []string{u.Path}
	default:
		return nil, fmt.Errorf("%w: memcached URL names no server", cachekit.ErrInvalidURL)
	}

	p := urlparam.New(u)
	opts := &Options{
		Namespace:     p.String("namespace", ""),
		GenerationTTL: p.Duration("generation_ttl", 0),
	}
	timeout := p.Duration("timeout", memcache.DefaultTimeout)
	idle := p.Int("max_idle_conns", DefaultURLMaxIdleConns)
	maxValue := p.Bytes("max_value_size", DefaultMaxValueSize)
	opts.BatchConcurrency = p.Int("batch_concurrency", 0)
	opts.AllowFlush = p.Bool("allow_flush", false)
	opts.AutoPipeline = p.Bool("auto_pipeline", true)
	opts.SingleGenerationKey = !p.Bool("per_server_generations", true)
	opts.BreakerThreshold = p.Int("breaker_threshold", DefaultBreakerThreshold)
	opts.BreakerDuration = p.Duration("breaker_duration", DefaultBreakerDuration)
	if opts.BreakerThreshold == 0 || opts.BreakerDuration == 0 {
		opts.BreakerThreshold, opts.BreakerDuration = -1, -1 // 0 in a URL turns it off
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	if timeout == 0 {
		return nil, fmt.Errorf("%w: parameter timeout=0: want a positive duration", cachekit.ErrInvalidURL)
	}
	if maxValue == 0 || maxValue > 1<<40 {
		return nil, fmt.Errorf("%w: parameter max_value_size=%d: want a positive size", cachekit.ErrInvalidURL, maxValue)
	}
	opts.MaxValueSize = int(maxValue)
	if idle == 0 {
		idle = DefaultURLMaxIdleConns
	}

	ring, err := NewRing(servers...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", cachekit.ErrInvalidURL, err)
	}
	client := memcache.NewFromSelector(ring)
	client.Timeout = timeout
	client.MaxIdleConns = idle
	client.DialContext = LivenessDialer(nil)
	opts.Selector = ring
	if opts.BatchConcurrency == 0 {
		opts.BatchConcurrency = idle * len(servers)
	}
	c := New(client, opts)
	c.ownClient = true
	c.servers = servers
	return c, nil
}

// serverWithPort checks one host of a URL and adds the default port.
func serverWithPort(h string) (string, error) {
	if h == "" {
		return "", fmt.Errorf("%w: memcached URL has an empty server in its host list", cachekit.ErrInvalidURL)
	}
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") || !strings.Contains(h, ":") {
		h = net.JoinHostPort(strings.Trim(h, "[]"), DefaultPort)
	}
	if _, err := parseServer(h); err != nil {
		return "", fmt.Errorf("%w: %w", cachekit.ErrInvalidURL, err)
	}
	return h, nil
}
