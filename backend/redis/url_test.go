package redis

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
)

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestParseURLStandalone(t *testing.T) {
	cfg, err := parseURL(mustParse(t, "redis://user:p%40ss@cache.example:6380/3?namespace=app&timeout=100ms&dial_timeout=2s&read_timeout=300ms&write_timeout=0&pool_size=7&max_value_size=1MiB"))
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.simple
	if cfg.topology != standalone || o == nil || cfg.cluster != nil || cfg.failover != nil {
		t.Fatalf("topology %v", cfg.topology)
	}
	if o.Addr != "cache.example:6380" || o.Username != "user" || o.Password != "p@ss" || o.DB != 3 ||
		o.TLSConfig != nil || o.DialTimeout != 2*time.Second || o.ReadTimeout != 300*time.Millisecond ||
		o.WriteTimeout != -1 || o.PoolSize != 7 || !o.ContextTimeoutEnabled {
		t.Fatalf("go-redis options: %+v", o)
	}
	if cfg.opts != (Options{Namespace: "app", Timeout: 100 * time.Millisecond, MaxValueSize: 1 << 20}) {
		t.Fatalf("options: %+v", cfg.opts)
	}

	cfg, err = parseURL(mustParse(t, "rediss://[::1]?timeout=0"))
	if err != nil {
		t.Fatal(err)
	}
	o = cfg.simple
	if o.Addr != "[::1]:6379" || o.DB != 0 || o.TLSConfig == nil || o.Password != "" || o.ReadTimeout != 0 || o.WriteTimeout != 0 {
		t.Fatalf("go-redis options: %+v", o)
	}
	if cfg.opts != (Options{Timeout: -1}) {
		t.Fatalf("timeout=0 gives %+v; want Timeout -1 (none)", cfg.opts)
	}
	cfg, err = parseURL(mustParse(t, "redis://localhost/"))
	if err != nil || cfg.simple.Addr != "localhost:6379" || cfg.opts != (Options{}) {
		t.Fatalf("redis://localhost/: %+v, %v", cfg, err)
	}
	cfg, err = parseURL(mustParse(t, "REDIS://:only-password@h:1"))
	if err != nil || cfg.simple.Username != "" || cfg.simple.Password != "only-password" {
		t.Fatalf("password without user: %v", err)
	}
}

func TestParseURLCluster(t *testing.T) {
	cfg, err := parseURL(mustParse(t, "rediss+cluster://u:pw@h1:7000,h2,10.0.0.3:7002/?namespace=n"))
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.cluster
	if cfg.topology != clusterTopology || o == nil {
		t.Fatalf("topology %v", cfg.topology)
	}
	if strings.Join(o.Addrs, ",") != "h1:7000,h2:6379,10.0.0.3:7002" || o.Username != "u" || o.Password != "pw" ||
		o.TLSConfig == nil || !o.ContextTimeoutEnabled || cfg.opts.Namespace != "n" {
		t.Fatalf("cluster options: %+v", o)
	}
	if _, err := parseURL(mustParse(t, "redis+cluster://h1:7000/0")); err != nil {
		t.Fatalf("/0 on a cluster: %v", err)
	}
}

func TestParseURLSentinel(t *testing.T) {
	cfg, err := parseURL(mustParse(t, "redis+sentinel://u:pw@s1,s2:26380/2?master_name=mymaster&namespace=n"))
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.failover
	if cfg.topology != sentinelTopology || o == nil {
		t.Fatalf("topology %v", cfg.topology)
	}
	if o.MasterName != "mymaster" || strings.Join(o.SentinelAddrs, ",") != "s1:26379,s2:26380" || o.DB != 2 ||
		o.Username != "u" || o.Password != "pw" || o.SentinelUsername != "" || o.SentinelPassword != "" ||
		o.TLSConfig != nil || !o.ContextTimeoutEnabled {
		t.Fatalf("failover options: %+v", o)
	}
	cfg, err = parseURL(mustParse(t, "rediss+sentinel://u:pw@s1/?master_name=m&sentinel_auth=true"))
	if err != nil {
		t.Fatal(err)
	}
	if o := cfg.failover; o.SentinelUsername != "u" || o.SentinelPassword != "pw" || o.TLSConfig == nil {
		t.Fatalf("sentinel_auth: %+v", o)
	}
}

