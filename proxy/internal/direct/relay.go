package direct

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/httpfield"
)

// The direct path's response relay: the answer's head, body and trailers
// to the client, as httputil.ReverseProxy relays them
// (FuzzDirectResponse compares them). See direct.go.

// relay relays the final answer res, read from c, to w, and returns c to
// the pool when the answer ended cleanly; stop is roundTrip's.
func (d *Forwarder) relay(w http.ResponseWriter, r *http.Request, res *http.Response, c *upConn, stop func() bool) {
	if res.StatusCode == http.StatusSwitchingProtocols {
		stop()
		c.conn.Close()
		d.hooks.Fail(w, r, errors.New("upstream switched protocols on a request that asked for none"))
		return
	}
	d.hooks.Answered(res)
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
	err := d.copyBody(w, res)
	if !stop() || err != nil {
		// Canceled (the deadline is in the past for good) or broken.
		c.conn.Close()
		if err == nil {
			err = r.Context().Err() // stop reported the context ended
		}
		d.log.Debug("upstream answer cut short", "path", r.URL.Path, "err", err)
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
func (d *Forwarder) copyBody(w http.ResponseWriter, res *http.Response) error {
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
	buf := d.buffers.Get()
	defer d.buffers.Put(buf)
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

// hopByHop are the headers removed both ways, with those the Connection
// header lists.
var hopByHop = [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf, i, ok := httpfield.NextListItem(f, 0, httpfield.ASCIISpace); ok; sf, i, ok = httpfield.NextListItem(f, i, httpfield.ASCIISpace) {
			if sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
}
