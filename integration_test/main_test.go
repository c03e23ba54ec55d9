package integration_test

import (
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"

	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/cachekit/cachekit/internal/testserver"
	"go.uber.org/goleak"
)

// TestMain runs the tests, then deletes the keys they left in their
// namespaces on servers given by address (sweepNamespace), prints which
// servers ran and which were missing (harnessSummary), terminates every
// container the harness started (see servers_test.go) and checks that no
// goroutine was left running (goleak): a client a test forgot to Close fails
// the run.
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
	testserver.Report = harnessReportProcess
	child := os.Getenv(decEnvChild) != "" // a process of TestDecoratorDistributedStampedeProcesses
	caFile, madeDir := os.Getenv(harnessEnvRedisTLSCAFile), ""
	if os.Getenv(harnessEnvRedisTLSAddr) == "" && !child {
		// For the TLS server the harness starts if redisTLS is called: the
		// CA must be trusted before anything loads the system roots.
		dir, ca, err := harnessMakeTestCA()
		if err != nil {
			fmt.Fprintf(os.Stderr, "integration_test: making a test CA: %v\n", err)
		} else {
			caFile, madeDir = ca, dir
		}
	}
	caDir, err := harnessTrustCA(caFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration_test: %v\n", err)
		os.Exit(2)
	}
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
	if !child {
		if err := harnessSweep(os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "integration_test: %v\n", err)
			code = 1
		}
		// Printed without -v too (the Makefile runs go test in local
		// directory mode, which shows a passing binary's output).
		if harnessSummary(os.Stdout) > 0 && harnessCI() {
			code = 1
		}
	}
	if err := harnessStopAll(); err != nil {
		fmt.Fprintf(os.Stderr, "integration_test: removing containers: %v\n", err)
		code = 1
	}
	for _, dir := range []string{caDir, madeDir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
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

// harnessTrustCA makes the certificate in the file ca (from
// CACHEKIT_TEST_REDIS_TLS_CA_FILE, or made by harnessMakeTestCA) a trusted
// root for this process, as a rediss:// URL needs, without dropping the
// system's: it copies it to a new directory and adds that to SSL_CERT_DIR,
// which crypto/x509 reads on Linux and the BSDs on first use. (SSL_CERT_FILE
// would replace the system bundle.) It returns the directory to remove
// afterwards ("" when there was nothing to do).
func harnessTrustCA(ca string) (string, error) {
	if ca == "" {
		return "", nil
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		return "", fmt.Errorf("%s: %w", harnessEnvRedisTLSCAFile, err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return "", fmt.Errorf("%s holds no PEM certificate", ca)
	}
	dir, err := os.MkdirTemp("", "cachekit-test-ca")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "cachekit-test-ca.pem"), pem, 0o644); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	dirs := os.Getenv("SSL_CERT_DIR")
	if dirs == "" {
		dirs = "/etc/ssl/certs:/etc/pki/tls/certs:/system/etc/security/cacerts" // crypto/x509's defaults
	}
	os.Setenv("SSL_CERT_DIR", dir+":"+dirs)
	return dir, nil
}
