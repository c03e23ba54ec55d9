package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/cachekit/cachekit"
)

// TestMain runs the reader process when this test binary is started as one
// (the two-process runs below start it).
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "reader" {
		if err := readerProcess(os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// check runs the program and checks that the reader saw every write (run
// itself fails when the reader prints anything else) and that its local
// tier answered reads.
func check(t *testing.T) {
	t.Helper()
	var out strings.Builder
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{"reader: price 10.00", "reader: price 12.50", "reader: price miss", "reader: price 9.99", "answered by the local tier"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, ", 0 answered by the local tier") {
		t.Errorf("the local tier answered no read:\n%s", s)
	}
	t.Log("\n" + s)
}

func TestOneProcess(t *testing.T) {
	t.Setenv("CACHE_URL", "")
	t.Setenv("BACKPLANE_URL", "")
	check(t)
}

// TestTwoProcesses runs the writer here and the reader in a process of its
// own, on the servers of the integration tests (CACHEKIT_TEST_REDIS_ADDR,
// CACHEKIT_TEST_MEMCACHED_ADDRS).
func TestTwoProcesses(t *testing.T) {
	redisAddr := os.Getenv("CACHEKIT_TEST_REDIS_ADDR")
	if redisAddr == "" {
		t.Skip("set CACHEKIT_TEST_REDIS_ADDR (and CACHEKIT_TEST_MEMCACHED_ADDRS) to run the example across processes")
	}
	ns := "example-localtier-" + strings.ReplaceAll(t.Name(), "/", "-")
	cases := []struct{ name, cache, bp string }{
		{"redis/pubsub", "redis://" + redisAddr + "/0?namespace=" + ns, "redis://" + redisAddr + "/0?channel=" + ns},
		{"redis/tracking", "redis://" + redisAddr + "/0?namespace=" + ns, "redis://" + redisAddr + "/0?mode=tracking"},
	}
	if mc := os.Getenv("CACHEKIT_TEST_MEMCACHED_ADDRS"); mc != "" {
		cases = append(cases, struct{ name, cache, bp string }{"memcached/pubsub",
			"memcached://" + strings.Split(mc, ",")[0] + "?namespace=" + ns, "redis://" + redisAddr + "/0?channel=" + ns})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CACHE_URL", tc.cache)
			t.Setenv("BACKPLANE_URL", tc.bp)
			check(t)
			// Leave nothing behind.
			c, err := cachekit.Open(context.Background(), tc.cache)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.Clear(context.Background())
		})
	}
}
