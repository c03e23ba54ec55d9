package integration_test

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"

	tclog "github.com/testcontainers/testcontainers-go/log"
	"go.uber.org/goleak"
)

// TestMain runs the tests, then terminates every container the harness
// started (see servers_test.go) and checks that no goroutine was left
// running (goleak): a client a test forgot to Close fails the run.
//
// Containers are shared by all tests and live until m.Run returns; an
// interrupt (SIGINT, SIGTERM) also removes them before the binary exits. A
// binary killed outright (go test -timeout, kill -9) leaves them behind,
// labelled with its PID: the next run removes them.
func TestMain(m *testing.M) {
	// The Ryuk reaper needs an image (testcontainers/ryuk) that can't be
	// pulled everywhere; the harness removes its own containers, so Ryuk is
	// off unless asked for (TESTCONTAINERS_RYUK_DISABLED=false).
	if _, ok := os.LookupEnv(harnessEnvRyukDisabled); !ok {
		os.Setenv(harnessEnvRyukDisabled, "true")
	}
	flag.Parse()
	if !testing.Verbose() {
		tclog.SetDefault(tclog.NewNoopLogger()) // testcontainers' chatter, in -v only
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s, ok := <-sig
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "integration_test: %v: removing containers\n", s)
		if err := harnessStopAll(); err != nil {
			fmt.Fprintf(os.Stderr, "integration_test: %v\n", err)
		}
		os.Exit(130)
	}()

	code := m.Run()

	signal.Stop(sig)
	close(sig)
	if err := harnessStopAll(); err != nil {
		fmt.Fprintf(os.Stderr, "integration_test: removing containers: %v\n", err)
		code = 1
	}
	if cli := harnessDockerConnected.Load(); cli != nil {
		_ = cli.Close()
	}
	if code == 0 {
		if err := goleak.Find(
			// Keep-alive connections of the Docker API client.
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		); err != nil {
			fmt.Fprintf(os.Stderr, "integration_test: goroutines left running after all tests (a client not closed?): %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
