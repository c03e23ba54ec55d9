package integration_test

// The servers the integration tests run against. Tests call the helpers:
//
//	redisServer(t)            "host:port" of a standalone Redis
//	redisCluster(t)           addresses of a Redis Cluster (3 masters, all slots, state ok)
//	memcachedServers(t, n)    n distinct memcached addresses
//	redisSentinel(t)          Sentinel addresses and the monitored master's name
//	redisTLS(t)               "host:port" of a TLS-only Redis
//
// Each resolves its servers once per test binary and shares them between all
// tests (which must therefore isolate themselves with unique keys or
// namespaces, clean up after themselves, and never FLUSHALL/flush_all a
// shared server):
//
//  1. from the environment (CACHEKIT_TEST_REDIS_ADDR, CACHEKIT_TEST_REDIS_CLUSTER_ADDRS,
//     CACHEKIT_TEST_MEMCACHED_ADDRS, CACHEKIT_TEST_REDIS_SENTINEL_ADDRS with
//     CACHEKIT_TEST_REDIS_SENTINEL_MASTER, CACHEKIT_TEST_REDIS_TLS_ADDR),
//     checked once for a real reply;
//  2. else, for standalone Redis, the Cluster and memcached, as containers
//     started with testcontainers-go from CACHEKIT_TEST_REDIS_IMAGE /
//     CACHEKIT_TEST_MEMCACHED_IMAGE (default redis:7.4 / memcached:1.6; when
//     a default image is absent and can't be pulled, the local
//     cachekit-test/*:local images, built on first use with
//     docker/build-test-images.sh), terminated by TestMain after m.Run.
//     CACHEKIT_TEST_DOCKER=0 turns this off. Sentinel and TLS are started as
//     redis-server processes instead (see harnessStartSentinel);
//  3. else the test is skipped with one line that says what to provide, or,
//     when CI is set, fails.
//
// Every helper records what it handed out or why it could not; TestMain
// prints that summary after the tests, with or without -v.
//
// Identifiers other than the helpers start with "harness" so that the
// backend test files of this package can't collide with them.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	goredis "github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/wait"
)

const (
	harnessEnvCI                  = "CI"
	harnessEnvRedisAddr           = "CACHEKIT_TEST_REDIS_ADDR"
	harnessEnvRedisClusterAddrs   = "CACHEKIT_TEST_REDIS_CLUSTER_ADDRS"
	harnessEnvMemcachedAddrs      = "CACHEKIT_TEST_MEMCACHED_ADDRS"
	harnessEnvRedisSentinelAddrs  = "CACHEKIT_TEST_REDIS_SENTINEL_ADDRS"
	harnessEnvRedisSentinelMaster = "CACHEKIT_TEST_REDIS_SENTINEL_MASTER"
	harnessEnvRedisTLSAddr        = "CACHEKIT_TEST_REDIS_TLS_ADDR"
	harnessEnvRedisTLSCAFile      = "CACHEKIT_TEST_REDIS_TLS_CA_FILE"
	harnessEnvRedisFlushOK        = "CACHEKIT_TEST_REDIS_FLUSH_OK"
	harnessEnvDocker              = "CACHEKIT_TEST_DOCKER"
	harnessEnvRedisImage          = "CACHEKIT_TEST_REDIS_IMAGE"
	harnessEnvMemcachedImage      = "CACHEKIT_TEST_MEMCACHED_IMAGE"
	harnessEnvRyukDisabled        = "TESTCONTAINERS_RYUK_DISABLED"
	harnessDefaultRedisImage      = "redis:7.4"
	harnessDefaultMemcachedImage  = "memcached:1.6"
	harnessLocalRedisImage        = "cachekit-test/redis:local"
	harnessLocalMemcachedImage    = "cachekit-test/memcached:local"

	harnessClusterMasters      = 3
	harnessMaxMemcachedServers = 4

	// Labels on every container the harness starts, so that containers left
	// behind by a killed test binary can be found and removed by the next run.
	harnessLabel     = "org.cachekit.integration"
	harnessLabelPID  = "org.cachekit.integration.pid"
	harnessLabelHost = "org.cachekit.integration.host"

	harnessDockerTimeout  = 20 * time.Second // reaching the Docker engine
	harnessPullTimeout    = 90 * time.Second // one attempt to pull a missing image
	harnessBuildTimeout   = 5 * time.Minute  // docker/build-test-images.sh
	harnessStartupTimeout = 60 * time.Second // one container becoming ready
	harnessClusterTimeout = 60 * time.Second // the cluster reaching cluster_state:ok
	harnessStopTimeout    = 60 * time.Second // terminating everything in TestMain
)

// redisServer returns the "host:port" of a standalone Redis server shared by
// all tests of this binary: CACHEKIT_TEST_REDIS_ADDR, or a container of
// CACHEKIT_TEST_REDIS_IMAGE (default redis:7.4). Without either it skips the
// test, or fails it when CI is set.
func redisServer(t testing.TB) string {
	t.Helper()
	addr, err := harnessRedisAddr()
	if err != nil {
		harnessUnavailable(t, harnessBackendRedis, err)
	}
	harnessBackendRedis.used(t)
	return addr
}

// harnessRedisAddr is redisServer without a test: the address or why there
// is none, the same for every caller.
func harnessRedisAddr() (string, error) {
	harnessRedis.once.Do(func() {
		if addr := strings.TrimSpace(os.Getenv(harnessEnvRedisAddr)); addr != "" {
			harnessRedis.addr = addr
			harnessRedis.err = harnessWithTimeout(30*time.Second, func(ctx context.Context) error {
				return harnessPollReady(ctx, addr, harnessRedisPing)
			})
			harnessBackendRedis.setSource(addr+" from "+harnessEnvRedisAddr, harnessRedis.err, true)
			return
		}
		harnessRedis.addr, harnessRedis.err = harnessDockerRedis()
		harnessBackendRedis.setSource(harnessRedis.addr+" in a container of "+harnessImageName(&harnessRedisImage), harnessRedis.err, false)
	})
	return harnessRedis.addr, harnessRedis.err
}

// redisCluster returns the addresses of the nodes of a Redis Cluster with
// three masters, no replicas, all 16384 slots assigned and cluster_state:ok
// on every node, shared by all tests of this binary:
// CACHEKIT_TEST_REDIS_CLUSTER_ADDRS (comma-separated), or three containers of
// CACHEKIT_TEST_REDIS_IMAGE on host networking (Linux) at free 127.0.0.1
// ports. Without either it skips the test, or fails it when CI is set.
func redisCluster(t testing.TB) []string {
	t.Helper()
	addrs, err := harnessRedisClusterAddrs()
	if err != nil {
		harnessUnavailable(t, harnessBackendCluster, err)
	}
	harnessBackendCluster.used(t)
	return addrs
}

func harnessRedisClusterAddrs() ([]string, error) {
	harnessCluster.once.Do(func() {
		if env := os.Getenv(harnessEnvRedisClusterAddrs); strings.TrimSpace(env) != "" {
			addrs := harnessSplitAddrs(env)
			harnessCluster.addrs = addrs
			harnessCluster.err = harnessWithTimeout(harnessClusterTimeout, func(ctx context.Context) error {
				for _, addr := range addrs {
					if err := harnessPollReady(ctx, addr, harnessRedisPing); err != nil {
						return err
					}
				}
				return harnessWaitClusterOK(ctx, addrs, 0)
			})
			harnessBackendCluster.setSource(strings.Join(addrs, ",")+" from "+harnessEnvRedisClusterAddrs, harnessCluster.err, true)
			return
		}
		harnessCluster.addrs, harnessCluster.err = harnessDockerCluster()
		harnessBackendCluster.setSource(strings.Join(harnessCluster.addrs, ",")+" in containers of "+harnessImageName(&harnessRedisImage), harnessCluster.err, false)
	})
	return slices.Clone(harnessCluster.addrs), harnessCluster.err
}

// memcachedServers returns n (1 to 4) distinct memcached addresses shared by
// all tests of this binary: the first n of CACHEKIT_TEST_MEMCACHED_ADDRS
// (comma-separated; fewer than n is treated as no servers), or containers of
// CACHEKIT_TEST_MEMCACHED_IMAGE (default memcached:1.6), started as needed.
// memcachedServers(t, 1)[0] == memcachedServers(t, 2)[0]. Without servers it
// skips the test, or fails it when CI is set.
func memcachedServers(t testing.TB, n int) []string {
	t.Helper()
	if n < 1 || n > harnessMaxMemcachedServers {
		t.Fatalf("memcachedServers: n = %d, want 1 to %d", n, harnessMaxMemcachedServers)
	}
	b := harnessBackendMemcached
	if n > 1 {
		b = harnessBackendMemcachedPool
	}
	addrs, err := harnessMemcachedAddrs(n)
	if err != nil {
		harnessUnavailable(t, b, err)
	}
	b.used(t)
	return addrs
}

