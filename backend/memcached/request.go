package memcached

import (
	"sync"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit/internal/breaker"
)

// Requests.
//
// Every request to a server goes through do, which applies, in order: the
// call's context (nothing is sent once it has ended), the server's circuit
// breaker, and the retry and outcome rules:
//
//   - A request that failed on a dead connection (the server closed or
//     reset it: EOF, ECONNRESET, or LivenessDialer's check) is sent once more
//     on a fresh connection, after the client's idle connections are
//     dropped, the cache's own meta connections too (after a server
//     restart they are all dead). Reads are resent
//     whatever the failure; writes only when the request surely never left
//     (found dead before writing, a failed dial or write), so that a write
//     is never applied twice.
//   - A write whose request may have reached the server but whose reply was
//     lost fails with an error wrapping cachekit.ErrUnknownOutcome.
//   - The breaker counts connection failures (dial errors, no reply within
//     the client's Timeout, a connection closed or reset even when fresh)
//     and successes (any reply, a miss or NOT_STORED included). A pooled
//     connection found dead, or a request not sent because the caller's
//     context ended, counts as nothing: the next request dials, and its
//     outcome counts.

// do sends one request, fn (one gomemcache call), for server key sk; write
// marks requests that change data.
func (c *Cache) do(cl *call, sk string, write bool, fn func() error) error {
	br := c.breakerFor(sk)
	for attempt := 0; ; attempt++ {
		if err := cl.begin(write); err != nil {
			return err
		}
		if err := br.Allow(); err != nil {
			return err
		}
		err := fn()
		f := classify(err)
		if f == answered {
			br.Done(breaker.Success, nil)
			return err
		}
		if attempt == 0 && deadConn(err) {
			// Probably a pooled connection the server closed: after a
			// restart every idle connection is dead. Drop them all (the
			// client stays usable) so that the next request dials, and
			// let that one tell the breaker whether the server is up.
			br.Done(breaker.Ignore, nil)
			_ = c.client.Close()
			c.meta.closeIdle(false)
			if !write || f == notSent {
				continue
			}
		} else {
			br.Done(breaker.Failure, err)
		}
		if write && f == lost {
			return unknownOutcome(err)
		}
		return err
	}
}

// getMulti gets server keys sks in one round trip: one multi-key get per
// server involved, concurrently (as gomemcache's GetMulti does). With
// per-server breakers each server's request goes through its own breaker,
// so that each failure is charged to the server that caused it, and a
// server that fails does not fail the others: getMulti then returns what
// the others answered with an *unreadError naming the servers and keys it
// could not read (the whole error when every server failed). Without
// per-server breakers, one client call: any failure fails it all.
func (c *Cache) getMulti(cl *call, sks []string) (map[string]*memcache.Item, error) {
	if c.selector == nil || len(sks) == 1 {
		return c.getMultiOne(cl, sks)
	}
	groups := map[string][]string{}
	var order []string
	for _, sk := range sks {
		a, err := c.selector.PickServer(sk)
		if err != nil {
			return nil, err
		}
		s := a.String()
		if _, ok := groups[s]; !ok {
			order = append(order, s)
		}
		groups[s] = append(groups[s], sk)
	}
	if len(groups) == 1 {
		return c.getMultiOne(cl, sks)
	}
	var (
		mu     sync.Mutex
		out    = make(map[string]*memcache.Item, len(sks))
		unread *unreadError
		wg     sync.WaitGroup
	)
	for _, s := range order {
		keys := groups[s]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var m map[string]*memcache.Item
			err := c.do(cl, keys[0], false, func() error {
				var err error
				m, err = c.client.GetMulti(keys)
				return err
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if unread == nil {
					unread = &unreadError{keys: map[string]bool{}}
				}
				unread.add(s, keys, err)
				return
			}
			for k, it := range m {
				out[k] = it
			}
		}()
	}
	wg.Wait()
	if unread != nil {
		if len(unread.servers) == len(order) {
			return nil, unread.servers[0].err // nothing read: the first server's error
		}
		return out, unread
	}
	return out, nil
}

// getMultiOne is getMulti in one client call, through the breaker of the
// first key's server.
func (c *Cache) getMultiOne(cl *call, sks []string) (map[string]*memcache.Item, error) {
	var m map[string]*memcache.Item
	err := c.do(cl, sks[0], false, func() error {
		var err error
		m, err = c.client.GetMulti(sks)
		return err
	})
	return m, err
}

// get gets one server key's item; a miss is (nil, nil).
func (c *Cache) get(cl *call, sk string) (*memcache.Item, error) {
	var it *memcache.Item
	err := c.do(cl, sk, false, func() error {
		var err error
		it, err = c.client.Get(sk)
		return err
	})
	if err == memcache.ErrCacheMiss {
		return nil, nil
	}
	return it, err
}
