package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
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
// side by side, FuzzDirectHead compares the heads and FuzzDirectResponse
// what the client gets back): the same request line, Host and headers
// upstream (hop-by-hop and Connection-listed ones removed, "Te: trailers"
// kept, no default User-Agent, Forwarded dropped), 1xx answers relayed,
// hop-by-hop response headers removed, trailers announced and relayed,
// streaming answers flushed as they come, a broken answer aborting the
// response.
// One difference, on purpose: after a 1xx answer ReverseProxy empties the
// response's headers, losing X-Request-Id; the direct path keeps them.
//
// A pooled connection is only reused when its last answer was read to
// the end with nothing after it, and is checked for unsolicited bytes or
// a close by the upstream before it carries a request (see idleOK): a
// byte left on a connection would otherwise become the next user's
// answer.
//
// Files: direct.go decides and relays the answer, direct_head.go writes
// the request head, direct_pool.go keeps the connections.

// maxResponseHeaderBytes bounds an upstream's response head, on both
// paths.
const maxResponseHeaderBytes = 1 << 20

// max1xx bounds the informational answers relayed before the final one.
const max1xx = 32

// errHeadTooLarge is the error of a response head over
// maxResponseHeaderBytes.
var errHeadTooLarge = fmt.Errorf("upstream response headers exceeded %d bytes", maxResponseHeaderBytes)

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