func harnessMemcachedAddrs(n int) ([]string, error) {
	m := &harnessMemcached
	m.mu.Lock()
	defer m.mu.Unlock()
	b := harnessBackendMemcached
	if n > 1 {
		b = harnessBackendMemcachedPool
	}

	if env := os.Getenv(harnessEnvMemcachedAddrs); strings.TrimSpace(env) != "" {
		addrs := harnessSplitAddrs(env)
		if !m.envChecked {
			m.envChecked = true
			m.envErr = harnessWithTimeout(30*time.Second, func(ctx context.Context) error {
				for _, addr := range addrs {
					if err := harnessPollReady(ctx, addr, harnessMemcachedVersion); err != nil {
						return err
					}
				}
				return nil
			})
		}
		var err error
		switch {
		case m.envErr != nil:
			err = m.envErr
		case len(addrs) < n:
			err = fmt.Errorf("%s lists %d address(es), these tests need %d", harnessEnvMemcachedAddrs, len(addrs), n)
		}
		if err != nil {
			b.setSource("", err, true)
			return nil, err
		}
		b.setSource(strings.Join(addrs[:n], ",")+" from "+harnessEnvMemcachedAddrs, nil, true)
		return addrs[:n], nil
	}

	addrs, err := harnessDockerMemcachedLocked(n)
	if err != nil {
		b.setSource("", err, false)
		return nil, err
	}
	b.setSource(strings.Join(addrs, ",")+" in containers of "+harnessImageName(&harnessMemcachedImage), nil, false)
	return addrs, nil
}

// harnessDockerRedis, harnessDockerCluster and harnessDockerMemcached start
// the servers in containers (once per binary) whatever the environment says.
func harnessDockerRedis() (string, error) {
	harnessContainerRedis.once.Do(func() {
		harnessContainerRedis.addr, harnessContainerRedis.err = harnessStartRedis()
	})
	return harnessContainerRedis.addr, harnessContainerRedis.err
}

func harnessDockerCluster() ([]string, error) {
	harnessContainerCluster.once.Do(func() {
		harnessContainerCluster.addrs, harnessContainerCluster.err = harnessStartRedisCluster()
	})
	return slices.Clone(harnessContainerCluster.addrs), harnessContainerCluster.err
}

func harnessDockerMemcached(n int) ([]string, error) {
	harnessMemcached.mu.Lock()
	defer harnessMemcached.mu.Unlock()
	return harnessDockerMemcachedLocked(n)
}

func harnessDockerMemcachedLocked(n int) ([]string, error) {
	m := &harnessMemcached
	if m.err == nil && len(m.addrs) < n {
		added, err := harnessStartMemcached(n - len(m.addrs))
		m.addrs = append(m.addrs, added...)
		m.err = err
	}
	if len(m.addrs) < n {
		if len(m.addrs) == 0 {
			return nil, m.err
		}
		return nil, fmt.Errorf("%d memcached container(s) needed, %d started: %w", n, len(m.addrs), m.err)
	}
	return slices.Clone(m.addrs[:n]), nil
}

