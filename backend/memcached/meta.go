package memcached

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
)

// Meta commands.
//
// The versioned writes (version.go) need memcached's meta protocol: ms with
// mode E (add) or C<cas> (compare), each returning the new cas with c, and
// md with C<cas>. gomemcache does not speak it, so the cache keeps a small
// pool of connections of its own for them: idle connections by server
// address, at most the client's MaxIdleConns per server, dialed with the
// client's DialContext (so a custom, TLS or LivenessDialer dialer applies)
// and bounded by its Timeout, as gomemcache's are. The server of a key is
// the one the client's own selector picks (Options.Selector, or the
// selector the client was built with), so a meta request goes where
// gomemcache sends the key's gets. Every request goes through Cache.do, so
// the per-server breakers, the resend after a dead pooled connection and
// the ErrUnknownOutcome rule apply as to every other request.
//
// A connection is checked when dialed, before any meta command is written
// to it: "version" and "stats settings" in one write. The meta syntax used
// here (the data length as the second token of ms, the c flag returning
// the cas, md comparing C<cas>) works from memcached 1.6.13 on (1.6.10
// changed the ms syntax, 1.6.13 fixed md's compare and ms's returned cas),
// and versions mean nothing when the server runs with CAS disabled (-C).
// A server that answers anything else (an older memcached, which has no
// meta commands or reads them differently, or a server that does not
// speak memcached's text protocol at all) never receives a meta command,
// whose data block it might read as a command of its own: the method
// fails with an error wrapping cachekit.ErrUnsupported, having written
// nothing, the connection is closed, and the verdict is kept for
// metaRecheck, during which the methods fail at once without dialing.

// minMetaVersion is the oldest memcached whose meta commands behave as
// version.go needs (see above).
var minMetaVersion = [3]int{1, 6, 13}

// metaRecheck is how long a server found without usable meta commands is
// taken to stay so before it is checked again.
const metaRecheck = time.Minute

// metaPool holds the cache's idle meta connections.
type metaPool struct {
	client *memcache.Client
	sel    memcache.ServerSelector // nil: the client's placement is unknown

	mu     sync.Mutex
	idle   map[string][]*metaConn // by server address
	old    map[string]int64       // server address -> clock() when found unusable
	limit  map[string]int         // server address -> its item_size_max
	closed bool
}

// metaConn is one connection of the pool.
type metaConn struct {
	nc      net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	addr    string
	itemMax int // the server's item_size_max (0: not reported)
}

// clientSelector returns the ServerSelector client was built with, or nil.
// gomemcache keeps it in an unexported field, set once by NewFromSelector
// (or New) and never changed, which is read here through reflect: meta
// requests must go to the server gomemcache sends the key's gets to, and
// the selector is the only thing that knows which one that is. A version of
// gomemcache without that field gives nil, and the versioned methods then
// report cachekit.ErrUnsupported unless Options.Selector names the selector
// (TestClientSelector checks that the field is found).
func clientSelector(client *memcache.Client) memcache.ServerSelector {
	v := reflect.ValueOf(client).Elem().FieldByName("selector")
	if !v.IsValid() || v.Type() != reflect.TypeFor[memcache.ServerSelector]() {
		return nil
	}
	s, _ := reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem().Interface().(memcache.ServerSelector)
	return s
}

// unsupportedError reports a server (or a cache) that cannot run the
// versioned methods; it wraps cachekit.ErrUnsupported.
type unsupportedError struct{ why string }

func (e *unsupportedError) Error() string {
	return "memcached: " + e.why + " (versioned requests need memcached's meta commands: memcached 1.6.13 or later, CAS enabled)"
}

func (e *unsupportedError) Unwrap() error { return cachekit.ErrUnsupported }

// notSentError marks a failure that happened before the request was
// written (while checking a fresh connection): classify counts it as
// notSent whatever its cause.
type notSentError struct{ err error }

func (e *notSentError) Error() string {
	return "memcached: checking a new connection (request not sent): " + e.err.Error()
}

func (e *notSentError) Unwrap() error { return e.err }

// replyError is a reply line the request did not expect.
type replyError struct{ line string }

