package testenv

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/serve"
	"github.com/gatehouse/gatehouse/proxy"
)

// Replica is a second gatehouse of an Env, as another replica of one
// Deployment: built from the same *config.Config (cookie secret, identity
// provider, upstream, session store settings), on the same clock, on its
// own httptest server and with its own gateway, session store and logs.
// Replicas share sessions only through a shared store (session.store:
// redis); with the memory store each has its own.
//
// Both servers listen on 127.0.0.1, and cookies are scoped by host, not
// port (RFC 6265 §8.5), so one Browser's cookie jar sends the session
// cookie to both: use Browser to aim it at the replica. Redirects that
// name the external URL (login, logout) lead back to the Env's server.
type Replica struct {
	URL     string // e.g. http://127.0.0.1:40124
	Server  *httptest.Server
	Gateway *proxy.Gateway
	Logs    *LogBuffer
	view    *Env // the replica seen as an Env, for Browsers
}

// Replica starts a replica of the environment. Its gateway runs (Run:
// discovery and the store's invalidation listener) until the test ends;
// then its server stops and its store is closed. It uses the default
// upstream transport, not Options.Transport. Upstream requests are
// recorded on e (e.Requests, e.LastRequest).
func (e *Env) Replica() *Replica {
	e.T.Helper()
	logs := &LogBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gw, err := serve.NewGateway(e.Config, serve.GatewayOptions{Logger: logger, Now: e.Clock.Now})
	if err != nil {
		e.T.Fatalf("replica gateway: %v", err)
	}
	runGateway(e.T, gw)
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = gw.Server()
	srv.Config.Addr = ""
	scheme := "http://"
	if strings.HasPrefix(e.URL, "https:") {
		scheme = "https://"
		srv.StartTLS()
	} else {
		srv.Start()
	}
	e.T.Cleanup(srv.Close) // before the store closes (cleanups run last first)
	r := &Replica{URL: scheme + srv.Listener.Addr().String(), Server: srv, Gateway: gw, Logs: logs}
	r.view = &Env{T: e.T, IdP: e.IdP, Upstream: e.Upstream, Server: srv, Gateway: gw,
		Config: e.Config, Clock: e.Clock, URL: r.URL, Logs: logs}
	return r
}

// Browser returns b aimed at the replica: the same cookie jar and client,
// with paths ("/x") resolved against the replica's URL.
func (r *Replica) Browser(b *Browser) *Browser {
	return &Browser{env: r.view, Jar: b.Jar, Client: b.Client}
}

// NewBrowser returns a browser with an empty cookie jar, aimed at the
// replica.
func (r *Replica) NewBrowser() *Browser { return r.view.NewBrowser() }

// RunGateway runs the environment's gateway in the background, as main
// does (Gateway.Run: discovery, and the session store's sweeper or
// invalidation listener), until the test ends; then it closes the store
// if it has a Close method. New does not run it: the memory store works
// without, but the redis store uses its local cache only while running.
func (e *Env) RunGateway() { runGateway(e.T, e.Gateway) }

func runGateway(t testing.TB, gw *proxy.Gateway) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		gw.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if c, ok := gw.Store.(io.Closer); ok {
			_ = c.Close()
		}
	})
}