// redisSentinel returns the addresses of Redis Sentinels and the name of the
// master they monitor (CACHEKIT_TEST_REDIS_SENTINEL_ADDRS, comma-separated,
// and CACHEKIT_TEST_REDIS_SENTINEL_MASTER), checked once: every Sentinel
// answers and names a master that answers. Without them it skips the test,
// or fails it when CI is set.
func redisSentinel(t testing.TB) (addrs []string, master string) {
	t.Helper()
	harnessSentinel.once.Do(func() {
		env, name := strings.TrimSpace(os.Getenv(harnessEnvRedisSentinelAddrs)), strings.TrimSpace(os.Getenv(harnessEnvRedisSentinelMaster))
		if env == "" && name == "" {
			addrs, err := harnessStartSentinel()
			if err != nil {
				harnessSentinel.err = fmt.Errorf("%s is not set, and starting Sentinel processes failed: %w", harnessEnvRedisSentinelAddrs, err)
				harnessBackendSentinel.setSource("", harnessSentinel.err, false)
				return
			}
			harnessSentinel.addrs, harnessSentinel.master = addrs, harnessSentinelMaster
			harnessBackendSentinel.setSource(fmt.Sprintf("master %q watched by %s, processes the harness started", harnessSentinelMaster, strings.Join(addrs, ",")), nil, false)
			return
		}
		if env == "" || name == "" {
			harnessSentinel.err = fmt.Errorf("%s and %s are not both set", harnessEnvRedisSentinelAddrs, harnessEnvRedisSentinelMaster)
			harnessBackendSentinel.setSource("", harnessSentinel.err, true)
			return
		}
		harnessSentinel.fromEnv = true
		harnessSentinel.addrs, harnessSentinel.master = harnessSplitAddrs(env), name
		var masterAddr string
		harnessSentinel.err = harnessWithTimeout(30*time.Second, func(ctx context.Context) error {
			for _, addr := range harnessSentinel.addrs {
				err := harnessPollReady(ctx, addr, func(ctx context.Context, addr string) error {
					reply, err := harnessRESPList(ctx, addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
					if err != nil {
						return err
					}
					if len(reply) != 2 {
						return fmt.Errorf("sentinel %s does not know master %q (reply %q)", addr, name, reply)
					}
					masterAddr = net.JoinHostPort(reply[0], reply[1])
					return harnessRedisPing(ctx, masterAddr)
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
		harnessBackendSentinel.setSource(fmt.Sprintf("master %q at %s from %s (%s)", name, masterAddr, harnessEnvRedisSentinelAddrs, env),
			harnessSentinel.err, true)
	})
	if harnessSentinel.err != nil {
		harnessUnavailable(t, harnessBackendSentinel, harnessSentinel.err)
	}
	harnessBackendSentinel.used(t)
	return slices.Clone(harnessSentinel.addrs), harnessSentinel.master
}

// redisTLS returns the "host:port" of a TLS-only Redis server
// (CACHEKIT_TEST_REDIS_TLS_ADDR) whose certificate verifies against the
// system roots plus CACHEKIT_TEST_REDIS_TLS_CA_FILE (which TestMain adds; see
// harnessTrustTestCA), checked once with a TLS PING. Without it it skips the
// test, or fails it when CI is set.
func redisTLS(t testing.TB) string {
	t.Helper()
	harnessTLS.once.Do(func() {
		addr := strings.TrimSpace(os.Getenv(harnessEnvRedisTLSAddr))
		if addr == "" {
			addr, err := harnessStartTLS()
			if err != nil {
				harnessTLS.err = fmt.Errorf("%s is not set, and starting a TLS redis-server failed: %w", harnessEnvRedisTLSAddr, err)
				harnessBackendTLS.setSource("", harnessTLS.err, false)
				return
			}
			harnessTLS.addr = addr
			harnessBackendTLS.setSource(addr+", a process the harness started (certificate from a CA made for this run)", nil, false)
			return
		}
		harnessTLS.addr, harnessTLS.fromEnv = addr, true
		harnessTLS.err = harnessWithTimeout(30*time.Second, func(ctx context.Context) error {
			return harnessPollReady(ctx, addr, harnessRedisTLSPing)
		})
		src := addr + " from " + harnessEnvRedisTLSAddr
		if ca := os.Getenv(harnessEnvRedisTLSCAFile); ca != "" {
			src += ", CA " + ca
		}
		harnessBackendTLS.setSource(src, harnessTLS.err, true)
	})
	if harnessTLS.err != nil {
		harnessUnavailable(t, harnessBackendTLS, harnessTLS.err)
	}
	harnessBackendTLS.used(t)
	return harnessTLS.addr
}

// redisFlushAllowed skips t (or fails it under CI) unless it may flush
// databases on the Redis server whose address came from envAddr: servers
// the harness started itself always may; servers given by address only with
// CACHEKIT_TEST_REDIS_FLUSH_OK=1.
func redisFlushAllowed(t testing.TB, envAddr string) {
	t.Helper()
	if os.Getenv(envAddr) == "" {
		return // the harness's own server, if any
	}
	if os.Getenv(harnessEnvRedisFlushOK) == "" {
		err := fmt.Errorf("Clear without a namespace runs FLUSHDB, and the server in %s is not the harness's own", envAddr)
		harnessBackendFlush.setSource("", err, true)
		harnessUnavailable(t, harnessBackendFlush, err)
	}
	harnessBackendFlush.setSource("allowed by "+harnessEnvRedisFlushOK+" on the servers given by address", nil, true)
	harnessBackendFlush.used(t)
}

var (
	harnessRedis struct {
		once sync.Once
		addr string
		err  error
	}
	harnessCluster struct {
		once  sync.Once
		addrs []string
		err   error
	}
	harnessContainerRedis struct {
		once sync.Once
		addr string
		err  error
	}
	harnessContainerCluster struct {
		once  sync.Once
		addrs []string
		err   error
	}
	harnessMemcached struct {
		mu         sync.Mutex
		addrs      []string // started so far
		err        error    // a start failed: don't try again
		envChecked bool
		envErr     error
	}
	harnessSentinel struct {
		once    sync.Once
		addrs   []string
		master  string
		fromEnv bool
		err     error
	}
	harnessTLS struct {
		once    sync.Once
		addr    string
		fromEnv bool
		err     error
	}
)

// --- What ran, what didn't, and why -------------------------------------------

// harnessBackend is one kind of server, a line of the summary TestMain prints.
type harnessBackend struct {
	name    string
	provide string // what to set to run its tests, in one line
	docker  bool   // the harness can start it in Docker

	mu      sync.Mutex
	source  string          // where its servers came from
	fromEnv bool            // given by the environment
	err     error           // why it is not available
	ran     map[string]bool // tests that got it
	skipped map[string]bool // tests skipped (or, under CI, failed) without it
}

var (
	harnessBackendRedis = &harnessBackend{name: "Redis", docker: true,
		provide: harnessEnvRedisAddr + "=host:port"}
	harnessBackendCluster = &harnessBackend{name: "Redis Cluster", docker: true,
		provide: harnessEnvRedisClusterAddrs + "=host:port,host:port,host:port (3 masters)"}
	harnessBackendSentinel = &harnessBackend{name: "Redis Sentinel",
		provide: harnessEnvRedisSentinelAddrs + "=host:port,... and " + harnessEnvRedisSentinelMaster + "=name, or install redis-server"}
	harnessBackendTLS = &harnessBackend{name: "Redis TLS",
		provide: harnessEnvRedisTLSAddr + "=host:port (and " + harnessEnvRedisTLSCAFile + "=ca.pem unless the system trusts its certificate), or install redis-server (with TLS)"}
	harnessBackendMemcached = &harnessBackend{name: "Memcached", docker: true,
		provide: harnessEnvMemcachedAddrs + "=host:port"}
	harnessBackendMemcachedPool = &harnessBackend{name: "Memcached pool", docker: true,
		provide: harnessEnvMemcachedAddrs + "=host:port,host:port (2 or more)"}
	harnessBackendFlush = &harnessBackend{name: "Redis FLUSHDB",
		provide: harnessEnvRedisFlushOK + "=1 (lets Clear without a namespace flush database 15 of " + harnessEnvRedisAddr + " and the cluster in " + harnessEnvRedisClusterAddrs + ")"}
	harnessBackendProcesses = &harnessBackend{name: "Fault servers",
		provide: "redis-server and memcached on PATH (or CACHEKIT_TEST_REDIS_SERVER_BIN, CACHEKIT_TEST_MEMCACHED_BIN)"}
	harnessBackendDocker = &harnessBackend{name: "Docker",
		provide: "a Docker engine (DOCKER_HOST or /var/run/docker.sock), or " + harnessEnvDocker + "=0 to say there is none"}

	harnessBackends = []*harnessBackend{
		harnessBackendRedis, harnessBackendCluster, harnessBackendSentinel, harnessBackendTLS,
		harnessBackendMemcached, harnessBackendMemcachedPool, harnessBackendFlush, harnessBackendProcesses,
		harnessBackendDocker,
	}
)

// setSource records where b's servers came from, or why there are none
// (the first answer wins: every test gets the same one).
func (b *harnessBackend) setSource(source string, err error, fromEnv bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.source != "" || b.err != nil {
		return
	}
	b.fromEnv = fromEnv
	if err != nil {
		b.err = err
		return
	}
	b.source = source
}

func (b *harnessBackend) used(t testing.TB) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ran == nil {
		b.ran = map[string]bool{}
	}
	b.ran[t.Name()] = true
}

func (b *harnessBackend) skip(t testing.TB) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.skipped == nil {
		b.skipped = map[string]bool{}
	}
	b.skipped[t.Name()] = true
}

// harnessReportProcess records the server processes the fault-injection
// tests start with internal/testserver (testserver.Report), for the summary.
func harnessReportProcess(t testing.TB, kind string, err error) {
	b := harnessBackendProcesses
	if err != nil {
		b.setSource("", fmt.Errorf("%s: %w", kind, err), false)
		b.skip(t)
		return
	}
	b.setSource("redis-server and memcached processes on 127.0.0.1 (freeze, kill, restart)", nil, false)
	b.used(t)
}

// harnessCI reports whether CI is set: then a missing server fails the test.
func harnessCI() bool { return os.Getenv(harnessEnvCI) != "" }

// harnessUnavailable skips t, or fails it when CI is set, with one line that
// says what is missing and what to provide.
func harnessUnavailable(t testing.TB, b *harnessBackend, err error) {
	t.Helper()
	b.skip(t)
	verb := "set"
	if b == harnessBackendDocker {
		verb = "provide"
	}
	msg := fmt.Sprintf("%s not available: %v; to run this test %s %s", b.name, harnessOneLine(err), verb, b.provide)
	if b.docker {
		msg += ", or make Docker usable"
	}
	if harnessCI() {
		t.Fatalf("%s (CI is set, so a missing server fails the test instead of skipping it)", msg)
	}
	t.Skip(msg + " (see README.md, \"Running the integration tests\")")
}

// harnessOneLine shortens err's text to one line of reasonable length.
func harnessOneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// harnessSummary writes, per backend, whether its tests ran (and on what) or
// were skipped (and why), and returns how many backends had tests skipped.
func harnessSummary(w io.Writer) (skipped int) {
	fmt.Fprintf(w, "\nintegration_test: servers (CI=%q; -v lists every test):\n", os.Getenv(harnessEnvCI))
	for _, b := range harnessBackends {
		b.mu.Lock()
		ran, skip := len(b.ran), len(b.skipped)
		var status, detail string
		switch {
		case skip > 0 && ran > 0:
			status = fmt.Sprintf("ran %d, skipped %d", ran, skip)
		case skip > 0:
			status = fmt.Sprintf("skipped %d", skip)
		case ran > 0:
			status = fmt.Sprintf("ran %d", ran)
		default:
			status = "not used"
		}
		if harnessCI() && skip > 0 {
			status = strings.Replace(status, "skipped", "FAILED", 1)
		}
		switch {
		case b.err != nil && b == harnessBackendProcesses:
			detail = harnessOneLine(b.err)
		case b.err != nil && b == harnessBackendDocker:
			detail = harnessOneLine(b.err) + "; to run: provide " + b.provide
		case b.err != nil:
			detail = harnessOneLine(b.err) + "; to run: set " + b.provide
			if b.docker {
				detail += ", or make Docker usable"
			}
		case b.source != "":
			detail = b.source
		}
		if skip > 0 {
			skipped++
		}
		b.mu.Unlock()
		fmt.Fprintf(w, "  %-15s %-20s %s\n", b.name, status, detail)
	}
	switch {
	case skipped > 0 && harnessCI():
		fmt.Fprintf(w, "integration_test: %d kind(s) of server missing; CI is set, so their tests failed\n", skipped)
	case skipped > 0:
		fmt.Fprintf(w, "integration_test: %d kind(s) of server missing, their tests were SKIPPED (with CI set they fail)\n", skipped)
	}
	return skipped
}

func harnessSplitAddrs(s string) []string {
	var addrs []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

func harnessWithTimeout(d time.Duration, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return f(ctx)
}

// --- Talking to the servers ----------------------------------------------

// harnessRESP sends one command to a Redis server on a new connection and
// returns the reply: the text of a simple string or integer, the body of a
// bulk string, or an error for an error reply.
func harnessRESP(ctx context.Context, addr string, args ...string) (string, error) {
	reply, err := harnessCommand(ctx, addr, nil, args...)
	if err != nil {
		return "", err
	}
	if len(reply) != 1 {
		return "", fmt.Errorf("redis %s: %s replied with %d elements", addr, args[0], len(reply))
	}
	return reply[0], nil
}

// harnessRESPList is harnessRESP for a command that replies with an array
// of strings (or a nil array: no elements).
func harnessRESPList(ctx context.Context, addr string, args ...string) ([]string, error) {
	return harnessCommand(ctx, addr, nil, args...)
}

// harnessCommand sends args on a new connection (TLS with tlsConf, when not
// nil) and reads a reply: one string for a simple string, an integer or a
// bulk string, the strings of an array (of those), or an error.
func harnessCommand(ctx context.Context, addr string, tlsConf *tls.Config, args ...string) ([]string, error) {
	var conn net.Conn
	var err error
	if tlsConf != nil {
		d := &tls.Dialer{Config: tlsConf}
		conn, err = d.DialContext(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)

	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	line, err := harnessReadLine(r)
	if err != nil {
		return nil, err
	}
	if line[0] != '*' {
		s, err := harnessReadScalar(r, addr, line)
		if err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil {
		return nil, fmt.Errorf("unexpected reply %q", line)
	}
	var out []string // n < 0: a nil array
	for range n {
		if line, err = harnessReadLine(r); err != nil {
			return nil, err
		}
		s, err := harnessReadScalar(r, addr, line)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func harnessReadLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read reply: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	return line, nil
}

// harnessReadScalar returns the value of a reply that starts with line.
func harnessReadScalar(r *bufio.Reader, addr, line string) (string, error) {
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis %s: %s", addr, line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("unexpected reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("read reply: %w", err)
		}
		return string(buf[:n]), nil
	default:
		return "", fmt.Errorf("unexpected reply %q", line)
	}
}

// harnessRedisTLSPing PINGs a TLS server, verifying its certificate as a
// rediss:// URL does (system roots, which TestMain extends with
// CACHEKIT_TEST_REDIS_TLS_CA_FILE; the host as the server name).
func harnessRedisTLSPing(ctx context.Context, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	reply, err := harnessCommand(ctx, addr, &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}, "PING")
	if err != nil {
		return err
	}
	if len(reply) != 1 || reply[0] != "PONG" {
		return fmt.Errorf("redis %s: PING over TLS replied %q", addr, reply)
	}
	return nil
}

func harnessRedisPing(ctx context.Context, addr string) error {
	reply, err := harnessRESP(ctx, addr, "PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("redis %s: PING replied %q", addr, reply)
	}
	return nil
}

// harnessMemcachedVersion sends "version" and expects "VERSION ...".
func harnessMemcachedVersion(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "version\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("memcached %s: read reply: %w", addr, err)
	}
	if !strings.HasPrefix(line, "VERSION ") {
		return fmt.Errorf("memcached %s: version replied %q", addr, strings.TrimSpace(line))
	}
	return nil
}

// harnessPollReady calls check until it succeeds or ctx ends.
func harnessPollReady(ctx context.Context, addr string, check func(context.Context, string) error) error {
	for {
		err := check(ctx, addr)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// harnessReady is a testcontainers wait strategy: the container's port
// answers check (a real PING or version reply, so the port is open too).
type harnessReady struct {
	port    string // container port, "6379/tcp"
	check   func(ctx context.Context, addr string) error
	timeout time.Duration
}

func (s *harnessReady) Timeout() *time.Duration { return &s.timeout }

func (s *harnessReady) String() string { return "a reply on port " + s.port }

func (s *harnessReady) WaitUntilReady(ctx context.Context, target wait.StrategyTarget) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var last error
	for {
		addr, err := harnessTargetAddr(ctx, target, s.port)
		if err == nil {
			if err = s.check(ctx, addr); err == nil {
				return nil
			}
		}
		last = err
		if state, serr := target.State(ctx); serr == nil && !state.Running {
			return fmt.Errorf("container is %s (exit code %d): %w", state.Status, state.ExitCode, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no reply on %s within %s: %w", s.port, s.timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type harnessAddrTarget interface {
	Host(context.Context) (string, error)
	MappedPort(context.Context, string) (network.Port, error)
}

// harnessTargetAddr is "host:port" for a container port, as the test process
// reaches it: 127.0.0.1 when the engine is local (see harnessDockerIsLocal),
// else what testcontainers says ("localhost" made 127.0.0.1, so that clients
// don't try ::1).
func harnessTargetAddr(ctx context.Context, c harnessAddrTarget, port string) (string, error) {
	host := "127.0.0.1"
	if !harnessDocker.local {
		var err error
		if host, err = c.Host(ctx); err != nil {
			return "", err
		}
		if host == "localhost" {
			host = "127.0.0.1"
		}
	}
	p, err := c.MappedPort(ctx, port)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(int(p.Num()))), nil
}

// --- Docker ----------------------------------------------------------------

var harnessDocker struct {
	once  sync.Once
	cli   *testcontainers.DockerClient
	local bool // the engine runs on this host: publish ports on 127.0.0.1 only
	err   error
}

// harnessDockerConnected is the client once connected, for TestMain and the
// signal handler, which may run while harnessDocker.once is in progress.
var harnessDockerConnected atomic.Pointer[testcontainers.DockerClient]

// harnessDockerClient connects to the Docker engine once, and removes
// containers that earlier runs of this harness left behind.
func harnessDockerClient() (*testcontainers.DockerClient, error) {
	harnessDocker.once.Do(func() {
		harnessDocker.err = harnessCatchPanic(func() error {
			if v := os.Getenv(harnessEnvDocker); harnessOff(v) {
				return fmt.Errorf("Docker is off (%s=%s)", harnessEnvDocker, v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), harnessDockerTimeout)
			defer cancel()
			// testcontainers falls back from a DOCKER_HOST that doesn't
			// answer to the default socket; the harness takes DOCKER_HOST at
			// its word instead.
			if host := os.Getenv("DOCKER_HOST"); host != "" {
				plain, err := client.New(client.FromEnv)
				if err == nil {
					_, err = plain.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
					_ = plain.Close()
				}
				if err != nil {
					return fmt.Errorf("no Docker engine at DOCKER_HOST=%s: %w", host, err)
				}
			}
			cli, err := testcontainers.NewDockerClientWithOpts(ctx)
			if err != nil {
				return fmt.Errorf("no Docker engine: %w", err)
			}
			if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
				return fmt.Errorf("no Docker engine: %w", err)
			}
			harnessDocker.cli = cli
			harnessDocker.local = harnessDockerIsLocal(cli.DaemonHost())
			harnessReapStale(ctx, cli)
			harnessDockerConnected.Store(cli)
			return nil
		})
	})
	return harnessDocker.cli, harnessDocker.err
}

// harnessDockerIsLocal reports whether the engine is reached through a unix
// socket (or a loopback TCP address), taken to mean that its published ports
// are reachable on 127.0.0.1 (a laptop, Docker Desktop, a CI machine running
// its own engine). The harness then publishes ports on 127.0.0.1 only and
// connects there, rather than to a bridge gateway address that testcontainers
// picks when the tests themselves run in a container. Where that is wrong (tests
// in a container talking to the host's engine through a mounted socket), set
// TESTCONTAINERS_HOST_OVERRIDE to the host's address.
func harnessDockerIsLocal(daemonHost string) bool {
	if os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") != "" {
		return false
	}
	scheme, rest, _ := strings.Cut(daemonHost, "://")
	switch scheme {
	case "unix", "npipe":
		return true
	case "tcp", "http", "https":
		host, _, err := net.SplitHostPort(rest)
		if err != nil {
			host = rest
		}
		if host == "localhost" {
			return true
		}
		ip, err := netip.ParseAddr(host)
		return err == nil && ip.IsLoopback()
	}
	return false
}

// harnessReapStale removes containers of this harness whose test process, on
// this host, no longer runs (a binary killed by a timeout or a signal).
func harnessReapStale(ctx context.Context, cli *testcontainers.DockerClient) {
	host, _ := os.Hostname()
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", harnessLabel+"=1", harnessLabelHost+"="+host),
	})
	if err != nil {
		return
	}
	for _, c := range list.Items {
		pid, err := strconv.Atoi(c.Labels[harnessLabelPID])
		if err != nil || pid == os.Getpid() || harnessProcessAlive(pid) {
			continue
		}
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err == nil {
			fmt.Fprintf(os.Stderr, "integration_test: removed container %.12s left behind by test process %d\n", c.ID, pid)
		}
	}
}

func harnessProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	if err == nil {
		return true
	}
	if _, perr := os.Stat("/proc/self"); perr != nil {
		return true // no /proc: can't tell, so leave it alone
	}
	return false
}

// harnessEnsureImage makes sure image is present, pulling it (once, bounded
// in time) if not. The result is remembered per image.
func harnessEnsureImage(cli *testcontainers.DockerClient, image string) error {
	v, _ := harnessImages.LoadOrStore(image, &harnessImageOnce{})
	o := v.(*harnessImageOnce)
	o.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), harnessPullTimeout)
		defer cancel()
		if _, err := cli.ImageInspect(ctx, image); err == nil {
			return
		}
		resp, err := cli.ImagePull(ctx, image, client.ImagePullOptions{})
		if err == nil {
			err = resp.Wait(ctx)
			_ = resp.Close()
		}
		if err != nil {
			o.err = fmt.Errorf("image %s is not present and could not be pulled: %w", image, err)
		}
	})
	return o.err
}

