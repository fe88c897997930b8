package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/proxy/internal/direct"
)

// newTransport returns the upstream transport of the reverse proxy
// (direct.NewTransport: tuned as the direct path is).
func newTransport(responseTimeout time.Duration) *http.Transport {
	return direct.NewTransport(responseTimeout)
}

// valueCache keeps the header values gatehouse derives from a connection's
// address and a request's host, so a kept-alive connection's requests
// share one slice instead of allocating their own. Bounded: a full map is
// emptied. Safe for concurrent use; the slices are never modified.
type valueCache struct {
	mu    sync.RWMutex
	peers map[string][]string // RemoteAddr → {ip}
	hosts map[string][]string // Host → {Host}
}

const maxCachedValues = 4096

func newValueCache() *valueCache {
	return &valueCache{peers: map[string][]string{}, hosts: map[string][]string{}}
}

func (c *valueCache) peer(remoteAddr string) []string {
	c.mu.RLock()
	v := c.peers[remoteAddr]
	c.mu.RUnlock()
	if v != nil {
		return v
	}
	ip, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return nil
	}
	v = []string{ip}
	c.store(c.peers, remoteAddr, v)
	return v
}

func (c *valueCache) host(h string) []string {
	c.mu.RLock()
	v := c.hosts[h]
	c.mu.RUnlock()
	if v != nil {
		return v
	}
	v = []string{h}
	c.store(c.hosts, h, v)
	return v
}

func (c *valueCache) store(m map[string][]string, k string, v []string) {
	c.mu.Lock()
	if len(m) >= maxCachedValues {
		clear(m)
	}
	m[k] = v
	c.mu.Unlock()
}

const copyBufferBytes = 32 << 10

// bufferPool lends the reverse proxy 32 KiB copy buffers instead of
// allocating one per response. It pools array pointers, which go in and
// out of the pool without allocating.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([copyBufferBytes]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBufferBytes]byte)[:] }

func (b *bufferPool) Put(p []byte) {
	if len(p) == copyBufferBytes {
		b.p.Put((*[copyBufferBytes]byte)(p))
	}
}

// upstreamProxy builds the way to one route's upstream: the reverse
// proxy, and the direct path beside it when the upstream allows. The
// identity headers are set on the incoming request before it is proxied
// (see gate.forward); Rewrite adds what gatehouse saw of the client
// (gate.forwarded put the X-Forwarded-* values on the incoming request).
// Rewrite, not Director: the reverse proxy then drops the client's
// X-Forwarded-* before Rewrite runs.
func (h *gate) upstreamProxy(rt *route, target *url.URL, transport http.RoundTripper, preserveHost bool) *upstream {
	transport = timedTransport{next: transport, m: rt.metrics}
	u := &upstream{rp: &httputil.ReverseProxy{
		Rewrite: direct.Rewrite(target, preserveHost),
		ModifyResponse: func(resp *http.Response) error {
			countResponse(rt, resp)
			return nil
		},
		Transport:  transport,
		BufferPool: h.buffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			h.upstreamError(w, r, rt, err)
		},
		ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
	}}
	if h.pools != nil && target.Scheme == "http" && target.RawPath == "" && target.Opaque == "" && target.User == nil {
		u.direct = direct.New(direct.Config{Target: target, PreserveHost: preserveHost, Timeout: h.upstreamTimeout,
			Pool: h.pools.Get(hostPort(target)), Buffers: h.buffers, Log: h.log, Hooks: &directHooks{h, rt}})
	}
	return u
}

// hostPort is target's address to dial, with the scheme's port when it
// names none.
func hostPort(target *url.URL) string {
	port := target.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(target.Hostname(), port)
}

// timedTransport records each upstream round trip's time to response
// headers.
type timedTransport struct {
	next http.RoundTripper
	m    *metrics.Route
}

func (t timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	t.m.Upstream(time.Since(start))
	return resp, err
}

// upstreamError answers a failed upstream call: 504 when it timed out, 502
// when it refused or broke the connection, 408 when the client sent its
// body too slowly. A client that went away gets nothing (there is nobody
// to answer). All but the 408 count as upstream errors of rt.
func (h *gate) upstreamError(w http.ResponseWriter, r *http.Request, rt *route, err error) {
	if h.bodyTooSlow(w, r, rt) {
		return
	}
	rt.metrics.Count(metrics.UpstreamError)
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		h.log.Debug("client went away during upstream call", "path", r.URL.Path)
		return
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		h.pages.Fail(w, r, h.log, &web.Error{Status: http.StatusGatewayTimeout, Code: "upstream_timeout",
			Title:  "The application is taking too long",
			Detail: "The application behind gatehouse did not answer in time. Try again in a moment.", Err: err})
		return
	}
	h.pages.Fail(w, r, h.log, &web.Error{Status: http.StatusBadGateway, Code: "upstream_unavailable",
		Title:  "The application is unavailable",
		Detail: "gatehouse could not reach the application behind it. Try again in a moment; if it keeps happening, tell your administrator.", Err: err})
}

// upstream is a route's way to its upstream: the direct path when the
// route and the request allow it, else ReverseProxy.
type upstream struct {
	rp     http.Handler
	direct *direct.Forwarder // nil: always rp
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if u.direct != nil && u.direct.Eligible(r) {
		u.direct.ServeHTTP(w, r)
		return
	}
	u.rp.ServeHTTP(w, r)
}

// directHooks are one route's policy on its direct path: the same error
// answers and metrics as its reverse proxy's.
type directHooks struct {
	h  *gate
	rt *route
}

func (d *directHooks) Fail(w http.ResponseWriter, r *http.Request, err error) {
	d.h.upstreamError(w, r, d.rt, err)
}

func (d *directHooks) Answered(res *http.Response) { countResponse(d.rt, res) }

func (d *directHooks) Upstream(t time.Duration) { d.rt.metrics.Upstream(t) }

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
