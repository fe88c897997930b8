package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/metrics"
)

// The direct path forwards the bulk of proxied traffic — GET and HEAD
// without a body, not asking to upgrade, to a plain-HTTP upstream — in the
// handler's own goroutine, over a keep-alive pool of its own. It writes
// the request head straight from the incoming request's headers and
// reads the answer with http.ReadResponse, so a request costs no copy of
// the request, no header map for the upstream, and none of
// http.Transport's goroutine hand-offs. Every other request goes through
// httputil.ReverseProxy, and what the direct path does is what
// ReverseProxy with gatehouse's Rewrite does (direct_test.go runs both
// side by side, and FuzzDirectHead compares the heads): the same request
// line, Host and headers upstream (hop-by-
// hop and Connection-listed ones removed, "Te: trailers" kept, no default
// User-Agent, Forwarded dropped), 1xx answers relayed, hop-by-hop
// response headers removed, trailers announced and relayed, streaming
// answers flushed as they come, a broken answer aborting the response.
// One difference, on purpose: after a 1xx answer ReverseProxy empties the
// response's headers, losing X-Request-Id; the direct path keeps them.
//
// A pooled connection is only reused when its last answer was read to
// the end with nothing after it, and is checked for unsolicited bytes or
// a close by the upstream before it carries a request (see idleOK): a
// byte left on a connection would otherwise become the next user's
// answer.

// maxResponseHeaderBytes bounds an upstream's response head, on both
// paths.
const maxResponseHeaderBytes = 1 << 20

// max1xx bounds the informational answers relayed before the final one.
const max1xx = 32

// errHeadTooLarge is the error of a response head over
// maxResponseHeaderBytes.
var errHeadTooLarge = fmt.Errorf("upstream response headers exceeded %d bytes", maxResponseHeaderBytes)

// aLongTimeAgo is a deadline in the past: it makes blocked I/O return.
var aLongTimeAgo = time.Unix(1, 0)

// pools are the direct path's keep-alive pools by upstream address,
// shared by every route and kept across reloads.
type pools struct {
	mu sync.Mutex
	m  map[string]*connPool
}

func newPools() *pools { return &pools{m: map[string]*connPool{}} }

func (p *pools) get(addr string) *connPool {
	p.mu.Lock()
	defer p.mu.Unlock()
	cp := p.m[addr]
	if cp == nil {
		cp = &connPool{addr: addr}
		p.m[addr] = cp
	}
	return cp
}

// closeIdle closes every idle connection (shutdown, tests).
func (p *pools) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cp := range p.m {
		cp.closeIdle()
	}
}

// run sweeps the pools every interval until ctx ends, then closes their
// idle connections.
func (p *pools) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.closeIdle()
			return
		case now := <-t.C:
			p.sweep(now)
		}
	}
}

// sweep closes the idle connections that expired or that the upstream
// closed or wrote to, as http.Transport's read loop would have noticed at
// once: without it a quiet pool would hold the sockets of connections the
// upstream gave up on.
func (p *pools) sweep(now time.Time) {
	p.mu.Lock()
	all := make([]*connPool, 0, len(p.m))
	for _, cp := range p.m {
		all = append(all, cp)
	}
	p.mu.Unlock()
	for _, cp := range all {
		cp.sweep(now)
	}
}

// poolSweepInterval is how often Gateway.Run sweeps the pools.
const poolSweepInterval = 15 * time.Second

// connPool holds idle keep-alive connections to one address, the most
// recently used on top.
type connPool struct {
	addr string
	mu   sync.Mutex
	idle []*upConn
}

// take returns an idle connection fit for a request, or nil. Connections
// idle too long or failing idleOK are closed on the way.
func (p *connPool) take(now time.Time) *upConn {
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
		if now.Sub(c.idleAt) < idleConnTimeout && c.idleOK() {
			return c
		}
		c.conn.Close()
	}
}