type harnessImageOnce struct {
	once sync.Once
	err  error
}

var harnessImages sync.Map // image name -> *harnessImageOnce

// harnessContainers is everything the harness started; TestMain terminates
// them all after m.Run.
var harnessContainers struct {
	mu   sync.Mutex
	list []testcontainers.Container
}

func harnessTrack(c testcontainers.Container) {
	harnessContainers.mu.Lock()
	defer harnessContainers.mu.Unlock()
	harnessContainers.list = append(harnessContainers.list, c)
}

// harnessLife guards starting against stopping: once harnessStopAll has
// begun, no container starts, and it waits for starts in flight.
var harnessLife struct {
	mu       sync.Mutex
	stopping bool
	inflight sync.WaitGroup
}

var errHarnessStopping = errors.New("the test binary is shutting down")

// harnessBeginStart registers a container start; it fails once stopping.
func harnessBeginStart() (done func(), err error) {
	harnessLife.mu.Lock()
	defer harnessLife.mu.Unlock()
	if harnessLife.stopping {
		return nil, errHarnessStopping
	}
	harnessLife.inflight.Add(1)
	return harnessLife.inflight.Done, nil
}

// harnessStopAll terminates (stops and removes) every container the harness
// started, concurrently, then force-removes anything else labelled with this
// process, and reports an error only if some container of this process is
// still there afterwards (or, without a Docker client, if a terminate failed).
// Starts in flight are waited for (up to a minute); later starts fail.
func harnessStopAll() error {
	harnessLife.mu.Lock()
	harnessLife.stopping = true
	harnessLife.mu.Unlock()
	idle := make(chan struct{})
	go func() { harnessLife.inflight.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-time.After(harnessStopTimeout):
	}
	harnessStopProcs()

	harnessContainers.mu.Lock()
	list := harnessContainers.list
	harnessContainers.list = nil
	harnessContainers.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), harnessStopTimeout)
	defer cancel()
	errs := make([]error, len(list))
	var wg sync.WaitGroup
	for i, c := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = harnessTerminate(ctx, c)
		}()
	}
	wg.Wait()
	cli := harnessDockerConnected.Load()
	if cli == nil {
		return errors.Join(errs...)
	}
	// Also whatever a start created and failed to hand back.
	pid := strconv.Itoa(os.Getpid())
	sweepErr := harnessRemoveLabelled(ctx, cli, pid)
	left, err := harnessListLabelled(ctx, cli, pid)
	if err != nil {
		return errors.Join(append(errs, sweepErr, err)...)
	}
	if len(left) > 0 {
		return errors.Join(append(errs, sweepErr, fmt.Errorf("containers left behind: %v", left))...)
	}
	return nil
}

