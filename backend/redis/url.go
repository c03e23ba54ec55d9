package redis

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/urlparam"
)

// schemes are the URL schemes this package registers with
// cachekit.DefaultURLMux.
var schemes = []string{
	"redis", "rediss",
	"redis+cluster", "rediss+cluster",
	"redis+sentinel", "rediss+sentinel",
}

func init() {
	for _, s := range schemes {
		cachekit.DefaultURLMux().Register(s, URLOpener{})
	}
}

// URLOpener opens caches from redis://, rediss://, redis+cluster://,
// rediss+cluster://, redis+sentinel:// and rediss+sentinel:// URLs, as
// described in the package documentation. This package registers it with
// cachekit.DefaultURLMux; register it with a private cachekit.URLMux to use
// the schemes there.
type URLOpener struct{}

// OpenCacheURL opens the cache u describes. The cache owns its client and
// closes it on Close. It does not contact the server: the first operation
// connects, so a cache server that is down at start-up does not stop the
// program from starting. Errors wrap cachekit.ErrInvalidURL and never hold
// the URL's password.
func (URLOpener) OpenCacheURL(ctx context.Context, u *url.URL) (cachekit.Cache, error) {
	cfg, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	c := New(cfg.newClient(), &cfg.opts)
	c.owned = true
	return c, nil
}

// topology is the kind of deployment a URL names.
type topology int

const (
	standalone topology = iota
	clusterTopology
	sentinelTopology
)

// urlConfig is a parsed URL. The password lives only inside the go-redis
// options, and Format keeps fmt from printing them.
type urlConfig struct {
	topology topology
	simple   *goredis.Options
	cluster  *goredis.ClusterOptions
	failover *goredis.FailoverOptions
	opts     Options
}

// Format prints the configuration without the password (fmt would otherwise
// print the go-redis options it points to with %s).
func (cfg urlConfig) Format(f fmt.State, verb rune) {
	var addrs []string
	var user string
	switch {
	case cfg.simple != nil:
		addrs, user = []string{cfg.simple.Addr}, cfg.simple.Username
	case cfg.cluster != nil:
		addrs, user = cfg.cluster.Addrs, cfg.cluster.Username
	case cfg.failover != nil:
		addrs, user = cfg.failover.SentinelAddrs, cfg.failover.Username
	}
	fmt.Fprintf(f, "redis url config{topology: %d, addrs: %q, user: %q, options: %+v}", cfg.topology, addrs, user, cfg.opts)
}

func (cfg *urlConfig) newClient() goredis.UniversalClient {
	switch cfg.topology {
	case clusterTopology:
		return goredis.NewClusterClient(cfg.cluster)
	case sentinelTopology:
		return goredis.NewFailoverClient(cfg.failover)
	default:
		return goredis.NewClient(cfg.simple)
	}
}

func urlError(format string, args ...any) error {
	return fmt.Errorf("%w: redis: "+format, append([]any{cachekit.ErrInvalidURL}, args...)...)
}