// put returns a connection whose answer was read to the end.
func (p *connPool) put(c *upConn, now time.Time) {
	c.idleAt = now
	p.mu.Lock()
	// The oldest connections sit at the bottom; drop the expired ones.
	drop := 0
	for drop < len(p.idle) && now.Sub(p.idle[drop].idleAt) >= idleConnTimeout {
		p.idle[drop].conn.Close()
		drop++
	}
	if drop > 0 {
		p.idle = append(p.idle[:0], p.idle[drop:]...)
	}
	if len(p.idle) >= maxIdlePerUpstream {
		p.mu.Unlock()
		c.conn.Close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

func (p *connPool) sweep(now time.Time) {
	p.mu.Lock()
	keep := p.idle[:0]
	for _, c := range p.idle {
		if now.Sub(c.idleAt) < idleConnTimeout && c.idleOK() {
			keep = append(keep, c)
		} else {
			c.conn.Close()
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	p.mu.Unlock()
}

func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.conn.Close()
	}
}

func (p *connPool) dial(ctx context.Context) (*upConn, error) {
	conn, err := upstreamDialer.DialContext(ctx, "tcp", p.addr)
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

// direct forwards eligible requests of one route (see the top of the
// file); the rest go to rp.
type direct struct {
	h            *gate
	rt           *route
	pool         *connPool
	target       *url.URL
	preserveHost bool
	timeout      time.Duration // for the response head
}

// eligible reports whether r takes the direct path: GET or HEAD, no body,
// no upgrade, an origin-form target, and nothing ReverseProxy would
// rewrite in the query (it re-encodes queries with ';' or bad escapes).
func (d *direct) eligible(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.ContentLength != 0 || (r.Body != nil && r.Body != http.NoBody) || len(r.TransferEncoding) > 0 {
		return false
	}
	if r.Header["Upgrade"] != nil || r.Header["Expect"] != nil || r.URL.Opaque != "" || r.URL.RawPath != "" {
		return false
	}
	if d.preserveHost && !isASCII(r.Host) {
		return false
	}
	return plainQuery(r.URL.RawQuery)
}

// plainQuery reports whether ReverseProxy would pass q as it is.
func plainQuery(q string) bool {
	params := 1
	for i := 0; i < len(q); {
		switch q[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return false
			}
			i += 3
			continue
		case '&':
			params++
		}
		i++
	}
	return params <= 10000
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// serve forwards r and relays the answer.
func (d *direct) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	res, c, stop, err := d.roundTrip(w, r)
	d.rt.metrics.Upstream(time.Since(start))
	if err != nil {
		d.h.upstreamError(w, r, d.rt, err)
		return
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		stop()
		c.conn.Close()
		d.h.upstreamError(w, r, d.rt, errors.New("upstream switched protocols on a request that asked for none"))
		return
	}
	countResponse(d.rt, res)
	removeHopByHop(res.Header)
	dst := w.Header()
	for k, vv := range res.Header {
		if dst[k] == nil {
			dst[k] = vv
		} else {
			dst[k] = append(dst[k], vv...)
		}
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		dst.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)
	err = d.copyBody(w, res)
	if !stop() || err != nil {
		// Canceled (the deadline is in the past for good) or broken.
		c.conn.Close()
		if err == nil {
			err = r.Context().Err() // stop reported the context ended
		}
		d.h.log.Debug("upstream answer cut short", "path", r.URL.Path, "err", err)
		if r.Context().Value(http.ServerContextKey) != nil {
			// Abort the response so the client sees it incomplete.
			panic(http.ErrAbortHandler)
		}
		return
	}
	res.Body.Close() // at EOF: only fills in trailers
	if !res.Close && c.br.Buffered() == 0 {
		d.pool.put(c, time.Now())
	} else {
		c.conn.Close()
	}
	if len(res.Trailer) > 0 {
		// Chunked, so the trailers can follow.
		http.NewResponseController(w).Flush()
		if len(res.Trailer) == announced {
			for k, vv := range res.Trailer {
				dst[k] = append(dst[k], vv...)
			}
			return
		}
		for k, vv := range res.Trailer {
			for _, v := range vv {
				dst.Add(http.TrailerPrefix+k, v)
			}
		}
	}
}

// copyBody copies the answer's body, flushing after every write when it
// streams (no length, or Server-Sent Events), as ReverseProxy does.
func (d *direct) copyBody(w http.ResponseWriter, res *http.Response) error {
	if res.Body == http.NoBody {
		return nil
	}
	var flush func() error
	if res.ContentLength == -1 || isEventStream(res.Header) {
		// The head goes out now, before the first byte of the body (so
		// nothing is sniffed from it), then every write as it comes.
		flush = http.NewResponseController(w).Flush
		if err := flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
	}
	buf := d.h.buffers.Get()
	defer d.h.buffers.Put(buf)
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flush != nil {
				if err := flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func isEventStream(h http.Header) bool {
	v := h["Content-Type"]
	if len(v) == 0 || len(v[0]) < len("text/event-stream") || !strings.EqualFold(v[0][:len("text/event-stream")], "text/event-stream") {
		return false
	}
	base, _, _ := mime.ParseMediaType(v[0])
	return base == "text/event-stream"
}

// roundTrip sends r upstream and reads the final answer's head, relaying
// 1xx answers to w. A request that fails on a reused connection before any
// answer arrived (the upstream closed it in the meantime) is sent once
// more on a new one; GET and HEAD are safe to repeat. Until stop is
// called, the end of r's context unblocks the connection for good; stop
// reports false if that happened.
func (d *direct) roundTrip(w http.ResponseWriter, r *http.Request) (res *http.Response, c *upConn, stop func() bool, err error) {
	if err := checkHead(r); err != nil {
		return nil, nil, nil, err
	}
	ctx := r.Context()
	c = d.pool.take(time.Now())
	reused := c != nil
	for {
		if c == nil {
			if c, err = d.pool.dial(ctx); err != nil {
				return nil, nil, nil, err
			}
		}
		stop = context.AfterFunc(ctx, c.cancelFn)
		var answered bool
		res, answered, err = d.exchange(c, w, r)
		if err == nil {
			return res, c, stop, nil
		}
		stop()
		c.conn.Close()
		if ctx.Err() != nil {
			return nil, nil, nil, ctx.Err()
		}
		if !reused || answered {
			return nil, nil, nil, err
		}
		// The pool's other idle connections likely met the same end.
		d.pool.closeIdle()
		c, reused = nil, false
	}
}

// exchange writes the request head on c and reads the answer's head.
// answered reports whether any byte of an answer arrived.
func (d *direct) exchange(c *upConn, w http.ResponseWriter, r *http.Request) (res *http.Response, answered bool, err error) {
	if err := d.writeHead(c.bw, r); err != nil {
		return nil, false, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, false, err
	}
	if d.timeout > 0 {
		c.setReadDeadline(time.Now().Add(d.timeout))
	}
	c.limit = maxResponseHeaderBytes
	if _, err := c.br.Peek(1); err != nil {
		c.limit = -1
		return nil, false, err
	}
	for n := 0; ; n++ {
		res, err = http.ReadResponse(c.br, r)
		if err != nil {
			c.limit = -1
			return nil, true, err
		}
		c.limit = maxResponseHeaderBytes // anew for each head, bytes buffered uncounted
		if res.StatusCode < 100 || res.StatusCode > 199 || res.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if n == max1xx {
			return nil, true, fmt.Errorf("upstream sent more than %d informational answers", max1xx)
		}
		relay1xx(w, res)
	}
	c.limit = -1
	if d.timeout > 0 {
		c.setReadDeadline(time.Time{})
	}
	return res, true, nil
}

// relay1xx passes an informational answer (103 Early Hints, say) to the
// client, keeping the headers already set for the final answer.
func relay1xx(w http.ResponseWriter, res *http.Response) {
	h := w.Header()
	saved := h.Clone()
	for k, vv := range res.Header {
		h[k] = append(h[k], vv...)
	}
	w.WriteHeader(res.StatusCode)
	clear(h)
	for k, vv := range saved {
		h[k] = vv
	}
}

// checkHead refuses r as http.Transport would: for a bad value in a
// header that goes upstream (hop-by-hop ones are gone by then). It runs
// before a connection is taken, so a refused request costs none.
func checkHead(r *http.Request) error {
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		if !sentUpstream(k, conn) {
			continue
		}
		for _, v := range vv {
			if !validHeaderValue(v) {
				return fmt.Errorf("invalid header field value for %q", k)
			}
		}
	}
	return nil
}

// writeHead writes r's request line and headers for the upstream, as
// ReverseProxy with gatehouse's Rewrite and http.Transport would; r has
// passed checkHead.
func (d *direct) writeHead(bw *bufio.Writer, r *http.Request) error {
	hdr := r.Header
	conn := hdr["Connection"]
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	t := d.target
	path := r.URL.Path
	if t.Path != "" {
		path = singleJoiningSlash(t.Path, path)
	}
	if path == "" {
		path = "/"
	}
	bw.WriteString((&url.URL{Path: path}).EscapedPath())
	q := r.URL.RawQuery
	switch {
	case t.RawQuery != "" && q != "":
		bw.WriteByte('?')
		bw.WriteString(t.RawQuery)
		bw.WriteByte('&')
		bw.WriteString(q)
	case t.RawQuery != "" || q != "" || r.URL.ForceQuery:
		bw.WriteByte('?')
		bw.WriteString(t.RawQuery)
		bw.WriteString(q)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	if d.preserveHost && r.Host != "" {
		bw.WriteString(r.Host)
	} else {
		bw.WriteString(t.Host)
	}
	bw.WriteString("\r\n")
	if ua := hdr["User-Agent"]; len(ua) > 0 && ua[0] != "" && sentUpstream("User-Agent", conn) {
		writeField(bw, "User-Agent", ua[0])
	}
	for k, vv := range hdr {
		switch k {
		case "Host", "Content-Length", "User-Agent": // the request line, Host and framing say these
			continue
		}
		if !sentUpstream(k, conn) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	if te := hdr["Te"]; te != nil && listedIn(te, "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	_, err := bw.WriteString("\r\n")
	return err
}

func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(strings.Trim(v, " \t"))
	bw.WriteString("\r\n")
}

// sentUpstream reports whether the incoming request's header k goes to
// the upstream, given the Connection header's values conn: not the
// hop-by-hop ones, nor those Connection lists, nor Forwarded (gatehouse's
// X-Forwarded-* replace it); the X-Forwarded-* gatehouse set always, as
// Rewrite puts them back after ReverseProxy's hop-by-hop removal.
func sentUpstream(k string, conn []string) bool {
	switch k {
	case "Forwarded":
		return false
	}
	if slices.Contains(forwardedNames[:], k) {
		return true
	}
	return !slices.Contains(hopByHop[:], k) && (conn == nil || !listedIn(conn, k))
}

// hopByHop are the headers removed both ways, with those the Connection
// header lists.
var hopByHop = [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = strings.Trim(sf, " \t\r\n"); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
}

// listedIn reports whether the comma-separated values list the token
// name, ignoring ASCII case, as http.Header.Del would find it.
func listedIn(values []string, name string) bool {
	for _, v := range values {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if equalFoldASCII(strings.Trim(tok, " \t\r\n"), name) {
				return true
			}
		}
	}
	return false
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// validHeaderValue is RFC 9110's field-value: no control characters but
// horizontal tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func singleJoiningSlash(a, b string) string {
	aslash := strings.HasSuffix(a, "/")
	bslash := strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}

// countResponse records an upstream answer in the route's metrics.
func countResponse(rt *route, resp *http.Response) {
	switch {
	case resp.StatusCode >= 500:
		rt.metrics.Count(metrics.UpstreamError)
	case resp.Request != nil && resp.Request.Header[rt.identity.user] != nil:
		rt.metrics.Count(metrics.Proxied)
	default:
		rt.metrics.Count(metrics.Public)
	}
}

// upstream is a route's way to its upstream: the direct path when the
// route and the request allow it, else ReverseProxy.
type upstream struct {
	rp     http.Handler
	direct *direct // nil: always rp
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if u.direct != nil && u.direct.eligible(r) {
		u.direct.serve(w, r)
		return
	}
	u.rp.ServeHTTP(w, r)
}
