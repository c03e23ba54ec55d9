// Command localtier shows two processes staying coherent: each keeps hot
// values decoded in its own memory (a Typed with a Local tier), and a write
// in one reaches the other through a backplane.
//
// With Redis, the program starts a second process (itself, as the reader)
// and writes from the first:
//
//	CACHE_URL='redis://localhost:6379/0?namespace=localtier' \
//	BACKPLANE_URL='redis://localhost:6379/0?channel=localtier' go run ./examples/localtier
//
// The cache may be Memcached, with the backplane on Redis
// (CACHE_URL='memcached://localhost:11211?namespace=localtier'), and
// BACKPLANE_URL='redis://localhost:6379/0?mode=tracking' makes the Redis
// server itself report every write to the namespace, by any client.
//
// Without BACKPLANE_URL it runs the same writer and reader as two Typed in
// one process, over the memory backend and cachekit.NewMemoryBackplane.
//
// The writer sets a price, changes it, and invalidates its tag; after each
// write it prints what the reader then read and how long after the write
// returned. The reader's local tier holds the price for an hour, so only
// the backplane can make it see a change; at the end it says how many of
// its reads its local tier answered (a miss is not kept locally: while the
// price is missing, every read goes to the cache).
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cachekit/cachekit"
	_ "github.com/cachekit/cachekit/backend/memcached" // registers memcached://
	_ "github.com/cachekit/cachekit/backend/memory"    // registers mem://
	_ "github.com/cachekit/cachekit/backend/redis"     // registers redis:// caches and backplanes
)

// roleEnv marks the reader process.
const roleEnv = "LOCALTIER_ROLE"

