// Package direct is gatehouse's direct forwarding path: a second
// HTTP/1.1 client beside httputil.ReverseProxy, for the bulk of proxied
// traffic — GET and HEAD without a body, not asking to upgrade, to a
// plain-HTTP upstream. It forwards in the handler's own goroutine, over a
// keep-alive pool of its own. It writes the request head straight from
// the incoming request's headers and reads the answer with
// http.ReadResponse, so a request costs no copy of the request, no header
// map for the upstream, and none of http.Transport's goroutine hand-offs.
//
// What it does is what httputil.ReverseProxy with Rewrite (this package's)
// does: the same request line, Host and headers upstream (hop-by-hop and
// Connection-listed ones removed, "Te: trailers" kept, no default
// User-Agent, Forwarded dropped), 1xx answers relayed, hop-by-hop
// response headers removed, trailers announced and relayed, streaming
// answers flushed as they come, a broken answer aborting the response.
// FuzzDirectHead compares the heads the upstream gets, FuzzDirectResponse
// what the client gets back, and package proxy's direct tests run whole
// gateways on both paths side by side.
// One difference, on purpose: after a 1xx answer ReverseProxy empties the
// response's headers, losing X-Request-Id; the direct path keeps them.
//
// A pooled connection is only reused when its last answer was read to
// the end with nothing after it, and is checked for unsolicited bytes or
// a close by the upstream before it carries a request (see idleOK): a
// byte left on a connection would otherwise become the next user's
// answer.
//
// Files: direct.go decides and sends (Eligible, ServeHTTP, the round
// trip), head.go writes the request head, relay.go relays the answer,
// pool.go keeps the connections, peek_*.go checks an idle socket.
// What is policy — which error page, which metrics — is the caller's,
// through Hooks.
package direct

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// Limits shared with the http.Transport of the reverse proxy, so both
// paths treat an upstream alike.
const (
	// MaxResponseHeaderBytes bounds an upstream's response head.
	MaxResponseHeaderBytes = 1 << 20
	// MaxIdlePerUpstream bounds the idle connections kept to one
	// upstream address.
	MaxIdlePerUpstream = 256
	// IdleConnTimeout is how long an idle connection is kept.
	IdleConnTimeout = 90 * time.Second
)

// Dialer dials upstreams, on both paths.
var Dialer = &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}

// NewTransport returns the reverse proxy's transport for the requests
// the direct path does not take, with the same limits: a keep-alive pool
// sized for a busy proxy (Go's default of 2 idle connections per host
// makes a proxy under 32 concurrent clients dial for most requests),
// bounded waits for dialing, TLS and the response headers, no proxy
// lookup from the environment, and compression passed through untouched.
func NewTransport(responseTimeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            Dialer.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    MaxIdlePerUpstream,
		IdleConnTimeout:        IdleConnTimeout,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		ResponseHeaderTimeout:  responseTimeout,
		MaxResponseHeaderBytes: MaxResponseHeaderBytes,
		DisableCompression:     true,
	}
}

// Max1xx bounds the informational answers relayed before the final one;
// an upstream that sends more is refused.
const Max1xx = 32

// errHeadTooLarge is the error of a response head over
// MaxResponseHeaderBytes.
var errHeadTooLarge = fmt.Errorf("upstream response headers exceeded %d bytes", MaxResponseHeaderBytes)

// Hooks is what the direct path asks of the proxy around it: the policy
// it does not decide itself.
type Hooks interface {
	// Fail answers a request the upstream did not answer (err says why):
	// nothing has been written to w.
	Fail(w http.ResponseWriter, r *http.Request, err error)
	// Answered is told of each final answer (not 1xx) before it is
	// relayed; res.Request is the incoming request.
	Answered(res *http.Response)
	// Upstream records the time from sending to the answer's head (or to
	// the failure).
	Upstream(d time.Duration)
}

// Config is one upstream's direct path.
type Config struct {
	Target       *url.URL // scheme http, no user, RawPath or Opaque
	PreserveHost bool     // send the incoming Host, not Target's
	Timeout      time.Duration
	Pool         *Pool // to Target's address
	Buffers      httputil.BufferPool
	Log          *slog.Logger
	Hooks        Hooks
}

// Forwarder forwards the requests Eligible takes to one upstream.
type Forwarder struct {
	target       *url.URL
	preserveHost bool
	timeout      time.Duration // for the response head
	pool         *Pool
	buffers      httputil.BufferPool
	log          *slog.Logger
	hooks        Hooks
}

// New returns the forwarder c describes.
func New(c Config) *Forwarder {
	return &Forwarder{target: c.Target, preserveHost: c.PreserveHost, timeout: c.Timeout, pool: c.Pool,
		buffers: c.Buffers, log: c.Log, hooks: c.Hooks}
}

// Rewrite is the httputil.ReverseProxy Rewrite the direct path matches:
// the request to target (its path joined, its query first), the incoming
// Host kept when preserveHost, and the X-Forwarded-* headers gatehouse set
// on the incoming request (ForwardedNames) copied, as ReverseProxy drops
// the client's before Rewrite runs.
func Rewrite(target *url.URL, preserveHost bool) func(*httputil.ProxyRequest) {
	return func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		if preserveHost {
			pr.Out.Host = pr.In.Host
		}
		out, in := pr.Out.Header, pr.In.Header
		for _, k := range ForwardedNames {
			if v := in[k]; v != nil {
				out[k] = v
			}
		}
	}
}

// ForwardedNames are the forwarding headers gatehouse sets on the
// incoming request and both paths send upstream.
var ForwardedNames = [...]string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// Eligible reports whether r takes the direct path: GET or HEAD, no body,
// no upgrade, an origin-form target, and nothing ReverseProxy would
// rewrite in the query (it re-encodes queries with ';' or bad escapes).
func (d *Forwarder) Eligible(r *http.Request) bool {
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

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// ServeHTTP forwards r, which Eligible took, and relays the answer.
func (d *Forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	res, c, stop, err := d.roundTrip(w, r)
	d.hooks.Upstream(time.Since(start))
	if err != nil {
		d.hooks.Fail(w, r, err)
		return
	}
	d.relay(w, r, res, c, stop)
}

// roundTrip sends r upstream and reads the final answer's head, relaying
// 1xx answers to w. A request that fails on a reused connection before any
// answer arrived (the upstream closed it in the meantime) is sent once
// more on a new one; GET and HEAD are safe to repeat. Until stop is
// called, the end of r's context unblocks the connection for good; stop
// reports false if that happened.
func (d *Forwarder) roundTrip(w http.ResponseWriter, r *http.Request) (res *http.Response, c *upConn, stop func() bool, err error) {
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
func (d *Forwarder) exchange(c *upConn, w http.ResponseWriter, r *http.Request) (res *http.Response, answered bool, err error) {
	if err := d.writeHead(c.bw, r); err != nil {
		return nil, false, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, false, err
	}
	if d.timeout > 0 {
		c.setReadDeadline(time.Now().Add(d.timeout))
	}
	c.limit = MaxResponseHeaderBytes
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
		c.limit = MaxResponseHeaderBytes // anew for each head, bytes buffered uncounted
		if res.StatusCode < 100 || res.StatusCode > 199 || res.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if n == Max1xx {
			return nil, true, fmt.Errorf("upstream sent more than %d informational answers", Max1xx)
		}
		relay1xx(w, res)
	}
	c.limit = -1
	if d.timeout > 0 {
		c.setReadDeadline(time.Time{})
	}
	return res, true, nil
}
