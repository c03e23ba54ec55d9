package bench

import (
	"os"
	"testing"
)

// serverAddr returns the address in the environment variable env, or skips
// the benchmark with a message saying how to provide one.
func serverAddr(b *testing.B, env string) string {
	b.Helper()
	addr := os.Getenv(env)
	if addr == "" {
		b.Skipf("set %s to a server address to run this benchmark", env)
	}
	return addr
}
