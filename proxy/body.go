package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/internal/web"
)

// bodyLimit is how long a request body may take to arrive
// (server.read_body_timeout, server.min_body_rate): timeout from the
// first read, plus a second for every rate bytes received. The zero value
// sets no limit.
//
// Without it a client declaring a large body and sending a byte a second
// holds an upstream connection (and a goroutine on each side) for as
// long as it likes: upstream_timeout only starts once the body is sent.
type bodyLimit struct {
	timeout time.Duration
	rate    int64 // bytes per second; 0: timeout is a fixed limit
}

// errBodyTooSlow is the error a limited body's Read returns once the
// client has been too slow; the reverse proxy then ends the upstream
// request and its connection.
var errBodyTooSlow = errors.New("request body arrived too slowly (server.read_body_timeout, server.min_body_rate)")

// limitBody returns r with its body under the limit, read through the
// connection's read deadline (http.ResponseController), which a blocked
// Read obeys. The body is also on the request's context, where the
// reverse proxy's error handler finds it (the proxy hands that handler
// its own copy of the request, with the body wrapped). Requests without a
// body are returned as they are: among them WebSocket handshakes, so an
// upgraded connection is never limited. An Upgrade header on a request
// with a body does not exempt it (it would let any upload evade the
// limit).
func (l bodyLimit) limitBody(w http.ResponseWriter, r *http.Request) *http.Request {
	if l.timeout <= 0 || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return r
	}
	b := &slowBody{ReadCloser: r.Body, rc: http.NewResponseController(w), limit: l}
	r = r.WithContext(context.WithValue(r.Context(), slowBodyKey{}, b))
	r.Body = b
	return r
}

type slowBodyKey struct{}

// slowBody is a request body with a deadline that each read moves on by
// the bytes received. Read is called by one goroutine at a time (the
// transport's); the deadline is also read by the error handler.
type slowBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	limit bodyLimit

	start    time.Time // first read; zero before
	n        int64     // bytes read
	off      bool      // EOF seen, or deadlines unsupported: no more deadlines
	deadline atomic.Int64
	tooSlow  atomic.Bool
}

func (b *slowBody) Read(p []byte) (int, error) {
	if !b.off {
		now := time.Now()
		if b.start.IsZero() {
			b.start = now
		}
		d := b.start.Add(b.limit.timeout)
		if b.limit.rate > 0 {
			d = d.Add(time.Duration(b.n * int64(time.Second) / b.limit.rate))
		}
		if err := b.rc.SetReadDeadline(d); err != nil {
			b.off = true // a writer that cannot: no limit rather than a wrong one
		} else {
			b.deadline.Store(d.UnixNano())
		}
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrDeadlineExceeded) && !b.off:
		b.tooSlow.Store(true)
		err = errBodyTooSlow
	default:
		// At EOF the server clears the deadline itself as it starts
		// watching the connection for the client going away; setting one
		// now would cut the response that follows.
		b.off = true
	}
	return n, err
}

// expired reports whether the client was too slow: a read hit the
// deadline, or one is blocked past it (the request's context may be
// cancelled, and the proxy give up, before that read returns).
func (b *slowBody) expired() bool {
	if b.tooSlow.Load() {
		return true
	}
	d := b.deadline.Load()
	return d != 0 && !b.off && time.Now().UnixNano() >= d
}

// bodyTooSlow answers a request whose body did not arrive in time: 408,
// and the connection is closed (what is left of the body would be read
// as the next request).
func (h *gate) bodyTooSlow(w http.ResponseWriter, r *http.Request, rt *route) bool {
	b, ok := r.Context().Value(slowBodyKey{}).(*slowBody)
	if !ok || !b.expired() {
		return false
	}
	rt.metrics.Count(metrics.SlowBody)
	w.Header().Set("Connection", "close")
	h.pages.Fail(w, r, h.log, &web.Error{Status: http.StatusRequestTimeout, Code: "body_timeout",
		Title:  "The upload was too slow",
		Detail: "gatehouse stopped waiting for the body of this request because it arrived too slowly. Check the connection and try again.",
		Err:    errBodyTooSlow})
	return true
}