func TestParseURLErrors(t *testing.T) {
	const pw = "Sup3rS3cret"
	for _, raw := range []string{
		"redis://u:" + pw + "@h/0?bogus=1",
		"redis://u:" + pw + "@h/0?namespace=a&namespace=b",
		"redis://u:" + pw + "@h/0?timeout=fast",
		"redis://u:" + pw + "@h/0?timeout=-1s",
		"redis://u:" + pw + "@h/0?pool_size=-3",
		"redis://u:" + pw + "@h/0?max_value_size=lots",
		"redis://u:" + pw + "@h/0?master_name=m", // only for Sentinel
		"redis://u:" + pw + "@h/0?password=" + pw,
		"redis://u:" + pw + "@h/x",
		"redis://u:" + pw + "@h/0/1",
		"redis://u:" + pw + "@h/-1",
		"redis://u:" + pw + "@/0",
		"redis://u:" + pw + "@h1,h2/0",
		"redis://u:" + pw + "@h/0#frag",
		"redis:u:" + pw,
		"redis+cluster://u:" + pw + "@h1,,h2",
		"redis+cluster://u:" + pw + "@h1/1",
		"redis+cluster://u:" + pw + "@h1:0",
		"redis+sentinel://u:" + pw + "@s1/0",
		"redis+sentinel://u:" + pw + "@s1/0?master_name=",
		"redis+sentinel://u:" + pw + "@s1/0?master_name=m&sentinel_auth=maybe",
		"redis+ring://u:" + pw + "@h",
		"memcached://u:" + pw + "@h",
	} {
		u := mustParse(t, raw)
		_, err := parseURL(u)
		if !errors.Is(err, cachekit.ErrInvalidURL) {
			t.Errorf("parseURL(%s) = %v; want ErrInvalidURL", u.Redacted(), err)
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("parseURL(%s): the error shows the password: %v", u.Redacted(), err)
		}
	}
}

// TestOpenErrors goes through cachekit.Open, the way users do.
func TestOpenErrors(t *testing.T) {
	const pw = "Sup3rS3cret"
	for _, raw := range []string{
		"redis://u:" + pw + "@h:6379/0?nope=1",
		"redis://u:" + pw + "@h:port/0",
		"rediss+cluster://u:" + pw + "@h1:7000,h2:x/?namespace=a",
		"redis+sentinel://u:" + pw + "@h/0",
	} {
		c, err := cachekit.Open(context.Background(), raw)
		if err == nil {
			c.Close()
			t.Errorf("Open(%s) succeeded", cachekit.RedactURL(raw))
			continue
		}
		if !errors.Is(err, cachekit.ErrInvalidURL) || strings.Contains(err.Error(), pw) {
			t.Errorf("Open(%s) = %v; want ErrInvalidURL without the password", cachekit.RedactURL(raw), err)
		}
	}
	for _, s := range []string{"redis", "rediss", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel"} {
		found := false
		for _, r := range cachekit.DefaultURLMux().Schemes() {
			found = found || r == s
		}
		if !found {
			t.Errorf("scheme %s is not registered", s)
		}
	}
}

func TestOpenUnreachableHidesPassword(t *testing.T) {
	const pw = "Sup3rS3cret"
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a port that is certainly ours; close it to get a refused port
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := cachekit.Open(context.Background(), "redis://u:"+pw+"@"+addr+"/0?timeout=200ms&dial_timeout=100ms")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Get(context.Background(), "k")
	if err == nil || strings.Contains(err.Error(), pw) {
		t.Fatalf("Get against an unreachable server: %v", err)
	}
}

func TestParseURLClusterReloadInterval(t *testing.T) {
	cfg, err := parseURL(mustParse(t, "redis+cluster://h1:7000?cluster_reload_interval=2s"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.opts.ClusterReloadInterval != 2*time.Second || cfg.cluster.ClusterStateReloadInterval != 2*time.Second {
		t.Fatalf("cluster_reload_interval=2s: options %v, client %v", cfg.opts.ClusterReloadInterval, cfg.cluster.ClusterStateReloadInterval)
	}
	cfg, err = parseURL(mustParse(t, "redis+cluster://h1:7000?cluster_reload_interval=0"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.opts.ClusterReloadInterval >= 0 || cfg.cluster.ClusterStateReloadInterval != 0 {
		t.Fatalf("cluster_reload_interval=0: options %v, client %v", cfg.opts.ClusterReloadInterval, cfg.cluster.ClusterStateReloadInterval)
	}
	cfg, err = parseURL(mustParse(t, "redis+cluster://h1:7000"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.opts.ClusterReloadInterval != 0 || cfg.cluster.ClusterStateReloadInterval != 0 {
		t.Fatalf("default: options %v, client %v", cfg.opts.ClusterReloadInterval, cfg.cluster.ClusterStateReloadInterval)
	}
	c := New(goredis.NewClusterClient(cfg.cluster), &cfg.opts)
	defer c.client.Close()
	if c.reloadEvery != DefaultClusterReloadInterval {
		t.Fatalf("default reload gap %v", c.reloadEvery)
	}
	for _, bad := range []string{
		"redis://h1?cluster_reload_interval=1s", // not a cluster
		"redis+cluster://h1?cluster_reload_interval=x",
	} {
		if _, err := parseURL(mustParse(t, bad)); !errors.Is(err, cachekit.ErrInvalidURL) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