// parseURL turns a cache URL into go-redis options and cache Options. It
// does not use go-redis's ParseURL, whose errors can quote the whole URL,
// password included.
func parseURL(u *url.URL) (*urlConfig, error) {
	scheme := strings.ToLower(u.Scheme)
	base, topo, _ := strings.Cut(scheme, "+")
	cfg := &urlConfig{}
	var useTLS bool
	switch base {
	case "redis":
	case "rediss":
		useTLS = true
	default:
		return nil, urlError("unsupported scheme %q", u.Scheme)
	}
	defaultPort := "6379"
	switch topo {
	case "":
	case "cluster":
		cfg.topology = clusterTopology
	case "sentinel":
		cfg.topology = sentinelTopology
		defaultPort = "26379"
	default:
		return nil, urlError("unsupported scheme %q", u.Scheme)
	}
	if u.Opaque != "" {
		return nil, urlError("want %s://host:port/...", scheme)
	}
	if u.Fragment != "" {
		return nil, urlError("unexpected #fragment")
	}
	addrs, err := splitHosts(u.Host, defaultPort)
	if err != nil {
		return nil, err
	}
	if cfg.topology == standalone && len(addrs) > 1 {
		return nil, urlError("%s:// takes one host; use %s+cluster:// or %s+sentinel:// for several", scheme, base, base)
	}
	db, err := parseDB(u.Path)
	if err != nil {
		return nil, err
	}
	if cfg.topology == clusterTopology && db != 0 {
		return nil, urlError("Redis Cluster has only database 0, not %d", db)
	}
	var username, password string
	if u.User != nil {
		username = u.User.Username()
		password, _ = u.User.Password()
	}

	p := urlparam.New(u)
	cfg.opts.Namespace = p.String("namespace", "")
	switch t := p.Duration("timeout", -1); {
	case t == 0:
		cfg.opts.Timeout = -1 // timeout=0: no default timeout
	case t > 0:
		cfg.opts.Timeout = t
	}
	// For the socket timeouts, 0 means "none" (go-redis's -1); absent
	// means go-redis's default.
	socketTimeout := func(name string) (d time.Duration) {
		switch t := p.Duration(name, -1); {
		case t == 0:
			return -1
		case t > 0:
			return t
		}
		return 0
	}
	dialTimeout := p.Duration("dial_timeout", 0)
	readTimeout := socketTimeout("read_timeout")
	writeTimeout := socketTimeout("write_timeout")
	poolSize := p.Int("pool_size", 0)
	cfg.opts.AllowFlush = p.Bool("allow_flush", false)
	cfg.opts.AutoPipeline = p.Bool("auto_pipeline", false)
	// breaker_threshold=0 or breaker_duration=0 turns the breaker off;
	// absent means the default.
	switch n := p.Int("breaker_threshold", -1); {
	case n == 0:
		cfg.opts.BreakerThreshold = -1
	case n > 0:
		cfg.opts.BreakerThreshold = n
	}
	switch d := p.Duration("breaker_duration", -1); {
	case d == 0:
		cfg.opts.BreakerDuration = -1
	case d > 0:
		cfg.opts.BreakerDuration = d
	}
	if n := p.Bytes("max_value_size", 0); n > 0 {
		cfg.opts.MaxValueSize = int(min(n, MaxValueSize))
	}
	var masterName string
	var sentinelAuth bool
	var reloadInterval time.Duration // cluster: the client's periodic slot-map reload; 0: go-redis's default
	if cfg.topology == clusterTopology {
		// cluster_reload_interval=0 turns the cache's reload on connection
		// failures off and leaves go-redis's periodic reload at its default.
		switch d := p.Duration("cluster_reload_interval", -1); {
		case d == 0:
			cfg.opts.ClusterReloadInterval = -1
		case d > 0:
			cfg.opts.ClusterReloadInterval = d
			reloadInterval = d
		}
	}
	if cfg.topology == sentinelTopology {
		masterName = p.String("master_name", "")
		sentinelAuth = p.Bool("sentinel_auth", false)
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	if cfg.topology == sentinelTopology && masterName == "" {
		return nil, urlError("%s:// needs the master_name parameter", scheme)
	}

	var tlsConfig *tls.Config
	if useTLS {
		// ServerName is left empty so that crypto/tls checks each node
		// against the host name it dials.
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	switch cfg.topology {
	case standalone:
		cfg.simple = &goredis.Options{
			Addr:                  addrs[0],
			Username:              username,
			Password:              password,
			DB:                    db,
			TLSConfig:             tlsConfig,
			DialTimeout:           dialTimeout,
			ReadTimeout:           readTimeout,
			WriteTimeout:          writeTimeout,
			PoolSize:              poolSize,
			ContextTimeoutEnabled: true,
			MaxRetries:            -1, // writes are never resent; reads are retried by the cache
			DialerRetries:         1,  // a refused dial fails at once, with its cause
		}
	case clusterTopology:
		cfg.cluster = &goredis.ClusterOptions{
			Addrs:                 addrs,
			Username:              username,
			Password:              password,
			TLSConfig:             tlsConfig,
			DialTimeout:           dialTimeout,
			ReadTimeout:           readTimeout,
			WriteTimeout:          writeTimeout,
			PoolSize:              poolSize,
			ContextTimeoutEnabled: true,
			MaxRetries:            -1, // writes are never resent; reads are retried by the cache
			DialerRetries:         1,  // a refused dial fails at once, with its cause

			ClusterStateReloadInterval: reloadInterval,
		}
	case sentinelTopology:
		cfg.failover = &goredis.FailoverOptions{
			MasterName:            masterName,
			SentinelAddrs:         addrs,
			Username:              username,
			Password:              password,
			DB:                    db,
			TLSConfig:             tlsConfig,
			DialTimeout:           dialTimeout,
			ReadTimeout:           readTimeout,
			WriteTimeout:          writeTimeout,
			PoolSize:              poolSize,
			ContextTimeoutEnabled: true,
			MaxRetries:            -1, // writes are never resent; reads are retried by the cache
			DialerRetries:         1,  // a refused dial fails at once, with its cause
		}
		if sentinelAuth {
			cfg.failover.SentinelUsername = username
			cfg.failover.SentinelPassword = password
		}
	}
	return cfg, nil
}

// splitHosts splits a comma-separated host list into host:port addresses,
// adding defaultPort where a host has none.
func splitHosts(hostList, defaultPort string) ([]string, error) {
	if hostList == "" {
		return nil, urlError("missing host")
	}
	var addrs []string
	for _, h := range strings.Split(hostList, ",") {
		if h == "" {
			return nil, urlError("empty host in %q", hostList)
		}
		host, port := h, defaultPort
		hasPort := strings.HasPrefix(h, "[") && strings.Contains(h, "]:") ||
			!strings.HasPrefix(h, "[") && strings.Contains(h, ":")
		if hasPort {
			var err error
			host, port, err = net.SplitHostPort(h)
			if err != nil {
				return nil, urlError("bad host %q", h)
			}
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return nil, urlError("bad port in %q", h)
			}
		} else {
			host = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		}
		if host == "" {
			return nil, urlError("empty host in %q", h)
		}
		addrs = append(addrs, net.JoinHostPort(host, port))
	}
	return addrs, nil
}

// parseDB reads the database number from a URL path: "", "/" or "/N".
func parseDB(path string) (int, error) {
	s := strings.TrimPrefix(path, "/")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, urlError("bad database number %q in the path, want /0, /1, ...", s)
	}
	return n, nil
}