func (e *replyError) Error() string { return "memcached: unexpected reply " + strconv.Quote(e.line) }

// metaReply is a parsed meta reply: its code (HD, NS, EX, NF) and the cas
// its c flag returned (0 if none).
type metaReply struct {
	code string
	cas  uint64
}

func (p *metaPool) timeout() time.Duration {
	if p.client.Timeout != 0 {
		return p.client.Timeout
	}
	return memcache.DefaultTimeout
}

func (p *metaPool) maxIdle() int {
	if p.client.MaxIdleConns > 0 {
		return p.client.MaxIdleConns
	}
	return memcache.DefaultMaxIdleConns
}

// addr returns the server of server key sk.
func (p *metaPool) addr(sk string) (net.Addr, error) {
	if p.sel == nil {
		return nil, &unsupportedError{why: "the cache does not know which server the client sends a key to (set Options.Selector)"}
	}
	return p.sel.PickServer(sk)
}

// usable returns the server of sk and its item size limit (0: not known
// yet), or, without any i/o, an error when that server was found unable to
// run meta commands less than metaRecheck ago.
func (p *metaPool) usable(sk string) (net.Addr, int, error) {
	a, err := p.addr(sk)
	if err != nil {
		return nil, 0, err
	}
	p.mu.Lock()
	at, found := p.old[a.String()]
	limit := p.limit[a.String()]
	p.mu.Unlock()
	if found && clock()-at < int64(metaRecheck) {
		return nil, 0, &unsupportedError{why: "server " + a.String() + " was found without usable meta commands"}
	}
	return a, limit, nil
}

// itemSize bounds the size memcached gives an item of a value of n bytes
// under a server key of k bytes: its 48-byte header, the key and its NUL,
// 4 bytes of flags, the value and its "\r\n", 8 bytes of cas id.
func itemSize(k, n int) int { return n + k + 64 }

// tooLarge reports a value that would make an item larger than the
// server's limit. memcached's ms removes the key's current item when it
// cannot store the new one, whatever the mode or the cas compared, so such
// a value must never be sent.
func tooLarge(size, limit int) error {
	return fmt.Errorf("%w: the item would take %d bytes, more than the server's item size limit of %d (memcached -I)", cachekit.ErrTooLarge, size, limit)
}

// get returns an idle connection to addr, or dials and checks a new one.
func (p *metaPool) get(addr net.Addr) (*metaConn, error) {
	s := addr.String()
	p.mu.Lock()
	if list := p.idle[s]; len(list) > 0 {
		cn := list[len(list)-1]
		p.idle[s] = list[:len(list)-1]
		p.mu.Unlock()
		return cn, nil
	}
	p.mu.Unlock()
	nc, err := p.dial(addr)
	if err != nil {
		return nil, err
	}
	cn := &metaConn{nc: nc, r: bufio.NewReader(nc), w: bufio.NewWriter(nc), addr: s}
	if err := p.check(cn); err != nil {
		nc.Close()
		var ue *unsupportedError
		if errors.As(err, &ue) {
			p.mu.Lock()
			if p.old == nil {
				p.old = map[string]int64{}
			}
			p.old[s] = clock()
			p.mu.Unlock()
			return nil, err
		}
		return nil, &notSentError{err: err}
	}
	p.mu.Lock()
	delete(p.old, s)
	if cn.itemMax > 0 {
		if p.limit == nil {
			p.limit = map[string]int{}
		}
		p.limit[s] = cn.itemMax
	}
	p.mu.Unlock()
	return cn, nil
}

// dial connects to addr as gomemcache does: the client's DialContext (a
// net.Dialer without one), within the client's Timeout.
func (p *metaPool) dial(addr net.Addr) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout())
	defer cancel()
	dial := p.client.DialContext
	if dial == nil {
		d := net.Dialer{Timeout: p.timeout()}
		dial = d.DialContext
	}
	nc, err := dial(ctx, addr.Network(), addr.String())
	if err == nil {
		return nc, nil
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return nil, &memcache.ConnectTimeoutError{Addr: addr}
	}
	return nil, err
}