func harnessListLabelled(ctx context.Context, cli *testcontainers.DockerClient, pid string) ([]string, error) {
	host, _ := os.Hostname()
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{
		All: true,
		Filters: make(client.Filters).Add("label",
			harnessLabel+"=1", harnessLabelHost+"="+host, harnessLabelPID+"="+pid),
	})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var ids []string
	for _, c := range list.Items {
		ids = append(ids, c.ID)
	}
	return ids, nil
}

// harnessRemoveLabelled force-removes this host's harness containers of
// test process pid.
func harnessRemoveLabelled(ctx context.Context, cli *testcontainers.DockerClient, pid string) error {
	ids, err := harnessListLabelled(ctx, cli, pid)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if _, err := cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %.12s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

func harnessTerminate(ctx context.Context, c testcontainers.Container) error {
	return harnessCatchPanic(func() error {
		if err := c.Terminate(ctx, testcontainers.StopTimeout(2*time.Second)); err != nil {
			return fmt.Errorf("terminate container %.12s: %w", c.GetContainerID(), err)
		}
		return nil
	})
}

func harnessCatchPanic(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

func harnessLogger() tclog.Logger {
	if testing.Verbose() {
		return tclog.Default()
	}
	return tclog.NewNoopLogger()
}

// harnessRun starts one container of image and waits until ready says so.
// A container that doesn't become ready is removed, and the error carries
// the end of its log.
func harnessRun(image string, ready wait.Strategy, opts ...testcontainers.ContainerCustomizer) (*testcontainers.DockerContainer, error) {
	done, err := harnessBeginStart()
	if err != nil {
		return nil, err
	}
	defer done()
	cli, err := harnessDockerClient()
	if err != nil {
		return nil, err
	}
	if err := harnessEnsureImage(cli, image); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	all := []testcontainers.ContainerCustomizer{
		testcontainers.WithLogger(harnessLogger()),
		testcontainers.WithLabels(map[string]string{
			harnessLabel:     "1",
			harnessLabelPID:  strconv.Itoa(os.Getpid()),
			harnessLabelHost: host,
		}),
		testcontainers.WithWaitStrategyAndDeadline(harnessStartupTimeout+10*time.Second, ready),
	}
	all = append(all, opts...)

	ctx, cancel := context.WithTimeout(context.Background(), harnessStartupTimeout+30*time.Second)
	defer cancel()
	var c *testcontainers.DockerContainer
	err = harnessCatchPanic(func() error {
		var err error
		c, err = testcontainers.Run(ctx, image, all...)
		return err
	})
	if err != nil {
		if c != nil {
			if logs := harnessTailLogs(c); logs != "" {
				err = fmt.Errorf("%w\ncontainer log:\n%s", err, logs)
			}
			if terr := harnessTerminate(context.Background(), c); terr != nil {
				harnessTrack(c) // try again in TestMain
			}
		}
		return nil, fmt.Errorf("start %s: %w", image, err)
	}
	harnessTrack(c)
	return c, nil
}

func harnessTailLogs(c *testcontainers.DockerContainer) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out string
	_ = harnessCatchPanic(func() error {
		rc, err := c.Logs(ctx)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
		out = strings.TrimSpace(string(b))
		return nil
	})
	if len(out) > 2000 {
		out = "..." + out[len(out)-2000:]
	}
	return out
}

// harnessPublishLoopback publishes port on 127.0.0.1 only, when the engine is
// on this host (otherwise testcontainers' default, all interfaces).
func harnessPublishLoopback(port string) testcontainers.CustomizeRequestOption {
	return testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
		if !harnessDocker.local {
			return
		}
		p, err := network.ParsePort(port)
		if err != nil {
			return
		}
		if hc.PortBindings == nil {
			hc.PortBindings = network.PortMap{}
		}
		hc.PortBindings[p] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: "0"}}
	})
}

// harnessOff reports whether an environment value turns something off.
func harnessOff(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "0", "false", "off", "no":
		return true
	}
	return false
}

// harnessImageChoice is the image the harness runs for one kind of server:
// env's value, else the official image; when that is the official image (or
// the local one) and it is absent and can't be pulled, the local image, built
// with docker/build-test-images.sh if it is not there yet.
type harnessImageChoice struct {
	env, official, local string

	once  sync.Once
	image string
	err   error
}

var (
	harnessRedisImage     = harnessImageChoice{env: harnessEnvRedisImage, official: harnessDefaultRedisImage, local: harnessLocalRedisImage}
	harnessMemcachedImage = harnessImageChoice{env: harnessEnvMemcachedImage, official: harnessDefaultMemcachedImage, local: harnessLocalMemcachedImage}
)

// harnessImageName is the image asked for (for messages).
func harnessImageName(c *harnessImageChoice) string {
	if c.image != "" {
		return c.image
	}
	if img := strings.TrimSpace(os.Getenv(c.env)); img != "" {
		return img
	}
	return c.official
}

// resolve returns the image to run, present in the engine.
func (c *harnessImageChoice) resolve() (string, error) {
	c.once.Do(func() {
		cli, err := harnessDockerClient()
		if err != nil {
			c.err = err
			return
		}
		want := harnessImageName(c)
		if want != c.local {
			err := harnessEnsureImage(cli, want)
			if err == nil {
				c.image = want
				return
			}
			if want != c.official {
				c.err = fmt.Errorf("%w (%s names it; unset it to use %s, or %s where that can't be pulled)", err, c.env, c.official, c.local)
				return
			}
			fmt.Fprintf(os.Stderr, "integration_test: %s is not present and can't be pulled; using %s instead\n", want, c.local)
		}
		if !harnessImagePresent(cli, c.local) {
			if err := harnessBuildLocalImages(); err != nil {
				c.err = fmt.Errorf("%s is not present and can't be pulled, and building %s failed: %w", want, c.local, err)
				return
			}
		}
		if err := harnessEnsureImage(cli, c.local); err != nil {
			c.err = err
			return
		}
		c.image = c.local
	})
	return c.image, c.err
}

