package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/internal/web"
)

// newTransport returns the upstream transport: a keep-alive pool sized
// for a busy proxy (Go's default of 2 idle connections per host makes a
// proxy under 32 concurrent clients dial for most requests), bounded
// waits for dialing, TLS and the response headers, no proxy lookup from
// the environment, and compression passed through untouched.
func newTransport(responseTimeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: responseTimeout,
		DisableCompression:    true,
	}
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

// upstreamProxy builds the reverse proxy to one route's upstream. The
// identity headers are set on the incoming request before it is proxied
// (see gate.forward); Rewrite adds what gatehouse saw of the client.
// Rewrite, not Director: the reverse proxy then drops the client's
// X-Forwarded-* before Rewrite runs.
func (h *gate) upstreamProxy(rt *route, target *url.URL, transport http.RoundTripper, forwardedProto []string, preserveHost bool) *httputil.ReverseProxy {
	if rt.metrics != nil {
		transport = timedTransport{next: transport, m: rt.metrics}
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			if preserveHost {
				pr.Out.Host = pr.In.Host
			}
			out := pr.Out.Header
			if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
				// A chain survives only from a trusted proxy (strip keeps
				// it only then); gatehouse appends the peer it saw.
				if prior := pr.In.Header["X-Forwarded-For"]; len(prior) > 0 {
					ip = strings.Join(prior, ", ") + ", " + ip
				}
				out["X-Forwarded-For"] = []string{ip}
			}
			out["X-Forwarded-Host"] = []string{pr.In.Host}
			out["X-Forwarded-Proto"] = forwardedProto
		},
		ModifyResponse: func(resp *http.Response) error {
			if rt.metrics == nil {
				return nil
			}
			switch {
			case resp.StatusCode >= 500:
				rt.metrics.Count(metrics.UpstreamError)
			case resp.Request != nil && resp.Request.Header[rt.identity.user] != nil:
				rt.metrics.Count(metrics.Proxied)
			default:
				rt.metrics.Count(metrics.Public)
			}
			return nil
		},
		Transport:  transport,
		BufferPool: h.buffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			rt.metrics.Count(metrics.UpstreamError)
			h.upstreamError(w, r, err)
		},
		ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
	}
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
// when it refused or broke the connection. A client that went away gets
// nothing (there is nobody to answer).
func (h *gate) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		h.log.Debug("client went away during upstream call", "path", r.URL.Path)
		return
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		web.Fail(w, r, h.log, &web.Error{Status: http.StatusGatewayTimeout, Code: "upstream_timeout",
			Title:  "The application is taking too long",
			Detail: "The application behind gatehouse did not answer in time. Try again in a moment.", Err: err})
		return
	}
	web.Fail(w, r, h.log, &web.Error{Status: http.StatusBadGateway, Code: "upstream_unavailable",
		Title:  "The application is unavailable",
		Detail: "gatehouse could not reach the application behind it. Try again in a moment; if it keeps happening, tell your administrator.", Err: err})
}