// check asks a fresh connection's server for its version and settings,
// and returns an *unsupportedError unless it is a memcached whose meta
// commands version.go can use (see the comment at the top).
func (p *metaPool) check(cn *metaConn) error {
	cn.nc.SetDeadline(time.Now().Add(p.timeout()))
	if _, err := cn.w.WriteString("version\r\nstats settings\r\n"); err != nil {
		return err
	}
	if err := cn.w.Flush(); err != nil {
		return err
	}
	line, err := cn.readLine()
	if err != nil {
		return err
	}
	v, ok := bytes.CutPrefix(line, []byte("VERSION "))
	if !ok {
		return &unsupportedError{why: fmt.Sprintf("server %s answered %q to version", cn.addr, line)}
	}
	if !versionAtLeast(string(v), minMetaVersion) {
		return &unsupportedError{why: fmt.Sprintf("server %s runs memcached %s", cn.addr, v)}
	}
	for range 1000 {
		line, err := cn.readLine()
		if err != nil {
			return err
		}
		switch {
		case string(line) == "END":
			return nil
		case string(line) == "STAT cas_enabled no":
			return &unsupportedError{why: fmt.Sprintf("server %s runs with CAS disabled (-C)", cn.addr)}
		case bytes.HasPrefix(line, []byte("STAT item_size_max ")):
			cn.itemMax, _ = strconv.Atoi(string(line[len("STAT item_size_max "):]))
		case !bytes.HasPrefix(line, []byte("STAT ")):
			return &unsupportedError{why: fmt.Sprintf("server %s answered %q to stats settings", cn.addr, line)}
		}
	}
	return &unsupportedError{why: fmt.Sprintf("server %s sent too many settings", cn.addr)}
}

// versionAtLeast reports whether version (as memcached's version command
// reports it: "1.6.18", maybe followed by more) is at least min.
func versionAtLeast(version string, min [3]int) bool {
	var got [3]int
	rest := version
	for i := range got {
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		n, err := strconv.Atoi(rest[:j])
		if err != nil {
			return false
		}
		got[i] = n
		rest = rest[j:]
		if i < 2 {
			if len(rest) == 0 || rest[0] != '.' {
				return false
			}
			rest = rest[1:]
		}
	}
	for i := range got {
		if got[i] != min[i] {
			return got[i] > min[i]
		}
	}
	return true
}

// readLine reads one reply line without its "\r\n".
func (cn *metaConn) readLine() ([]byte, error) {
	line, err := cn.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, &replyError{line: string(line[:min(len(line), 64)]) + "..."}
	}
	if err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(line[:len(line)-1], []byte("\r")), nil
}

// put returns a connection whose last reply was read in full to the pool,
// or closes it when the pool is closed or full.
func (p *metaPool) put(cn *metaConn) {
	p.mu.Lock()
	if !p.closed && len(p.idle[cn.addr]) < p.maxIdle() {
		if p.idle == nil {
			p.idle = map[string][]*metaConn{}
		}
		p.idle[cn.addr] = append(p.idle[cn.addr], cn)
		cn = nil
	}
	p.mu.Unlock()
	if cn != nil {
		cn.nc.Close()
	}
}

// closeIdle closes every idle connection (after a server restart they are
// all dead); with closing set, the pool takes no more.
func (p *metaPool) closeIdle(closing bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if closing {
		p.closed = true
	}
	p.mu.Unlock()
	for _, list := range idle {
		for _, cn := range list {
			cn.nc.Close()
		}
	}
}

// roundTrip sends one meta request (head, then data and "\r\n" when
// withData, making an item of size bytes) to addr and reads its reply
// line. It is one
// gomemcache-like request for Cache.do: a dial, check or write failure
// means nothing was sent; a read failure, that the reply was lost. Every
// failure and every reply other than HD, NS, EX and NF closes the
// connection.
func (p *metaPool) roundTrip(addr net.Addr, head []byte, data []byte, withData bool, size int) (metaReply, error) {
	cn, err := p.get(addr)
	if err != nil {
		return metaReply{}, err
	}
	if cn.itemMax > 0 && size > cn.itemMax { // learnt from a fresh connection's check
		p.put(cn)
		return metaReply{}, tooLarge(size, cn.itemMax)
	}
	r, err := cn.exchange(p.timeout(), head, data, withData)
	if err != nil {
		cn.nc.Close()
		return metaReply{}, err
	}
	p.put(cn)
	return r, nil
}

