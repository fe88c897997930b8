package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/serve"
	"github.com/gatehouse/gatehouse/internal/tune"
	"github.com/gatehouse/gatehouse/proxy"
	"github.com/gatehouse/gatehouse/sessions"
)

// upstreamBody is what the upstream answers on every path.
const upstreamBody = "hello from the upstream\n"

// hello is a child's first stdout line: where it listens and, for
// gatehouse, the session cookies ("name=value") the load rotates through.
type hello struct {
	Addr       string   `json:"addr"`
	Cookies    []string `json:"cookies,omitempty"`
	Goroutines int      `json:"goroutines"`
}

// goodbye is a child's last stdout line, written when its stdin closes.
type goodbye struct {
	Goroutines int `json:"goroutines"`
}

// runChild plays one role until stdin closes or ctx ends. It listens on
// 127.0.0.1:0, prints a hello line, and a goodbye line on the way out.
func runChild(ctx context.Context, o *options, stdin io.Reader, stdout, stderr io.Writer) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(stderr, "bench %s: listen: %v\n", o.role, err)
		return 1
	}
	srv, cookies, err := childServer(ctx, o, l.Addr().(*net.TCPAddr))
	if err != nil {
		l.Close()
		fmt.Fprintf(stderr, "bench %s: %v\n", o.role, err)
		return 1
	}
	go srv.Serve(l)
	defer srv.Close()

	line, err := json.Marshal(hello{Addr: l.Addr().String(), Cookies: cookies, Goroutines: runtime.NumGoroutine()})
	if err != nil {
		fmt.Fprintf(stderr, "bench %s: hello: %v\n", o.role, err)
		return 1
	}
	// Return the garbage of setup (sealing cookies) to the OS, so that the
	// RSS the parent reads next is the live heap, plus this line.
	cookies = nil
	debug.FreeOSMemory()
	if _, err := stdout.Write(append(line, '\n')); err != nil {
		fmt.Fprintf(stderr, "bench %s: write hello: %v\n", o.role, err)
		return 1
	}
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(eof)
	}()
	select {
	case <-eof:
	case <-ctx.Done():
	}
	stopProfile()
	bye := goodbye{Goroutines: settledGoroutines()}
	cleanup() // before the goodbye: the parent may end this process after it
	_ = json.NewEncoder(stdout).Encode(bye)
	return 0
}

// settledGoroutines returns the goroutine count once it has stopped
// changing for 150ms (connections the loader just closed take a moment
// to wind down), or after 2s.
func settledGoroutines() int {
	n, same := runtime.NumGoroutine(), 0
	for end := time.Now().Add(2 * time.Second); same < 3 && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			same++
		} else {
			n, same = m, 0
		}
	}
	return n
}

func childServer(ctx context.Context, o *options, addr *net.TCPAddr) (*http.Server, []string, error) {
	switch o.role {
	case "upstream":
		return &http.Server{Handler: http.HandlerFunc(upstreamHandler)}, nil, nil
	case "bare":
		srv, err := bareServer(o.upstream, o.barePool)
		return srv, nil, err
	case "gatehouse":
		tune.Defaults() // gatehouse's runtime defaults, as the binary applies them
		return gatehouseServer(ctx, addr, o)
	}
	return nil, nil, fmt.Errorf("unknown -role %q (want upstream, bare or gatehouse)", o.role)
}

func upstreamHandler(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, upstreamBody)
}

// bareServer is the baseline: the reverse proxy anyone would write in
// five lines, with Go's defaults but for the idle pool (Go's default of 2
// idle connections per host would make it dial for most requests under 32
// clients), and no BufferPool unless pooled is set (then a 32 KiB pool
// like gatehouse's, to separate what the pool buys from what gatehouse's
// own work costs).
func bareServer(upstream string, pooled bool) (*http.Server, error) {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("-upstream: want an absolute URL (got %q)", upstream)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256}
	if pooled {
		rp.BufferPool = &bufferPool{p: sync.Pool{New: func() any { return new([32 << 10]byte) }}}
	}
	return &http.Server{Handler: rp}, nil
}

