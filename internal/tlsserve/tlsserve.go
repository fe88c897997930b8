// Package tlsserve serves gatehouse over HTTPS itself: the certificate
// pair from tls.cert_file and tls.key_file, re-read when the files change,
// the TLS settings, and the plain HTTP listener that only redirects.
package tlsserve

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/config"
)

// Holder serves the certificate pair of two files to TLS handshakes
// (GetCertificate) and replaces it when the files change. A new pair
// that fails config.LoadKeyPair's checks is refused: the ERROR log names
// the file and the problem, and the pair loaded before keeps serving.
//
// Handshakes read the current pair without a lock; Check and Reload may
// be called from any goroutine.
type Holder struct {
	certFile, keyFile, host string
	log                     *slog.Logger
	now                     func() time.Time

	cur atomic.Pointer[tls.Certificate]

	mu  sync.Mutex // serialises reloads
	sig [2]fileSig // the files as stat saw them before the last read
}

// fileSig is what Check compares: a file's modification time and size.
type fileSig struct {
	mod  time.Time
	size int64
	err  bool
}

// NewHolder loads the pair for host (external_url's host) and returns a
// holder serving it, or the *config.KeyPairError saying what is wrong.
// now, when nil, is time.Now.
func NewHolder(certFile, keyFile, host string, log *slog.Logger, now func() time.Time) (*Holder, error) {
	if now == nil {
		now = time.Now
	}
	h := &Holder{certFile: certFile, keyFile: keyFile, host: host, log: log, now: now}
	h.sig = h.stat()
	pair, _, err := config.LoadKeyPair(certFile, keyFile, host, now())
	if err != nil {
		return nil, err
	}
	h.cur.Store(pair) // an expiry warning is the configuration's, logged with its others
	return h, nil
}

// GetCertificate returns the current pair; it is tls.Config's hook.
func (h *Holder) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return h.cur.Load(), nil
}

// Current is the pair handshakes get now.
func (h *Holder) Current() *tls.Certificate { return h.cur.Load() }

// Check reloads the pair when either file's modification time or size
// differs from what the last load saw. It costs two stat calls; the
// server calls it every few seconds. It reports whether the pair changed.
func (h *Holder) Check() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	sig := h.stat()
	if sig == h.sig {
		return false
	}
	return h.load(sig, "files changed")
}

// Reload reloads the pair now, whether the files changed or not (SIGHUP,
// a configuration reload); why names the trigger in the log. It reports
// whether the pair changed.
func (h *Holder) Reload(why string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.load(h.stat(), why)
}

// load reads and checks the pair; sig is the files' state before the
// read, remembered even when the pair is refused so that a bad pair is
// reported once, not at every Check, and a pair caught half-written (the
// certificate replaced, the key not yet) is read again once the second
// file changes.
func (h *Holder) load(sig [2]fileSig, why string) bool {
	h.sig = sig
	pair, warning, err := config.LoadKeyPair(h.certFile, h.keyFile, h.host, h.now())
	if err != nil {
		attrs := []any{"trigger", why, "err", err}
		var ke *config.KeyPairError
		if errors.As(err, &ke) {
			attrs = []any{"trigger", why, "key", ke.Key, "file", ke.File, "problem", ke.Msg}
		}
		h.log.Error("TLS certificate reload refused; the previous certificate keeps serving", attrs...)
		return false
	}
	if warning != "" {
		h.log.Warn(warning)
	}
	old := h.cur.Swap(pair)
	changed := old == nil || !old.Leaf.Equal(pair.Leaf)
	if changed {
		h.log.Info("TLS certificate loaded", "trigger", why, "file", h.certFile, "subject", pair.Leaf.Subject.String(),
			"serial", pair.Leaf.SerialNumber.Text(16), "not_after", pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return changed
}

func (h *Holder) stat() [2]fileSig {
	var s [2]fileSig
	for i, name := range []string{h.certFile, h.keyFile} {
		fi, err := os.Stat(name) // follows symlinks: a Kubernetes Secret volume swaps its ..data link
		if err != nil {
			s[i].err = true
			continue
		}
		s[i] = fileSig{mod: fi.ModTime(), size: fi.Size()}
	}
	return s
}

// ServerConfig is the TLS configuration of the user-facing listener:
// TLS 1.2 or later with Go's default cipher suites and curves, HTTP/2
// offered first (ALPN h2, then http/1.1), the certificate from h.
func ServerConfig(h *Holder) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: h.GetCertificate,
	}
}

// healthPath is answered on the redirect listener too, so that a load
// balancer probing plain HTTP sees a live process.
const healthPath = "/_gatehouse/healthz"

// RedirectHandler answers plain HTTP requests with a redirect to the same
// path and query on external_url's origin: 301 for GET and HEAD, 308 for
// other methods, which keeps the method and body. The target host is the
// request's own only when it is external_url's host or a route's
// match.host (a wildcard one too), so that a forged Host header cannot
// make gatehouse redirect to another site (open redirect); otherwise it
// is external_url's host. The port is always external_url's. It serves
// GET /_gatehouse/healthz (ok) and nothing else: no proxying, no login.
func RedirectHandler(cfg *config.Config) http.Handler {
	ext := cfg.External
	var hosts []string
	for _, r := range cfg.Routes {
		if r.Match.Host != "" {
			hosts = append(hosts, r.Match.Host)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == healthPath && r.URL.RawQuery == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte("ok\n"))
			return
		}
		if !strings.HasPrefix(r.URL.Path, "/") { // OPTIONS *, CONNECT host:port
			http.Error(w, "gatehouse serves HTTPS only; use "+ext.String()+"/", http.StatusBadRequest)
			return
		}
		host := ext.Host
		if name := requestHost(r); name != ext.Hostname() && matchHost(hosts, name) {
			host = name
			if p := ext.Port(); p != "" {
				host = net.JoinHostPort(name, p)
			}
		}
		target := (&url.URL{Scheme: "https", Host: host}).String() + r.URL.RequestURI()
		code := http.StatusPermanentRedirect
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			code = http.StatusMovedPermanently
		}
		w.Header().Set("Location", target)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
	})
}

// requestHost is the request's host name, lower case, without the port.
func requestHost(r *http.Request) string {
	h := r.Host
	if name, _, err := net.SplitHostPort(h); err == nil {
		h = name
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// matchHost reports whether name is one of hosts, exactly or under a
// *.domain wildcard, as route matching reads match.host.
func matchHost(hosts []string, name string) bool {
	if name == "" || !validHost(name) {
		return false
	}
	for _, h := range hosts {
		if h == name {
			return true
		}
		if d, ok := strings.CutPrefix(h, "*"); ok && strings.HasSuffix(name, d) && len(name) > len(d) {
			return true
		}
	}
	return false
}

// validHost allows letters, digits, dots and hyphens only, so that
// nothing the client wrote can bend the redirect's URL.
func validHost(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// RedirectServer is the plain HTTP redirect listener's server, with the
// server.* header and idle timeouts of the main one.
func RedirectServer(cfg *config.Config, log *slog.Logger) *http.Server {
	s := cfg.Server
	return &http.Server{
		Addr:              cfg.TLS.RedirectHTTP,
		Handler:           RedirectHandler(cfg),
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		ReadTimeout:       s.ReadHeaderTimeout, // a redirect reads no body
		IdleTimeout:       s.IdleTimeout,
		MaxHeaderBytes:    s.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}
