package memcached

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/bradfitz/gomemcache/memcache"
)

// Auto-batching (Options.AutoPipeline, URL auto_pipeline=true).
//
// gomemcache has no pipelining, so the cache coalesces the single-key reads
// (Get, Exists, GetVersion) of concurrent callers into one multi-key get per
// server itself. Each server (or the whole client, when the cache does not
// know the client's selector) has a batcher that lets at most batchInflight
// requests be in flight at once:
//
//   - A caller that finds fewer in flight sends its own read at once, so a
//     lone caller pays nothing but a lock: with a context that can never
//     end it sends it on its own goroutine, as without the option; with one
//     that can, it hands the read to a goroutine (the batch runner).
//   - A caller that finds the limit reached queues its read and waits on a
//     channel together with its context. When a batch returns, its runner
//     takes every queued read (up to batchMaxKeys) and sends them as the
//     next batch: one multi-key get, with the namespace generation key
//     fetched once for the whole batch. The runner keeps going while reads
//     are queued, so under steady load no goroutine is started per call.
//
// Batching thus happens only while requests are already in flight, without
// timers: the window a queued read waits for is the round trip of the batch
// before it.
//
// A caller whose context ends returns its context's error at once. If its
// read was still queued it is dropped from its batch before the batch is
// sent: nothing is sent for a caller whose context ended before its batch
// left. (A batch resent once on a fresh connection after a dead pooled
// connection, see request.go, resends the keys it was built with.)
//
// Every batch goes through the same requests as GetMany: per-server circuit
// breakers, one resend after a dead pooled connection, errors wrapped as for
// a Get; every caller of a failed batch gets its error.

// batchInflight is how many batches one batcher keeps in flight at once
// (measured on loopback: see BENCHMARKS.md, "Memcached auto-batching").
var batchInflight = 2

// batchMaxKeys bounds the reads of one batch; more stay queued for the
// next.
const batchMaxKeys = 256

// Read states.
const (
	reqWaiting   uint32 = iota // queued
	reqTaken                   // taken into a batch being sent
	reqAbandoned               // the caller returned: drop it
)

// getReq is one queued single-key read.
type getReq struct {
	key   string // cachekit key
	state atomic.Uint32
	done  chan struct{} // receives one value once it and err are set
	it    *memcache.Item
	err   error
}

var reqPool = sync.Pool{New: func() any { return &getReq{done: make(chan struct{}, 1)} }}

// batcher queues the reads of one server.
type batcher struct {
	mu       sync.Mutex
	inflight int
	pending  []*getReq
}

// batcherFor returns the batcher of the server that holds key.
func (c *Cache) batcherFor(key string) *batcher {
	if c.batchers == nil {
		return c.batcher
	}
	addr, err := c.pickServer(key)
	if err != nil {
		return c.batcher // the request reports the error
	}
	if b := c.batchers[addr.String()]; b != nil {
		return b
	}
	return c.batcher
}

// getBatched reads key through its server's batcher; a miss is (nil, nil).
// Must be called between enter and leave.
func (c *Cache) getBatched(ctx context.Context, key string) (*memcache.Item, error) {
	b := c.batcherFor(key)
	r := reqPool.Get().(*getReq)
	r.key = key
	r.state.Store(reqWaiting)
	b.mu.Lock()
	if b.inflight < batchInflight {
		b.inflight++
		b.mu.Unlock()
		if ctx.Done() == nil {
			// Nobody can cancel this caller: send on its goroutine.
			c.sendBatch([]*getReq{r})
			<-r.done
			it, err := r.it, r.err
			c.batchDone(b)
			r.release()
			return it, err
		}
		c.inflight.Add(1) // legal: between enter and leave
		go c.runBatches(b, []*getReq{r})
	} else {
		b.pending = append(b.pending, r)
		b.mu.Unlock()
	}
	if ctx.Done() == nil {
		<-r.done
	} else {
		select {
		case <-r.done:
		case <-ctx.Done():
			select {
			case <-r.done: // answered at the same moment: keep it
			default:
				// The batch may still write r: never reuse it.
				r.state.Store(reqAbandoned)
				return nil, ctx.Err()
			}
		}
	}
	it, err := r.it, ctxError(ctx, r.err)
	r.release()
	return it, err
}

func (r *getReq) release() {
	r.it, r.err, r.key = nil, nil, ""
	reqPool.Put(r)
}

// batchDone ends a batch of b: the queued reads, if any, go out as the next
// batch on a runner goroutine.
func (c *Cache) batchDone(b *batcher) {
	b.mu.Lock()
	next := b.take()
	if next == nil {
		b.inflight--
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	c.inflight.Add(1) // legal: the caller is between enter and leave
	go c.runBatches(b, next)
}

// take removes up to batchMaxKeys queued reads (nil: none). b.mu is held.
func (b *batcher) take() []*getReq {
	n := len(b.pending)
	if n == 0 {
		return nil
	}
	if n <= batchMaxKeys {
		next := b.pending
		b.pending = make([]*getReq, 0, n)
		return next
	}
	next := b.pending[:batchMaxKeys:batchMaxKeys]
	b.pending = b.pending[batchMaxKeys:]
	return next
}

// runBatches sends batch, then the queued reads, until none is queued.
func (c *Cache) runBatches(b *batcher, batch []*getReq) {
	defer c.inflight.Done()
	for {
		c.sendBatch(batch)
		b.mu.Lock()
		batch = b.take()
		if batch == nil {
			b.inflight--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
	}
}

// sendBatch reads the keys of the live reads of batch in one multi-key get
// (with the namespace generation, as GetMany does) and answers each read.
func (c *Cache) sendBatch(batch []*getReq) {
	live := batch[:0:0]
	if len(batch) == 1 {
		live = batch
		if !batch[0].state.CompareAndSwap(reqWaiting, reqTaken) {
			return
		}
	} else {
		live = make([]*getReq, 0, len(batch))
		for _, r := range batch {
			if r.state.CompareAndSwap(reqWaiting, reqTaken) {
				live = append(live, r)
			}
		}
		if len(live) == 0 {
			return
		}
	}
	keys := make([]string, len(live))
	for i, r := range live {
		keys[i] = r.key
	}
	items, _, err := c.fetch(nil, keys)
	var given map[*memcache.Item]bool
	for i, r := range live {
		r.it, r.err = nil, err
		if err == nil {
			if it := items[i]; it != nil {
				if len(live) > 1 {
					// The same key twice in a batch: each caller owns
					// the bytes it gets.
					if given == nil {
						given = make(map[*memcache.Item]bool, len(live))
					}
					if given[it] {
						cp := *it
						cp.Value = append([]byte(nil), it.Value...)
						it = &cp
					} else {
						given[it] = true
					}
				}
				r.it = it
			}
		}
		r.done <- struct{}{}
	}
}
