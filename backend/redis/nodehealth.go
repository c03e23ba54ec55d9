package redis

import (
	"context"
	"slices"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit/internal/breaker"
)

// Per-master circuit breakers (cluster clients).
//
// On a Redis Cluster each master fails on its own: while one is down or
// frozen (until its replica is promoted), the others keep serving their
// slots. So a cluster cache has one breaker per master, keyed by the
// master's address, instead of one for the whole client: a round trip about
// one key answers to the breaker of the master that owns the key's slot (as
// the client's current slot map says), a pipeline of several slots' commands
// answers per command (see execRedirected), and Clear's walk of a master
// answers to that master's. A master whose breaker is open fails the calls
// for its keys at once with cachekit.ErrUnavailable, and the calls for the
// other masters' keys go on as before. After a failover the slot map names
// the promoted replica, whose breaker is its own (closed), so its keys work
// again as soon as the client has reloaded the map (see reloadSlots, which a
// refused call also asks for).
//
// Round trips that name no key (the CONFIG GET behind writeError) answer to
// the whole client's breaker, as on a standalone server, and so do the keys
// whose master the client cannot name (no slot map yet).

// nodeHealth holds a cluster cache's per-master breakers.
type nodeHealth struct {
	client    *goredis.ClusterClient
	threshold int
	open      time.Duration
	fallback  *health  // the cache's whole-client breaker
	byAddr    sync.Map // node address → *health
}

func newNodeHealth(client *goredis.ClusterClient, threshold int, open time.Duration, fallback *health) *nodeHealth {
	return &nodeHealth{client: client, threshold: threshold, open: open, fallback: fallback}
}

// forKey returns the breaker of the master that owns key's slot, by the
// client's slot map.
func (n *nodeHealth) forKey(ctx context.Context, key string) *health {
	if key == "" {
		return n.fallback
	}
	node, err := n.client.MasterForKey(ctx, key)
	if err != nil || node == nil {
		return n.fallback
	}
	return n.forAddr(node.Options().Addr)
}

// forAddr returns the breaker of the node at addr.
func (n *nodeHealth) forAddr(addr string) *health {
	if h, ok := n.byAddr.Load(addr); ok {
		return h.(*health)
	}
	h, _ := n.byAddr.LoadOrStore(addr, &health{b: breaker.New(n.threshold, n.open)})
	return h.(*health)
}

// firstKey returns the key go-redis routes cmd by on a cluster: its first
// argument, or for EVAL and EVALSHA the first of its KEYS. It returns ""
// when cmd names no key.
func firstKey(cmd goredis.Cmder) string {
	args := cmd.Args()
	pos := 1
	if name, _ := args[0].(string); name == "eval" || name == "evalsha" {
		pos = 3
	}
	if len(args) > pos {
		if k, ok := args[pos].(string); ok {
			return k
		}
	}
	return ""
}

// slotTarget is what runSlots and execRedirected share about one round trip
// whose commands answer to their own masters' breakers.
type slotTarget struct {
	caller  context.Context // the caller's own context (not bounded by Timeout)
	refused bool            // a master's breaker was open: nothing was sent
}

// admit asks the breaker of every command's master, once per master,
// whether cmds may be sent. It returns the breakers per command, or the
// first refusal (every breaker it had asked is then told the call was
// dropped).
func (c *Cache) admit(ctx context.Context, t *slotTarget, cmds []goredis.Cmder) ([]*health, error) {
	hs := make([]*health, len(cmds))
	var asked []*health
	for i, cmd := range cmds {
		h := c.nodes.forKey(ctx, firstKey(cmd))
		hs[i] = h
		if slices.Contains(asked, h) {
			continue
		}
		if err := h.allow(); err != nil {
			for _, a := range asked {
				a.ignored()
			}
			t.refused = true
			c.reloadSlots()
			return nil, err
		}
		asked = append(asked, h)
	}
	return hs, nil
}

// report tells each master's breaker (hs, per command, from admit) the
// outcome of its commands: a failure if any of them could not reach it,
// else a success if any was answered, else nothing (ignored). ctx is the
// round trip's context, bounded by the cache's timeout.
func (c *Cache) report(ctx context.Context, t *slotTarget, hs []*health, cmds []goredis.Cmder) {
	type tally struct {
		h        *health
		answered bool
		failed   error
	}
	var ts []tally
	for i, cmd := range cmds {
		j := slices.IndexFunc(ts, func(x tally) bool { return x.h == hs[i] })
		if j < 0 {
			ts = append(ts, tally{h: hs[i]})
			j = len(ts) - 1
		}
		switch err := cmd.Err(); {
		case err == nil || err == goredis.Nil || isServerError(err):
			ts[j].answered = true
		case c.closed.Load() && isClientClosed(err):
		default:
			err = contextError(ctx, err)
			if outcome(t.caller, ctx, err) == breaker.Failure && ts[j].failed == nil {
				ts[j].failed = err
			}
		}
	}
	reload := false
	for _, x := range ts {
		switch {
		case x.failed != nil:
			x.h.failed(x.failed)
			reload = true
		case x.answered:
			x.h.succeeded()
		default:
			x.h.ignored()
		}
	}
	if reload {
		c.reloadSlots()
	}
}
