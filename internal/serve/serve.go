// Package serve composes gatehouse and runs it as a server. NewGateway
// builds the session store and the metrics and the request path (package
// proxy) over them; Run loads the configuration, serves user traffic and
// the admin listener, reloads the configuration on SIGHUP or when the file
// changes, and shuts down gracefully when its context ends (SIGTERM).
package serve

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/admin"
	"github.com/gatehouse/gatehouse/internal/logsum"
	"github.com/gatehouse/gatehouse/internal/tlsserve"
	"github.com/gatehouse/gatehouse/internal/tune"
	"github.com/gatehouse/gatehouse/proxy"
)

// Options shape a run.
type Options struct {
	// ConfigPath is the configuration file.
	ConfigPath string
	// Logger receives everything; nil builds one from the configuration's
	// log section, writing to LogOutput.
	Logger    *slog.Logger
	LogOutput io.Writer
	// Reload, when set, triggers a reload on each receive (tests); the
	// server also reloads on SIGHUP.
	Reload <-chan struct{}
	// WatchEvery is how often the file is checked for changes; default
	// 2s, negative turns the watch off.
	WatchEvery time.Duration
	// Ready, when set, receives the listeners' addresses once serving.
	Ready func(addr, adminAddr string)
	// Version is logged at start.
	Version string
}

// NewLogger builds the logger a configuration asks for: JSON, or text when
// format is text, or auto and w is a terminal. Repeated identical warnings
// (one per failed request during an outage) are summarised: the first in
// full, then a count every logsum.DefaultInterval (see package logsum).
func NewLogger(w io.Writer, l config.Log) *slog.Logger {
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[l.Level]
	ho := &slog.HandlerOptions{Level: level, ReplaceAttr: durationString}
	text := l.Format == "text"
	if l.Format == "auto" || l.Format == "" {
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				text = true
			}
		}
	}
	var h slog.Handler = slog.NewJSONHandler(w, ho)
	if text {
		h = slog.NewTextHandler(w, ho)
	}
	return slog.New(logsum.New(h, logsum.DefaultInterval, logsum.DefaultMaxKeys))
}

// durationString writes durations as Go duration strings ("2s"), not
// the JSON handler's nanoseconds, so that "retry_in":"2s" reads as it is.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// Run serves until ctx ends, then drains for server.shutdown_timeout. It
// returns nil after a clean shutdown.
func Run(ctx context.Context, opts Options) error {
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return err
	}
	log := opts.Logger
	if log == nil {
		out := opts.LogOutput
		if out == nil {
			out = os.Stderr
		}
		log = NewLogger(out, cfg.Log)
	}
	redisLogs(log)
	rt := tune.Defaults()
	log.Info("go runtime", "gogc", rt.GOGC, "memory_limit", rt.MemoryLimit, "memory_limit_from", rt.LimitSource)
	gw, err := NewGateway(cfg, GatewayOptions{Logger: log})
	if err != nil {
		return err
	}
	defer gw.Close()
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	go gw.Run(runCtx)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (listen): %w", cfg.Listen, err)
	}
	conns := &connTracker{conns: map[*trackedConn]bool{}}
	srv := gw.Server()
	srv.ConnState = conns.state
	var certs *tlsserve.Holder
	if cfg.TLS.Enabled() {
		if certs, err = tlsserve.NewHolder(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.External.Hostname(), log, nil); err != nil {
			_ = ln.Close()
			return err
		}
		srv.TLSConfig = tlsserve.ServerConfig(certs)
	}
	errc := make(chan error, 3)
	go func() {
		tl := &trackedListener{Listener: ln, t: conns}
		if certs != nil {
			errc <- srv.ServeTLS(tl, "", "") // the pair comes from TLSConfig.GetCertificate
			return
		}
		errc <- srv.Serve(tl)
	}()

	var others []*http.Server // admin and redirect listeners, shut down with srv
	adminAddr, redirectAddr := "", ""
	if as := admin.Server(cfg.Admin.Listen, admin.Options{Store: gw.Store, Metrics: gw.Metrics, Token: cfg.Admin.Token, Logger: log}); as != nil {
		aln, err := net.Listen("tcp", as.Addr)
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("listen on %s (admin.listen): %w", as.Addr, err)
		}
		adminAddr = aln.Addr().String()
		others = append(others, as)
		go func() { errc <- as.Serve(aln) }()
	}
	if certs != nil && cfg.TLS.RedirectHTTP != "" {
		rs := tlsserve.RedirectServer(cfg, log)
		rln, err := net.Listen("tcp", rs.Addr)
		if err != nil {
			_ = srv.Close()
			closeAll(others)
			return fmt.Errorf("listen on %s (tls.redirect_http): %w", rs.Addr, err)
		}
		redirectAddr = rln.Addr().String()
		others = append(others, rs)
		go func() { errc <- rs.Serve(rln) }()
	}
	log.Info("gatehouse listening", "addr", ln.Addr().String(), "tls", certs != nil, "redirect_http", redirectAddr, "admin", adminAddr,
		"external_url", cfg.ExternalURL, "routes", len(cfg.Routes), "store", cfg.Session.Store, "version", opts.Version)
	if opts.Ready != nil {
		opts.Ready(ln.Addr().String(), adminAddr)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	w := &watcher{path: opts.ConfigPath}
	w.sum, _ = w.read()
	every := opts.WatchEvery
	if every == 0 {
		every = 2 * time.Second
	}
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		case <-ctx.Done():
			return shutdown(log, gw, srv, others, conns)
		case <-hup:
			reload(log, gw, opts.ConfigPath, "SIGHUP")
			reloadCerts(certs, "SIGHUP")
			w.sum, _ = w.read()
		case <-opts.Reload:
			reload(log, gw, opts.ConfigPath, "request")
			reloadCerts(certs, "request")
			w.sum, _ = w.read()
		case <-tick:
			if sum, err := w.read(); err == nil && !bytes.Equal(sum, w.sum) {
				w.sum = sum
				reload(log, gw, opts.ConfigPath, "file changed")
			}
			if certs != nil {
				certs.Check()
			}
		}
	}
}