func harnessImagePresent(cli *testcontainers.DockerClient, image string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), harnessDockerTimeout)
	defer cancel()
	_, err := cli.ImageInspect(ctx, image)
	return err == nil
}

var harnessBuild struct {
	once sync.Once
	err  error
}

// harnessBuildLocalImages runs docker/build-test-images.sh once, to build
// cachekit-test/redis:local and cachekit-test/memcached:local from the
// redis-server and memcached binaries installed on this machine.
func harnessBuildLocalImages() error {
	harnessBuild.once.Do(func() {
		script, err := harnessFindUp(filepath.Join("docker", "build-test-images.sh"))
		if err != nil {
			harnessBuild.err = err
			return
		}
		fmt.Fprintf(os.Stderr, "integration_test: building %s and %s with %s\n", harnessLocalRedisImage, harnessLocalMemcachedImage, script)
		ctx, cancel := context.WithTimeout(context.Background(), harnessBuildTimeout)
		defer cancel()
		start := time.Now()
		cmd := exec.CommandContext(ctx, "bash", script)
		cmd.Env = append(os.Environ(),
			harnessEnvRedisImage+"="+harnessLocalRedisImage,
			harnessEnvMemcachedImage+"="+harnessLocalMemcachedImage)
		out, err := cmd.CombinedOutput()
		if err != nil {
			tail := strings.TrimSpace(string(out))
			if len(tail) > 1000 {
				tail = "..." + tail[len(tail)-1000:]
			}
			harnessBuild.err = fmt.Errorf("%s: %w: %s", script, err, tail)
			return
		}
		fmt.Fprintf(os.Stderr, "integration_test: built the local images in %s\n", time.Since(start).Round(time.Second))
	})
	return harnessBuild.err
}

// harnessFindUp looks for rel in the working directory (the package's, under
// go test) and its parents.
func harnessFindUp(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s not found above the working directory", rel)
		}
		dir = parent
	}
}

// --- Redis -----------------------------------------------------------------

func harnessStartRedis() (string, error) {
	const port = "6379/tcp"
	image, err := harnessRedisImage.resolve()
	if err != nil {
		return "", err
	}
	c, err := harnessRun(image,
		&harnessReady{port: port, check: harnessRedisPing, timeout: harnessStartupTimeout},
		testcontainers.WithExposedPorts(port),
		harnessPublishLoopback(port),
		testcontainers.WithCmd("redis-server", "--port", "6379", "--save", "", "--appendonly", "no", "--protected-mode", "no"),
	)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return harnessTargetAddr(ctx, c, port)
}

// harnessStartRedisCluster starts three cluster-enabled Redis containers on
// host networking, at free 127.0.0.1 ports, and joins them into a cluster.
// A clash for a port (taken between choosing and binding) gets a retry.
func harnessStartRedisCluster() ([]string, error) {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var addrs []string
		if addrs, err = harnessTryStartRedisCluster(); err == nil {
			return addrs, nil
		}
		if _, derr := harnessDockerClient(); derr != nil {
			return nil, err
		}
		if errors.Is(err, errHarnessNoRetry) {
			return nil, err
		}
	}
	return nil, err
}

var errHarnessNoRetry = errors.New("not retried")

func harnessTryStartRedisCluster() ([]string, error) {
	if _, err := harnessDockerClient(); err != nil {
		return nil, err
	}
	image, err := harnessRedisImage.resolve()
	if err != nil {
		return nil, fmt.Errorf("%w (%w)", err, errHarnessNoRetry)
	}
	ports, err := harnessFreePorts(2 * harnessClusterMasters)
	if err != nil {
		return nil, err
	}
	n := harnessClusterMasters
	addrs := make([]string, n)
	containers := make([]*testcontainers.DockerContainer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		port, busPort := ports[i], ports[n+i]
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := strconv.Itoa(port)
			containers[i], errs[i] = harnessRun(image,
				&harnessReady{port: p + "/tcp", check: harnessRedisPing, timeout: harnessStartupTimeout},
				testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
					hc.NetworkMode = "host"
					hc.PortBindings = nil
				}),
				testcontainers.WithCmd("redis-server",
					"--port", p,
					"--bind", "127.0.0.1",
					"--protected-mode", "no",
					"--cluster-enabled", "yes",
					"--cluster-port", strconv.Itoa(busPort),
					"--cluster-config-file", "nodes-"+p+".conf",
					"--cluster-node-timeout", "5000",
					"--cluster-announce-ip", "127.0.0.1",
					"--save", "", "--appendonly", "no"),
			)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		harnessRemove(containers)
		return nil, err
	}

	ctx, cancel := context.WithTimeout(context.Background(), harnessClusterTimeout)
	defer cancel()
	if err := harnessCreateCluster(ctx, addrs, ports[n:]); err != nil {
		harnessRemove(containers)
		return nil, fmt.Errorf("create Redis Cluster on %v: %w", addrs, err)
	}
	return addrs, nil
}

// harnessRemove terminates containers started for an attempt that failed.
func harnessRemove(cs []*testcontainers.DockerContainer) {
	removed := map[string]bool{}
	for _, c := range cs {
		if c != nil && harnessTerminate(context.Background(), c) == nil {
			removed[c.GetContainerID()] = true
		}
	}
	harnessContainers.mu.Lock()
	defer harnessContainers.mu.Unlock()
	harnessContainers.list = slices.DeleteFunc(harnessContainers.list, func(c testcontainers.Container) bool {
		return removed[c.GetContainerID()]
	})
}

// harnessFreePorts returns n distinct free TCP ports on 127.0.0.1.
func harnessFreePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// harnessCreateCluster turns empty cluster-enabled nodes into one cluster, as
// redis-cli --cluster create does: distinct config epochs, a contiguous slot
// range per node, CLUSTER MEET, then cluster_state:ok everywhere.
func harnessCreateCluster(ctx context.Context, addrs []string, busPorts []int) error {
	const slots = 16384
	n := len(addrs)
	for i, addr := range addrs {
		lo, hi := i*slots/n, (i+1)*slots/n-1
		if _, err := harnessRESP(ctx, addr, "CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1)); err != nil {
			return err
		}
		if _, err := harnessRESP(ctx, addr, "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			return err
		}
	}
	for i := 1; i < n; i++ {
		host, port, _ := net.SplitHostPort(addrs[i])
		if _, err := harnessRESP(ctx, addrs[0], "CLUSTER", "MEET", host, port, strconv.Itoa(busPorts[i])); err != nil {
			return err
		}
	}
	return harnessWaitClusterOK(ctx, addrs, n)
}