// gatehouseConfig is the YAML of the gatehouse under test. The issuer is
// never contacted: the gateway's Run, which discovers it, is not called,
// and sessions are made through the store.
const gatehouseConfig = `listen: %[1]s
external_url: http://%[1]s
upstream: %[2]s
oidc:
  issuer: http://127.0.0.1:1
  client_id: gatehouse-bench
  client_secret: gatehouse-bench
cookie:
  secret: %[3]s
session:
  max_sessions: %[4]d
  idle_timeout: 2h
  absolute_timeout: 8h
%[5]sallow:
  groups: [staff]
`

// stopProfile ends the gatehouse child's CPU profile, if it has one;
// cleanup removes what the child put in shared stores.
var stopProfile, cleanup = func() {}, func() {}

// cleanupRedis removes the bench's sessions from Redis.
func cleanupRedis(gw *proxy.Gateway, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range n {
		_, _ = gw.Store.DeleteBySubject(ctx, fmt.Sprintf("user-%d", i))
	}
}

// gatehouseServer builds gatehouse from YAML through the real config
// loader, creates n sessions in its store and returns its server and a
// cookie for each session.
func gatehouseServer(ctx context.Context, addr *net.TCPAddr, o *options) (*http.Server, []string, error) {
	upstream, n := o.upstream, o.sessions
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	if o.secret != "" { // a replica of another gatehouse: the same cookies open
		var err error
		if secret, err = hex.DecodeString(o.secret); err != nil || len(secret) != 32 {
			return nil, nil, fmt.Errorf("-secret: want 64 hex digits")
		}
	}
	store := ""
	if o.store == "redis" {
		// A key prefix of its own, removed with the sessions at the end.
		where := "    url: " + o.redisURL + "\n"
		switch {
		case o.redisMaster != "":
			where = fmt.Sprintf("    sentinel:\n      master: %s\n      addrs: [%s]\n", o.redisMaster, o.redisAddrs)
		case o.redisAddrs != "":
			where = fmt.Sprintf("    cluster:\n      addrs: [%s]\n", o.redisAddrs)
		}
		store = fmt.Sprintf("  store: redis\n  redis:\n%s    key_prefix: \"gatehouse-bench-%s:\"\n    local_cache: %d\n",
			where, hex.EncodeToString(secret[:4]), o.localCache)
	}
	if o.noSessions {
		n = 0
	}
	// Room to spare: the store is sharded and each shard evicts on its own.
	yaml := fmt.Sprintf(gatehouseConfig, addr.String(), upstream, hex.EncodeToString(secret), 2*n+1000, store)
	cfg, err := config.Parse([]byte(yaml), os.LookupEnv)
	if err != nil {
		return nil, nil, fmt.Errorf("gatehouse config: %w", err)
	}
	gw, err := serve.NewGateway(cfg, serve.GatewayOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, nil, fmt.Errorf("gatehouse: %w", err)
	}
	if o.store == "redis" {
		go gw.Run(ctx) // subscribes to invalidations: the local cache serves only then
		if o.localCache > 0 {
			for end := time.Now().Add(5 * time.Second); !gw.Store.(*sessions.Redis).Live() && time.Now().Before(end); {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if n > 0 {
			cleanup = func() { cleanupRedis(gw, n) }
		}
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, nil, err
		}
		stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
	}
	cookies := make([]string, 0, n)
	for i := range n {
		user := fmt.Sprintf("user-%d", i)
		s := &sessions.Session{ID: sessions.NewID(), Subject: user, User: user, Email: user + "@example.com",
			PreferredUsername: user, Groups: []string{"staff"}, Created: time.Now()}
		if err := gw.Store.Create(ctx, s); err != nil {
			return nil, nil, fmt.Errorf("create session %d: %w", i, err)
		}
		c, err := gw.Auth().SessionCookie(s.ID)
		if err != nil {
			return nil, nil, fmt.Errorf("seal session cookie %d: %w", i, err)
		}
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	if got := gw.Store.Len(); got != n && !o.noSessions {
		return nil, nil, fmt.Errorf("store holds %d sessions after creating %d (evicted?)", got, n)
	}
	return gw.Server(), cookies, nil
}

// bufferPool hands httputil.ReverseProxy its copy buffers.
type bufferPool struct{ p sync.Pool }

// It pools array pointers, so a Put does not allocate.
func (b *bufferPool) Get() []byte { return b.p.Get().(*[32 << 10]byte)[:] }

func (b *bufferPool) Put(p []byte) {
	if len(p) == 32<<10 {
		b.p.Put((*[32 << 10]byte)(p))
	}
}
