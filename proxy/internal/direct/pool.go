package direct

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"
)

// The direct path's connections: a keep-alive pool per upstream address,
// swept of idle and closed connections, and the connection type that
// checks a pooled connection is still clean before it carries a request.
// See direct.go.

// aLongTimeAgo is a deadline in the past: it makes blocked I/O return.
var aLongTimeAgo = time.Unix(1, 0)

// Pools are the direct path's keep-alive pools by upstream address,
// shared by every route and kept across reloads.
type Pools struct {
	mu sync.Mutex
	m  map[string]*Pool
}

// NewPools returns empty pools.
func NewPools() *Pools { return &Pools{m: map[string]*Pool{}} }

// Get returns the pool of connections to addr (host:port).
func (p *Pools) Get(addr string) *Pool {
	p.mu.Lock()
	defer p.mu.Unlock()
	cp := p.m[addr]
	if cp == nil {
		cp = &Pool{addr: addr}
		p.m[addr] = cp
	}
	return cp
}

// CloseIdle closes every idle connection (shutdown, tests).
func (p *Pools) CloseIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cp := range p.m {
		cp.closeIdle()
	}
}

// Run sweeps the pools every interval until ctx ends, then closes their
// idle connections.
func (p *Pools) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.CloseIdle()
			return
		case now := <-t.C:
			p.Sweep(now)
		}
	}
}

// Sweep closes the idle connections that expired or that the upstream
// closed or wrote to, as http.Transport's read loop would have noticed at
// once: without it a quiet pool would hold the sockets of connections the
// upstream gave up on.
func (p *Pools) Sweep(now time.Time) {
	p.mu.Lock()
	all := make([]*Pool, 0, len(p.m))
	for _, cp := range p.m {
		all = append(all, cp)
	}
	p.mu.Unlock()
	for _, cp := range all {
		cp.sweep(now)
	}
}

// SweepInterval is the interval gatehouse runs the pools' Run with.
const SweepInterval = 15 * time.Second

// Pool holds idle keep-alive connections to one address, the most
// recently used on top.
type Pool struct {
	addr string
	mu   sync.Mutex
	idle []*upConn
}

// take returns an idle connection fit for a request, or nil. Connections
// idle too long or failing idleOK are closed on the way.
func (p *Pool) take(now time.Time) *upConn {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if now.Sub(c.idleAt) < IdleConnTimeout && c.idleOK() {
			return c
		}
		c.conn.Close()
	}
}

// put returns a connection whose answer was read to the end.
func (p *Pool) put(c *upConn, now time.Time) {
	c.idleAt = now
	p.mu.Lock()
	// The oldest connections sit at the bottom; drop the expired ones.
	drop := 0
	for drop < len(p.idle) && now.Sub(p.idle[drop].idleAt) >= IdleConnTimeout {
		p.idle[drop].conn.Close()
		drop++
	}
	if drop > 0 {
		p.idle = append(p.idle[:0], p.idle[drop:]...)
	}
	if len(p.idle) >= MaxIdlePerUpstream {
		p.mu.Unlock()
		c.conn.Close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

func (p *Pool) sweep(now time.Time) {
	p.mu.Lock()
	keep := p.idle[:0]
	for _, c := range p.idle {
		if now.Sub(c.idleAt) < IdleConnTimeout && c.idleOK() {
			keep = append(keep, c)
		} else {
			c.conn.Close()
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	p.mu.Unlock()
}

// Idle counts the pool's idle connections.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

func (p *Pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.conn.Close()
	}
}

func (p *Pool) dial(ctx context.Context) (*upConn, error) {
	conn, err := Dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	return newUpConn(conn), nil
}

// upConn is one connection to an upstream with its buffers. Its Read
// applies the response-head limit.
type upConn struct {
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	limit  int64 // bytes the response head may still take; <0: no limit
	idleAt time.Time
	peek   *peeker

	mu       sync.Mutex // guards canceled and the deadlines against cancel
	canceled bool
	cancelFn func() // c.cancel, made once
}

func newUpConn(conn net.Conn) *upConn {
	c := &upConn{conn: conn, limit: -1}
	c.br = bufio.NewReaderSize(c, 4<<10)
	c.bw = bufio.NewWriterSize(conn, 4<<10)
	c.cancelFn = c.cancel
	c.peek = newPeeker(conn)
	return c
}

func (c *upConn) Read(p []byte) (int, error) {
	if c.limit == 0 {
		return 0, errHeadTooLarge
	}
	if c.limit > 0 && int64(len(p)) > c.limit {
		p = p[:c.limit]
	}
	n, err := c.conn.Read(p)
	if c.limit > 0 {
		c.limit -= int64(n)
	}
	return n, err
}

// idleOK reports whether an idle connection can carry a request: nothing
// is buffered from it and the upstream has neither sent anything nor
// closed it since its last answer.
func (c *upConn) idleOK() bool {
	return c.br.Buffered() == 0 && c.peek.quiet()
}

// cancel unblocks the connection's I/O for good: the request's context
// ended.
func (c *upConn) cancel() {
	c.mu.Lock()
	c.canceled = true
	c.conn.SetDeadline(aLongTimeAgo)
	c.mu.Unlock()
}

// setReadDeadline sets the read deadline unless the request was
// canceled, which keeps its deadline in the past.
func (c *upConn) setReadDeadline(t time.Time) {
	c.mu.Lock()
	if !c.canceled {
		c.conn.SetReadDeadline(t)
	}
	c.mu.Unlock()
}
