package memcached

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
)

// Contexts.
//
// gomemcache takes no context, so a call whose context can end runs its
// requests on a goroutine and returns when the context ends; the requests
// it abandons that way finish or fail within the client's Timeout. Two rules
// keep an abandoned call from doing harm:
//
//   - No request is sent after the call's context has ended: the goroutine
//     asks its call (begin) before each request, and the call, once
//     abandoned, says no. A write abandoned before its request went out
//     returns the plain context error: it did nothing and never will.
//   - A write abandoned after its request went out may still land. It
//     returns the context error wrapping cachekit.ErrUnknownOutcome, and it
//     is registered until its goroutine ends: a later write to the same key
//     through the same client (or a Clear of the namespace) waits for it,
//     within its own context, so an abandoned write never lands after a
//     later successful one.

// call is one Cache method call as its requests see it. A nil *call is a
// call whose context can never end, running on the caller's goroutine.
type call struct {
	ctx      context.Context
	state    atomic.Uint32
	finished chan struct{} // closed when the goroutine's fn has returned
	err      error         // fn's result, set before finished is closed
}

const (
	callAbandoned = 1 << iota // the caller returned: send nothing more
	callWrote                 // a write request was started
)

// begin is called before each request; it returns an error, and the
// request must not be sent, once the call's context has ended.
func (cl *call) begin(write bool) error {
	if cl == nil {
		return nil
	}
	if err := cl.ctx.Err(); err != nil {
		return err
	}
	for {
		s := cl.state.Load()
		if s&callAbandoned != 0 {
			return cl.ctx.Err()
		}
		if !write || s&callWrote != 0 {
			return nil
		}
		if cl.state.CompareAndSwap(s, s|callWrote) {
			return nil
		}
	}
}

// abandon marks the call abandoned and reports whether a write request had
// been started.
func (cl *call) abandon() (wrote bool) {
	for {
		s := cl.state.Load()
		if cl.state.CompareAndSwap(s, s|callAbandoned) {
			return s&callWrote != 0
		}
	}
}

// writes names what a call may write, for ordering against abandoned
// writes: one key, several keys, or the whole namespace (Clear). The zero
// value is a read.
type writes struct {
	key  string
	keys []string
	all  bool
}

func (w writes) none() bool { return w.key == "" && w.keys == nil && !w.all }

// run calls fn, which sends its requests through c.do, and honours ctx
// although gomemcache takes none (see the comment above). A write first
// waits for earlier abandoned writes it must not overtake. Must be called
// between enter and leave.
func (c *Cache) run(ctx context.Context, w writes, fn func(cl *call) error) error {
	if !w.none() {
		if err := c.awaitAbandoned(ctx, w); err != nil {
			return err
		}
	}
	if ctx.Done() == nil {
		return fn(nil)
	}
	cl := &call{ctx: ctx, finished: make(chan struct{})}
	c.inflight.Add(1)
	go func() {
		defer c.inflight.Done()
		cl.err = fn(cl)
		close(cl.finished)
	}()
	select {
	case <-cl.finished:
		return ctxError(ctx, cl.err)
	case <-ctx.Done():
	}
	wrote := cl.abandon()
	select {
	case <-cl.finished: // finished at the same moment: keep its result
		return ctxError(ctx, cl.err)
	default:
	}
	if !wrote || w.none() {
		return ctx.Err()
	}
	c.registerAbandoned(w, cl.finished)
	return &causeError{sentinel: ctx.Err(), err: cachekit.ErrUnknownOutcome}
}

// Abandoned writes, by client, namespace and key. Shared by every Cache of
// the process, so that caches over one client order their writes too.
var abandoned struct {
	n  atomic.Int64 // registered writes; 0 makes awaitAbandoned free
	mu sync.Mutex
	m  map[orderKey][]chan struct{}
}

type orderKey struct {
	client *memcache.Client
	ns     string
	key    string
	all    bool // a Clear of the namespace
}

func (c *Cache) orderKeys(w writes) []orderKey {
	var ks []orderKey
	if w.all {
		return []orderKey{{client: c.client, ns: c.nsPart, all: true}}
	}
	if w.key != "" {
		ks = append(ks, orderKey{client: c.client, ns: c.nsPart, key: w.key})
	}
	for _, k := range w.keys {
		ks = append(ks, orderKey{client: c.client, ns: c.nsPart, key: k})
	}
	return ks
}

// registerAbandoned records an abandoned write that may still land, until
// finished is closed.
func (c *Cache) registerAbandoned(w writes, finished chan struct{}) {
	ks := c.orderKeys(w)
	abandoned.mu.Lock()
	if abandoned.m == nil {
		abandoned.m = map[orderKey][]chan struct{}{}
	}
	for _, k := range ks {
		abandoned.m[k] = append(abandoned.m[k], finished)
	}
	abandoned.n.Add(1)
	abandoned.mu.Unlock()
	c.inflight.Add(1) // legal: the caller is between enter and leave
	go func() {
		defer c.inflight.Done()
		<-finished
		abandoned.mu.Lock()
		for _, k := range ks {
			list := abandoned.m[k]
			for i, ch := range list {
				if ch == finished {
					list = append(list[:i], list[i+1:]...)
					break
				}
			}
			if len(list) == 0 {
				delete(abandoned.m, k)
			} else {
				abandoned.m[k] = list
			}
		}
		abandoned.n.Add(-1)
		abandoned.mu.Unlock()
	}()
}

// awaitAbandoned waits until no abandoned write that w must not overtake is
// still running, or until ctx ends (then nothing has been sent).
func (c *Cache) awaitAbandoned(ctx context.Context, w writes) error {
	if abandoned.n.Load() == 0 {
		return nil
	}
	var wait []chan struct{}
	abandoned.mu.Lock()
	if w.all {
		for k, list := range abandoned.m {
			if k.client == c.client && k.ns == c.nsPart {
				wait = append(wait, list...)
			}
		}
	} else {
		for _, k := range c.orderKeys(w) {
			wait = append(wait, abandoned.m[k]...)
		}
		wait = append(wait, abandoned.m[orderKey{client: c.client, ns: c.nsPart, all: true}]...)
	}
	abandoned.mu.Unlock()
	for _, ch := range wait {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
