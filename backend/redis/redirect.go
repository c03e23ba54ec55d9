package redis

import (
	"context"
	"errors"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// During resharding, a cluster node answers a command for a slot it is
// giving away with MOVED or ASK (the keys are elsewhere) or TRYAGAIN (a
// multi-key command whose keys are split between the two nodes, until the
// migration of the slot's keys ends). Each of these replies means the node
// did not run the command, so resending it is safe, for writes too: the rule
// that a write whose outcome is unknown is never resent does not apply.
//
// go-redis follows MOVED and ASK itself, in pipelines per command, but only
// up to MaxRedirects times, and it resends a pipeline after TRYAGAIN only
// when the first command got it and no command is marked NoRetry (every
// write of this package is). execRedirected closes that gap for the
// cache's multi-slot pipelines: GetMany, SetMany, Delete and Clear's UNLINKs.

// redirectAttempts bounds how many times execRedirected resends the
// commands that were redirected; redirectBackoff is the first pause before a
// resend, doubled up to redirectMaxBackoff. Together they wait out a slot
// migration of a few seconds, within the operation's own deadline.
const (
	redirectAttempts   = 12
	redirectBackoff    = 4 * time.Millisecond
	redirectMaxBackoff = 256 * time.Millisecond
)

// redirected reports whether err is a reply that says the node did not run
// the command because of the slot's migration: MOVED, ASK or TRYAGAIN.
func redirected(err error) bool {
	var re goredis.Error
	if err == nil || !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK ") || strings.HasPrefix(msg, "TRYAGAIN")
}

// execRedirected sends cmds in one pipeline of first, then resends through
// the cache's cluster client (which routes each by its slot, and follows
// MOVED and ASK) every command that was redirected, with a short backoff,
// while ctx lasts. It returns the first error of any command, as
// Pipeliner.Exec does. Commands must be safe to reuse (go-redis resets a
// command's error and value when it reads its reply).
//
// With t (runSlots on a cluster), each command answers to the breaker of its
// slot's master: when any of them is open nothing is sent and the open
// breaker's error is returned; afterwards each master's breaker learns how
// its commands fared.
func (c *Cache) execRedirected(ctx context.Context, t *slotTarget, first goredis.Pipeliner, cmds []goredis.Cmder) error {
	if t != nil && c.nodes != nil {
		hs, err := c.admit(ctx, t, cmds)
		if err != nil {
			return err
		}
		defer c.report(ctx, t, hs, cmds)
	}
	for _, cmd := range cmds {
		_ = first.Process(ctx, cmd)
	}
	_, err := first.Exec(ctx)
	if err == nil || c.kind != cluster {
		return err
	}
	backoff := redirectBackoff
	for attempt := 0; attempt < redirectAttempts; attempt++ {
		var again []goredis.Cmder
		for _, cmd := range cmds {
			if redirected(cmd.Err()) {
				again = append(again, cmd)
			}
		}
		if len(again) == 0 {
			break
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return firstErr(cmds)
		case <-t.C:
		}
		backoff = min(2*backoff, redirectMaxBackoff)
		pipe := c.client.Pipeline()
		for _, cmd := range again {
			_ = pipe.Process(ctx, cmd)
		}
		_, _ = pipe.Exec(ctx)
	}
	return firstErr(cmds)
}

// noRetrySlice marks a cluster pipeline's MGET not retryable by go-redis.
// go-redis v9.22 resends a whole node's batch when its first command got a
// retryable error (TRYAGAIN among them) and no command is marked NoRetry,
// even when another command of the batch was already queued for its MOVED
// or ASK target: that command then runs on two nodes at once, into the same
// Cmd (a data race). With every command marked, go-redis only follows
// redirects; execRedirected resends the rest, and the cache retries a read
// whose connection dropped (see exchange).
type noRetrySlice struct{ *goredis.SliceCmd }

func (noRetrySlice) NoRetry() bool { return true }

// firstErr is the first error among cmds' replies, as Pipeliner.Exec
// reports it.
func firstErr(cmds []goredis.Cmder) error {
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return err
		}
	}
	return nil
}
