package otel_test

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memcached"
	"github.com/cachekit/cachekit/backend/redis"
	ckotel "github.com/cachekit/cachekit/plugin/otel"
)

// The scripted sequence against real servers, given by the integration
// tests' environment variables (this module can't share their harness):
//
//	CACHEKIT_TEST_REDIS_ADDR=127.0.0.1:6379
//	CACHEKIT_TEST_MEMCACHED_ADDRS=127.0.0.1:11211
//
// Without them the tests are skipped.

func uniqueNamespace(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "otel-" + hex.EncodeToString(b[:])
}

func envAddr(t *testing.T, name string) string {
	addr, _, _ := strings.Cut(os.Getenv(name), ",")
	if addr = strings.TrimSpace(addr); addr == "" {
		t.Skipf("set %s to run this test against a real server", name)
	}
	return addr
}

func TestScriptedSequenceRedis(t *testing.T) {
	rdb := goredis.NewClient(&goredis.Options{Addr: envAddr(t, "CACHEKIT_TEST_REDIS_ADDR"), ContextTimeoutEnabled: true})
	defer rdb.Close()
	runRealScript(t, "redis", redis.New(rdb, &redis.Options{Namespace: uniqueNamespace(t)}))
}

func TestScriptedSequenceMemcached(t *testing.T) {
	client := memcache.New(envAddr(t, "CACHEKIT_TEST_MEMCACHED_ADDRS"))
	client.Timeout = 5 * time.Second
	defer client.Close()
	runRealScript(t, "memcached", memcached.New(client, &memcached.Options{Namespace: uniqueNamespace(t)}))
}

func runRealScript(t *testing.T, system string, backend cachekit.Cache) {
	tel := newTelemetry(t)
	h := tel.hook(t, ckotel.Options{System: system, KeyOnSpans: true})
	c := cachekit.WithHooks(backend, h)
	defer c.Close()
	want := script(t, c, system)
	got, sets := tel.collect(t)
	diff(t, got, want)
	checkNoKeys(t, sets, scriptKeys)
	if n := len(tel.spans.Ended()); n != 23 {
		t.Errorf("%d spans, want 23", n)
	}
}