func main() {
	var err error
	if os.Getenv(roleEnv) == "reader" {
		err = readerProcess(os.Stdin, os.Stdout)
	} else {
		err = run(os.Stdout)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// open returns a Typed of prices with a local tier over the cache at
// cacheURL and the backplane at bpURL, and a function that closes them.
// localHits, if not nil, counts the reads the local tier answered.
func open(ctx context.Context, cacheURL, bpURL string, localHits *atomic.Int64) (*cachekit.Typed[string], func(), error) {
	c, err := cachekit.Open(ctx, cacheURL)
	if err != nil {
		return nil, nil, err
	}
	bp, err := cachekit.OpenBackplane(ctx, bpURL)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return withLocal(c, bp, localHits), func() { bp.Close(); c.Close() }, nil
}

func withLocal(c cachekit.Cache, bp cachekit.Backplane, localHits *atomic.Int64) *cachekit.Typed[string] {
	if localHits != nil {
		c = cachekit.WithHooks(c, cachekit.EventHookFunc(func(_ context.Context, ev cachekit.Event) {
			if ev.Kind == cachekit.EventLocalHit {
				localHits.Add(1)
			}
		}))
	}
	return cachekit.NewTyped[string](c, &cachekit.TypedOptions{
		// Without the backplane, a change made elsewhere would reach this
		// process after up to an hour.
		Local:     &cachekit.LocalOptions{MaxEntries: 1000, TTL: time.Hour},
		Backplane: bp,
	})
}

// reader reads "price" in a loop and prints each value it reads that
// differs from the last ("miss" for none), until it reads "done"; then it
// prints how many of its reads were local hits. It starts when a line
// arrives on start, so that the writer has cleared the key first.
func reader(ctx context.Context, prices *cachekit.Typed[string], localHits *atomic.Int64, start io.Reader, out io.Writer) error {
	if _, err := bufio.NewReader(start).ReadString('\n'); err != nil {
		return err
	}
	fmt.Fprintln(out, "reader: ready")
	last, reads := "", 0
	for {
		v, err := prices.Get(ctx, "price")
		switch {
		case errors.Is(err, cachekit.ErrNotFound):
			v = "miss"
		case err != nil:
			return err
		}
		reads++
		if v == "done" {
			fmt.Fprintf(out, "reader: %d reads, %d answered by the local tier\n", reads, localHits.Load())
			return nil
		}
		if v != last {
			fmt.Fprintf(out, "reader: price %s\n", v)
			last = v
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// readerProcess is the reader as a process of its own.
func readerProcess(in io.Reader, out io.Writer) error {
	ctx := context.Background()
	var localHits atomic.Int64
	prices, closeAll, err := open(ctx, os.Getenv("CACHE_URL"), os.Getenv("BACKPLANE_URL"), &localHits)
	if err != nil {
		return err
	}
	defer closeAll()
	defer prices.Close()
	return reader(ctx, prices, &localHits, in, out)
}

// run is the writer; it starts the reader.
func run(out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cacheURL, bpURL := os.Getenv("CACHE_URL"), os.Getenv("BACKPLANE_URL")

	var writer *cachekit.Typed[string]
	startR, startW := io.Pipe() // tells the reader to start
	fromR, toW := io.Pipe()     // the reader's output
	readerDone := make(chan error, 1)
	if bpURL == "" {
		fmt.Fprintln(out, "one process: memory backend and memory backplane (set CACHE_URL and BACKPLANE_URL for two processes)")
		c, err := cachekit.Open(ctx, "mem://?namespace=localtier")
		if err != nil {
			return err
		}
		defer c.Close()
		bp := cachekit.NewMemoryBackplane()
		defer bp.Close()
		writer = withLocal(c, bp, nil)
		var localHits atomic.Int64
		prices := withLocal(c, bp, &localHits)
		defer prices.Close()
		go func() {
			err := reader(ctx, prices, &localHits, startR, toW)
			toW.CloseWithError(err)
			readerDone <- err
		}()
	} else {
		fmt.Fprintf(out, "two processes: cache %s, backplane %s\n", cachekit.RedactURL(cacheURL), cachekit.RedactURL(bpURL))
		w, closeAll, err := open(ctx, cacheURL, bpURL, nil)
		if err != nil {
			return err
		}
		defer closeAll()
		writer = w
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, self)
		cmd.Env = append(os.Environ(), roleEnv+"=reader")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = startR, toW, os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		go func() {
			err := cmd.Wait()
			toW.CloseWithError(err)
			readerDone <- err
		}()
	}
	defer writer.Close()

	lines := bufio.NewScanner(fromR)
	// next waits for the reader's next line and prints it, with the time
	// since the write that returned at written, if any.
	next := func(written time.Time) (string, error) {
		if !lines.Scan() {
			return "", fmt.Errorf("the reader stopped: %v", lines.Err())
		}
		line := lines.Text()
		if written.IsZero() {
			fmt.Fprintln(out, line)
		} else {
			fmt.Fprintf(out, "%-24s %v after the write returned\n", line, time.Since(written).Round(10*time.Microsecond))
		}
		return line, nil
	}
	if _, err := writer.Delete(ctx, "price"); err != nil {
		return err
	}
	fmt.Fprintln(startW, "start")
	startW.Close()
	if line, err := next(time.Time{}); err != nil || line != "reader: ready" {
		return fmt.Errorf("reader: %q, %v", line, err)
	}
	if _, err := next(time.Time{}); err != nil { // its first read: a miss
		return err
	}
	for _, step := range []struct {
		what, want string
		write      func() error
	}{
		{"set price 10.00 (tag prices)", "reader: price 10.00", func() error {
			return writer.Set(ctx, "price", "10.00", cachekit.WithTags("prices"))
		}},
		{"set price 12.50 (tag prices)", "reader: price 12.50", func() error {
			return writer.Set(ctx, "price", "12.50", cachekit.WithTags("prices"))
		}},
		{"invalidate tag prices", "reader: price miss", func() error { return writer.InvalidateTags(ctx, "prices") }},
		{"set price 9.99", "reader: price 9.99", func() error { return writer.Set(ctx, "price", "9.99") }},
	} {
		time.Sleep(100 * time.Millisecond) // let the reader serve a few reads from its local tier
		fmt.Fprintf(out, "writer: %s\n", step.what)
		if err := step.write(); err != nil {
			return err
		}
		line, err := next(time.Now())
		if err != nil {
			return err
		}
		if line != step.want {
			return fmt.Errorf("the reader printed %q; want %q", line, step.want)
		}
	}
	if err := writer.Set(ctx, "price", "done"); err != nil {
		return err
	}
	line, err := next(time.Time{})
	if err != nil {
		return err
	}
	if !strings.Contains(line, "answered by the local tier") {
		return fmt.Errorf("the reader printed %q", line)
	}
	return <-readerDone
}