// harnessWaitClusterOK waits until every node reports cluster_state:ok, all
// slots ok, and (if known > 0) that many known nodes, and at least three
// masters (nodes that own slots).
func harnessWaitClusterOK(ctx context.Context, addrs []string, known int) error {
	var last error
	for {
		last = nil
		for _, addr := range addrs {
			info, err := harnessRESP(ctx, addr, "CLUSTER", "INFO")
			if err != nil {
				last = err
				break
			}
			fields := harnessInfoFields(info)
			switch {
			case fields["cluster_state"] != "ok":
				last = fmt.Errorf("%s: cluster_state:%s", addr, fields["cluster_state"])
			case fields["cluster_slots_ok"] != "16384":
				last = fmt.Errorf("%s: cluster_slots_ok:%s", addr, fields["cluster_slots_ok"])
			case known > 0 && fields["cluster_known_nodes"] != strconv.Itoa(known):
				last = fmt.Errorf("%s: cluster_known_nodes:%s, want %d", addr, fields["cluster_known_nodes"], known)
			default:
				if size, _ := strconv.Atoi(fields["cluster_size"]); size < harnessClusterMasters {
					last = fmt.Errorf("%s: cluster_size:%s, want at least %d masters", addr, fields["cluster_size"], harnessClusterMasters)
				}
			}
			if last != nil {
				break
			}
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ok: %w", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// harnessInfoFields parses "key:value" lines of an INFO-style reply.
func harnessInfoFields(info string) map[string]string {
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	return fields
}

// --- Memcached ---------------------------------------------------------------

// harnessStartMemcached starts n memcached containers concurrently and
// returns the addresses of those that started, with the first error.
//
// "-u nobody" is passed because memcached refuses to run as root without -u;
// it reads -u only when started as root, so it does nothing in the official
// image (which runs as user memcache) or in cachekit-test/memcached:local
// (USER 65534:65534), and makes root-running images work.
func harnessStartMemcached(n int) ([]string, error) {
	const port = "11211/tcp"
	image, err := harnessMemcachedImage.resolve()
	if err != nil {
		return nil, err
	}
	addrs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := harnessRun(image,
				&harnessReady{port: port, check: harnessMemcachedVersion, timeout: harnessStartupTimeout},
				testcontainers.WithExposedPorts(port),
				harnessPublishLoopback(port),
				testcontainers.WithCmd("memcached", "-p", "11211", "-m", "64", "-c", "4096", "-U", "0", "-u", "nobody"),
			)
			if err != nil {
				errs[i] = err
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			addrs[i], errs[i] = harnessTargetAddr(ctx, c, port)
		}()
	}
	wg.Wait()
	var ok []string
	for i := range n {
		if errs[i] == nil {
			ok = append(ok, addrs[i])
		}
	}
	return ok, errors.Join(errs...)
}

// --- Leaving nothing behind ------------------------------------------------------

// harnessNamespaces is every namespace a test wrote in (sweepNamespace).
var harnessNamespaces struct {
	mu  sync.Mutex
	set map[string]bool
}

// sweepNamespace records that a test writes keys in namespace ns and returns
// ns. After the tests, TestMain deletes every key of the recorded namespaces
// from the servers given by address (containers are removed anyway), so that
// a run leaves nothing behind on a server it was pointed at: Clear can't do
// that on Memcached, where it moves the namespace to a new generation and
// leaves the old keys to age out (never, without a TTL).
func sweepNamespace(ns string) string {
	harnessNamespaces.mu.Lock()
	defer harnessNamespaces.mu.Unlock()
	if harnessNamespaces.set == nil {
		harnessNamespaces.set = map[string]bool{}
	}
	harnessNamespaces.set[ns] = true
	return ns
}

// harnessSweep deletes the keys of the recorded namespaces from every
// server given by address, and reports how many it deleted where.
func harnessSweep(w io.Writer) error {
	harnessNamespaces.mu.Lock()
	set := maps.Clone(harnessNamespaces.set)
	harnessNamespaces.mu.Unlock()
	if len(set) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	report := func(what string, n int, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("sweeping %s: %w", what, err))
		}
		if n > 0 {
			fmt.Fprintf(w, "integration_test: deleted %d key(s) the tests left in their namespaces on %s\n", n, what)
		}
	}
	// Redis: every database the tests use is 0 (15 is flushed by its test).
	redisOpts := func(addr string) *goredis.Options {
		return &goredis.Options{Addr: addr, DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second}
	}
	if harnessRedis.err == nil && os.Getenv(harnessEnvRedisAddr) != "" && harnessRedis.addr != "" {
		rdb := goredis.NewClient(redisOpts(harnessRedis.addr))
		n, err := harnessSweepRedis(ctx, rdb, set)
		rdb.Close()
		report("Redis "+harnessRedis.addr, n, err)
	}
	if harnessCluster.err == nil && os.Getenv(harnessEnvRedisClusterAddrs) != "" && len(harnessCluster.addrs) > 0 {
		rdb := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: harnessCluster.addrs, ReadTimeout: 10 * time.Second})
		var total atomic.Int64
		err := rdb.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
			n, err := harnessSweepRedis(ctx, node, set)
			total.Add(int64(n))
			return err
		})
		rdb.Close()
		report("the Redis Cluster", int(total.Load()), err)
	}
	if harnessSentinel.err == nil && harnessSentinel.fromEnv {
		rdb := goredis.NewFailoverClient(&goredis.FailoverOptions{MasterName: harnessSentinel.master,
			SentinelAddrs: harnessSentinel.addrs, ReadTimeout: 10 * time.Second})
		n, err := harnessSweepRedis(ctx, rdb, set)
		rdb.Close()
		report("the Redis Sentinel master "+harnessSentinel.master, n, err)
	}
	if harnessTLS.err == nil && harnessTLS.fromEnv {
		host, _, _ := net.SplitHostPort(harnessTLS.addr)
		o := redisOpts(harnessTLS.addr)
		o.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		rdb := goredis.NewClient(o)
		n, err := harnessSweepRedis(ctx, rdb, set)
		rdb.Close()
		report("Redis TLS "+harnessTLS.addr, n, err)
	}
	if harnessMemcached.envChecked && harnessMemcached.envErr == nil {
		parts := map[string]bool{}
		for ns := range set {
			parts[harnessMemcachedNamespacePart(ns)] = true
		}
		for _, addr := range harnessSplitAddrs(os.Getenv(harnessEnvMemcachedAddrs)) {
			n, err := harnessSweepMemcached(ctx, addr, parts)
			report("memcached "+addr, n, err)
		}
	}
	return errors.Join(errs...)
}

// harnessRedisNamespacePart is backend/redis's form of a namespace in key
// prefixes: its ':' written "%3A" and its '%' "%25" (then ":" and the key).
func harnessRedisNamespacePart(ns string) string {
	return strings.NewReplacer("%", "%25", ":", "%3A").Replace(ns)
}

// harnessSweepRedis deletes the keys "ns:..." of the namespaces in set (as
// given, and as backend/redis writes them), in one SCAN of the database.
func harnessSweepRedis(ctx context.Context, rdb goredis.UniversalClient, namespaces map[string]bool) (int, error) {
	set := maps.Clone(namespaces)
	for ns := range namespaces {
		set[harnessRedisNamespacePart(ns)] = true
	}
	deleted := 0
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		for _, k := range batch { // one key at a time: a cluster node refuses CROSSSLOT
			n, err := rdb.Unlink(ctx, k).Result()
			if err != nil {
				return err
			}
			deleted += int(n)
		}
		batch = batch[:0]
		return nil
	}
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		for i := 0; i < len(k); i++ {
			if k[i] == ':' && set[k[:i]] {
				batch = append(batch, k)
				break
			}
		}
		if len(batch) >= 500 {
			if err := flush(); err != nil {
				return deleted, err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return deleted, err
	}
	return deleted, flush()
}

// harnessMemcachedNamespacePart is backend/memcached's form of a namespace
// in server keys ("~" + part + ":gen" and "~" + part + ":" + generation +
// ":" + key): the namespace itself when it is 1 to 64 printable ASCII bytes
// without ':' or '~' not starting with '=', else "=" + base64url(sha256).
func harnessMemcachedNamespacePart(ns string) string {
	ok := len(ns) >= 1 && len(ns) <= 64 && ns[0] != '='
	for i := 0; ok && i < len(ns); i++ {
		ok = ns[i] > ' ' && ns[i] < 0x7f && ns[i] != ':' && ns[i] != '~'
	}
	if ok {
		return ns
	}
	sum := sha256.Sum256([]byte(ns))
	return "=" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// harnessSweepMemcached lists the keys of a memcached server (lru_crawler
// metadump all) and deletes those of the namespace parts in parts.
func harnessSweepMemcached(ctx context.Context, addr string, parts map[string]bool) (int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, "lru_crawler metadump all\r\n"); err != nil {
		return 0, err
	}
	var doomed []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, fmt.Errorf("metadump: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "END" {
			break
		}
		if strings.HasPrefix(line, "ERROR") || strings.HasPrefix(line, "BUSY") || strings.HasPrefix(line, "CLIENT_ERROR") {
			return 0, fmt.Errorf("lru_crawler metadump all: %s", line)
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		raw, ok := strings.CutPrefix(fields[0], "key=")
		if !ok {
			continue
		}
		key, err := url.QueryUnescape(raw)
		if err != nil || !strings.HasPrefix(key, "~") {
			continue
		}
		part, _, ok := strings.Cut(key[1:], ":")
		if ok && parts[part] {
			doomed = append(doomed, key)
		}
	}
	deleted := 0
	for _, k := range doomed {
		if _, err := io.WriteString(conn, "delete "+k+"\r\n"); err != nil {
			return deleted, err
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return deleted, err
		}
		if strings.HasPrefix(line, "DELETED") {
			deleted++
		}
	}
	return deleted, nil
}

// --- Servers as processes: Sentinel and TLS ------------------------------------

// Without CACHEKIT_TEST_REDIS_SENTINEL_ADDRS or CACHEKIT_TEST_REDIS_TLS_ADDR,
// the harness starts those servers itself from the redis-server binary on
// this machine (CACHEKIT_TEST_REDIS_SERVER_BIN, else PATH): a master, a
// replica and three Sentinels; a TLS-only server with a certificate from a
// CA that TestMain made and made trusted (harnessMakeTestCA). They run in a
// directory named after this process, are stopped by harnessStopAll, and a
// later run kills those of a binary that was killed before it could.

const harnessProcDirPrefix = "cachekit-integration-procs-"

var harnessProcs struct {
	mu     sync.Mutex
	dir    string // this process's directory, once made
	cmds   []*exec.Cmd
	reaped bool
}