// reloadCerts re-reads the TLS pair, when gatehouse serves TLS.
func reloadCerts(certs *tlsserve.Holder, why string) {
	if certs != nil {
		certs.Reload(why)
	}
}

func closeAll(servers []*http.Server) {
	for _, s := range servers {
		_ = s.Close()
	}
}

// redisLogs sends the Redis client's own messages (reconnects) to the
// log, at WARN, instead of its default of stderr. The client's logger is
// process-wide; gatehouse sets it once per run.
func redisLogs(log *slog.Logger) {
	redis.SetLogger(redisLogger{log})
}

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "msg_detail", fmt.Sprintf(format, v...))
}

// reload loads the file and, when it is valid, switches to it; when it is
// not, it keeps the running configuration and logs every problem.
func reload(log *slog.Logger, gw *proxy.Gateway, path, why string) {
	cfg, err := config.Load(path)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			problems := make([]string, len(ce.Problems))
			for i, p := range ce.Problems {
				problems[i] = p.String()
			}
			log.Error("configuration reload refused; the running configuration stays", "trigger", why, "file", path, "problems", problems)
		} else {
			log.Error("configuration reload refused; the running configuration stays", "trigger", why, "file", path, "err", err)
		}
		return
	}
	fixed, err := gw.Reload(cfg)
	if err != nil {
		log.Error("configuration reload failed; the running configuration stays", "trigger", why, "err", err)
		return
	}
	if len(fixed) > 0 {
		log.Warn("configuration reloaded, but these settings change only with a restart; they keep their running values", "trigger", why, "settings", fixed)
	}
	log.Info("configuration reloaded", "trigger", why, "routes", len(cfg.Routes))
}

// shutdown stops accepting, lets requests in flight finish within
// server.shutdown_timeout, waits as long for upgraded connections
// (WebSockets) to end, then closes what is left.
func shutdown(log *slog.Logger, gw *proxy.Gateway, srv *http.Server, others []*http.Server, conns *connTracker) error {
	timeout := gw.Config().Server.ShutdownTimeout
	log.Info("shutting down", "timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, s := range others {
		_ = s.Shutdown(ctx)
	}
	err := srv.Shutdown(ctx)
	if left := conns.waitHijacked(ctx); left > 0 {
		log.Warn("closing upgraded connections (WebSockets) still open at the shutdown deadline", "connections", left)
	}
	if err != nil {
		log.Warn("shutdown deadline passed with requests in flight", "err", err)
		return nil // Kubernetes is done waiting too; the exit stays clean
	}
	log.Info("stopped")
	return nil
}

// watcher notices a changed configuration file by its content.
type watcher struct {
	path string
	sum  []byte
}

func (w *watcher) read() ([]byte, error) {
	data, err := os.ReadFile(w.path)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(data)
	return h[:], nil
}

// connTracker knows the server's connections, so that connections handed
// over to an upgrade (WebSockets), which http.Server.Shutdown does not
// wait for, can be waited for and then closed.
type connTracker struct {
	mu    sync.Mutex
	conns map[*trackedConn]bool // value: hijacked
}

type trackedListener struct {
	net.Listener
	t *connTracker
}

func (l *trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, t: l.t}
	l.t.mu.Lock()
	l.t.conns[tc] = false
	l.t.mu.Unlock()
	return tc, nil
}

type trackedConn struct {
	net.Conn
	t    *connTracker
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.conns, c)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}

func (t *connTracker) state(c net.Conn, s http.ConnState) {
	if tlsConn, ok := c.(*tls.Conn); ok { // ServeTLS wraps the tracked connection
		c = tlsConn.NetConn()
	}
	tc, ok := c.(*trackedConn)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, live := t.conns[tc]; live && s == http.StateHijacked {
		t.conns[tc] = true
	}
}

// waitHijacked waits until no upgraded connection is open or ctx ends,
// then closes those left, and returns how many it closed.
func (t *connTracker) waitHijacked(ctx context.Context) int {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		t.mu.Lock()
		var open []*trackedConn
		for c, hijacked := range t.conns {
			if hijacked {
				open = append(open, c)
			}
		}
		t.mu.Unlock()
		if len(open) == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			for _, c := range open {
				_ = c.Close()
			}
			return len(open)
		case <-tick.C:
		}
	}
}
