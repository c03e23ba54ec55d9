package main

import (
	"io"
	"os"
	"strings"
	"testing"
)

// TestQuickstart runs the program on the memory backend and checks that
// what it prints about the TTL is true.
func TestQuickstart(t *testing.T) {
	t.Setenv("CACHE_URL", "")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	err = run()
	os.Stdout = stdout
	w.Close()
	b, _ := io.ReadAll(r) // the output is far smaller than a pipe's buffer
	out := string(b)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	for _, want := range []string{"before set, miss: true", "then a miss", "(at least its TTL: true)", "loads so far: 1", "views: 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