// harnessRedisBinary finds redis-server.
func harnessRedisBinary() (string, error) {
	if p := os.Getenv("CACHEKIT_TEST_REDIS_SERVER_BIN"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("no redis-server binary to start one (install Debian's redis-server, or set CACHEKIT_TEST_REDIS_SERVER_BIN)")
}

// harnessProcDir returns this process's directory for server processes,
// after removing those of earlier test processes that are gone (and killing
// their servers: processes working in that directory).
func harnessProcDir() (string, error) {
	harnessProcs.mu.Lock()
	defer harnessProcs.mu.Unlock()
	if !harnessProcs.reaped {
		harnessProcs.reaped = true
		harnessReapProcDirs()
	}
	if harnessProcs.dir == "" {
		dir := filepath.Join(os.TempDir(), harnessProcDirPrefix+strconv.Itoa(os.Getpid()))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		harnessProcs.dir = dir
	}
	return harnessProcs.dir, nil
}

func harnessReapProcDirs() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), harnessProcDirPrefix+"*"))
	for _, dir := range matches {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(dir), harnessProcDirPrefix))
		if err != nil || pid == os.Getpid() || harnessProcessAlive(pid) && harnessProcessRunning(pid) {
			continue
		}
		// redis-server rewrites its command line, so find the servers by
		// their working directory (they run with --dir).
		procs, _ := filepath.Glob("/proc/[0-9]*/cwd")
		for _, p := range procs {
			if cwd, err := os.Readlink(p); err != nil || cwd != dir {
				continue
			}
			if spid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
				if proc, err := os.FindProcess(spid); err == nil {
					_ = proc.Kill()
				}
			}
		}
		os.RemoveAll(dir)
		fmt.Fprintf(os.Stderr, "integration_test: removed %s and its servers, left by test process %d\n", dir, pid)
	}
}

// harnessStartRedisProcess starts redis-server with args(port) at a free
// port (another one if it dies) and waits until ready answers.
func harnessStartRedisProcess(name string, ready func(context.Context, string) error, args func(port int) []string) (string, error) {
	done, err := harnessBeginStart()
	if err != nil {
		return "", err
	}
	defer done()
	bin, err := harnessRedisBinary()
	if err != nil {
		return "", err
	}
	dir, err := harnessProcDir()
	if err != nil {
		return "", err
	}
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		ports, err := harnessFreePorts(1)
		if err != nil {
			return "", err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		logPath := filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, ports[0]))
		logf, err := os.Create(logPath)
		if err != nil {
			return "", err
		}
		cmd := exec.Command(bin, append(args(ports[0]), "--dir", dir)...)
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, logf, logf
		err = cmd.Start()
		logf.Close()
		if err != nil {
			return "", fmt.Errorf("start %s: %w", bin, err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		harnessProcs.mu.Lock()
		harnessProcs.cmds = append(harnessProcs.cmds, cmd)
		harnessProcs.mu.Unlock()
		last = harnessWithTimeout(30*time.Second, func(ctx context.Context) error {
			for {
				err := ready(ctx, addr)
				if err == nil {
					return nil
				}
				select {
				case <-exited:
					out, _ := os.ReadFile(logPath)
					return fmt.Errorf("%s exited: %s", name, harnessOneLine(errors.New(string(out))))
				case <-ctx.Done():
					return fmt.Errorf("%s on %s not ready: %w", name, addr, err)
				case <-time.After(100 * time.Millisecond):
				}
			}
		})
		if last == nil {
			return addr, nil
		}
		_ = cmd.Process.Kill()
	}
	return "", last
}

// harnessStopProcs stops the server processes the harness started.
func harnessStopProcs() {
	harnessProcs.mu.Lock()
	cmds, dir := harnessProcs.cmds, harnessProcs.dir
	harnessProcs.cmds, harnessProcs.dir = nil, ""
	harnessProcs.mu.Unlock()
	for _, cmd := range cmds {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, cmd := range cmds {
		for harnessProcessAlive(cmd.Process.Pid) && harnessProcessRunning(cmd.Process.Pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		_ = cmd.Process.Kill()
	}
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// harnessProcessRunning reports whether pid is not a zombie (a child that
// exited and was not reaped yet; cmd.Wait reaps it).
func harnessProcessRunning(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	return ok && !strings.HasPrefix(rest, "Z")
}

const harnessSentinelMaster = "cachekit"

// harnessStartSentinel starts a master, a replica of it and three Sentinels
// (quorum 2) monitoring it as "cachekit", and waits until every Sentinel
// sees the replica and the two others.
func harnessStartSentinel() ([]string, error) {
	common := func(port int) []string {
		return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--protected-mode", "no",
			"--save", "", "--appendonly", "no"}
	}
	master, err := harnessStartRedisProcess("sentinel-master", harnessRedisPing, common)
	if err != nil {
		return nil, err
	}
	mhost, mport, _ := net.SplitHostPort(master)
	replica, err := harnessStartRedisProcess("sentinel-replica", harnessRedisPing, func(port int) []string {
		return append(common(port), "--replicaof", mhost, mport)
	})
	if err != nil {
		return nil, err
	}
	dir, err := harnessProcDir()
	if err != nil {
		return nil, err
	}
	var sentinels []string
	for i := range 3 {
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", i))
		text := fmt.Sprintf("bind 127.0.0.1\nprotected-mode no\nsentinel monitor %s %s %s 2\n"+
			"sentinel down-after-milliseconds %s 10000\nsentinel failover-timeout %s 60000\n",
			harnessSentinelMaster, mhost, mport, harnessSentinelMaster, harnessSentinelMaster)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		addr, err := harnessStartRedisProcess("sentinel", harnessRedisPing, func(port int) []string {
			return []string{conf, "--sentinel", "--port", strconv.Itoa(port)}
		})
		if err != nil {
			return nil, err
		}
		sentinels = append(sentinels, addr)
	}
	err = harnessWithTimeout(60*time.Second, func(ctx context.Context) error {
		for {
			var last error
			if info, err := harnessRESP(ctx, replica, "INFO", "replication"); err != nil {
				last = err
			} else if harnessInfoFields(info)["master_link_status"] != "up" {
				last = fmt.Errorf("replica %s: master_link_status is not up", replica)
			}
			for _, s := range sentinels {
				if last != nil {
					break
				}
				kv, err := harnessRESPList(ctx, s, "SENTINEL", "MASTER", harnessSentinelMaster)
				if err != nil {
					last = err
					break
				}
				fields := map[string]string{}
				for i := 0; i+1 < len(kv); i += 2 {
					fields[kv[i]] = kv[i+1]
				}
				if fields["num-slaves"] != "1" || fields["num-other-sentinels"] != "2" {
					last = fmt.Errorf("sentinel %s: num-slaves %q, num-other-sentinels %q", s, fields["num-slaves"], fields["num-other-sentinels"])
				}
			}
			if last == nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("Sentinel setup not ready: %w", last)
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	return sentinels, err
}

// harnessTestCA is the CA and server certificate TestMain makes when no TLS
// server is given, for the TLS server the harness starts.
var harnessTestCA struct {
	dir                  string
	caFile, cert, keyPEM string
}

// harnessMakeTestCA writes a throw-away CA and a certificate for 127.0.0.1
// and localhost signed by it into a new directory, and returns the
// directory and the CA's file.
func harnessMakeTestCA() (dir, caFile string, err error) {
	dir, err = os.MkdirTemp("", "cachekit-test-tls")
	if err != nil {
		return "", "", err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cachekit integration_test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", "", err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(48 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	files := map[string][]byte{
		"ca.pem":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		"server.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"server.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return "", "", err
		}
	}
	harnessTestCA.dir = dir
	harnessTestCA.caFile = filepath.Join(dir, "ca.pem")
	harnessTestCA.cert = filepath.Join(dir, "server.pem")
	harnessTestCA.keyPEM = filepath.Join(dir, "server.key")
	return dir, harnessTestCA.caFile, nil
}

// harnessStartTLS starts a TLS-only redis-server with the certificate of
// harnessMakeTestCA.
func harnessStartTLS() (string, error) {
	if harnessTestCA.dir == "" {
		return "", errors.New("no test CA was made (TestMain makes one when no TLS server is given)")
	}
	return harnessStartRedisProcess("redis-tls", harnessRedisTLSPing, func(port int) []string {
		return []string{"--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--protected-mode", "no", "--save", "", "--appendonly", "no",
			"--tls-cert-file", harnessTestCA.cert, "--tls-key-file", harnessTestCA.keyPEM,
			"--tls-ca-cert-file", harnessTestCA.caFile, "--tls-auth-clients", "no"}
	})
}