func (cn *metaConn) exchange(timeout time.Duration, head, data []byte, withData bool) (metaReply, error) {
	cn.nc.SetDeadline(time.Now().Add(timeout))
	cn.w.Write(head)
	if withData {
		cn.w.Write(data)
		cn.w.WriteString("\r\n")
	}
	if err := cn.w.Flush(); err != nil {
		return metaReply{}, err
	}
	line, err := cn.readLine()
	if err != nil {
		return metaReply{}, err
	}
	return parseMetaReply(line)
}

// parseMetaReply reads a reply line of ms or md.
func parseMetaReply(line []byte) (metaReply, error) {
	fields := bytes.Fields(line)
	if len(fields) == 0 {
		return metaReply{}, unknownOutcome(&replyError{line: string(line)})
	}
	r := metaReply{code: string(fields[0])}
	switch r.code {
	case "HD", "NS", "EX", "NF":
	case "SERVER_ERROR":
		// Not stored; but memcached's ms removes the key's current item
		// when it cannot allocate the new one (too large, or out of
		// memory), whatever the mode or the cas compared.
		return metaReply{}, unknownOutcome(clientError(&replyError{line: string(line) + " (memcached may have removed the key's current value)"}))
	case "CLIENT_ERROR", "ERROR":
		// Refused: nothing was changed.
		return metaReply{}, &replyError{line: string(line)}
	default:
		return metaReply{}, unknownOutcome(&replyError{line: string(line)})
	}
	for _, f := range fields[1:] {
		if f[0] == 'c' {
			n, err := strconv.ParseUint(string(f[1:]), 10, 64)
			if err != nil {
				return metaReply{}, unknownOutcome(&replyError{line: string(line)})
			}
			r.cas = n
		}
	}
	return r, nil
}

// metaRequest sends one meta request for server key sk through do, as a
// write: see roundTrip. A value too large for the server's items is
// refused before anything is sent.
func (c *Cache) metaRequest(cl *call, sk string, head, data []byte, withData bool) (metaReply, error) {
	addr, limit, err := c.meta.usable(sk)
	if err != nil {
		return metaReply{}, err
	}
	size := 0
	if withData {
		size = itemSize(len(sk), len(data))
	}
	if limit > 0 && size > limit {
		return metaReply{}, tooLarge(size, limit)
	}
	var r metaReply
	err = c.do(cl, sk, true, func() error {
		var err error
		r, err = c.meta.roundTrip(addr, head, data, withData, size)
		return err
	})
	return r, err
}

// metaSet sends ms for server key sk: an add (mode E) when cas is 0, else
// a store on condition that the item's cas is still cas; flags abs and
// expiration exp as Set sends them.
func (c *Cache) metaSet(cl *call, sk string, value []byte, abs uint32, exp int32, cas uint64) (metaReply, error) {
	head := make([]byte, 0, len(sk)+64)
	head = append(head, "ms "...)
	head = append(head, sk...)
	head = append(head, ' ')
	head = strconv.AppendInt(head, int64(len(value)), 10)
	if exp != 0 {
		head = append(head, " T"...)
		head = strconv.AppendInt(head, int64(exp), 10)
	}
	head = append(head, " F"...)
	head = strconv.AppendUint(head, uint64(abs), 10)
	if cas == 0 {
		head = append(head, " ME"...)
	} else {
		head = append(head, " C"...)
		head = strconv.AppendUint(head, cas, 10)
	}
	head = append(head, " c\r\n"...)
	return c.metaRequest(cl, sk, head, value, true)
}

// metaDelete sends md for server key sk on condition that the item's cas
// is still cas.
func (c *Cache) metaDelete(cl *call, sk string, cas uint64) (metaReply, error) {
	head := make([]byte, 0, len(sk)+32)
	head = append(head, "md "...)
	head = append(head, sk...)
	head = append(head, " C"...)
	head = strconv.AppendUint(head, cas, 10)
	head = append(head, "\r\n"...)
	return c.metaRequest(cl, sk, head, nil, false)
}
