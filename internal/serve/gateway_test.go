package serve

import (
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/proxy"
	"github.com/gatehouse/gatehouse/sessions"
)

// gatewayConfig is a configuration that contacts nobody at NewGateway;
// %s is the session section.
const gatewayConfig = "external_url: http://127.0.0.1:4180\n" +
	"oidc: {issuer: http://127.0.0.1:1, client_id: compose, client_secret: compose}\n" +
	"cookie: {secret: 0123456789abcdef0123456789abcdef}\n" +
	"routes: [{match: {path_prefix: /}, upstream: http://127.0.0.1:9, allow: {any_user: true}}]\n" +
	"session:\n%s\n"

func parseGatewayConfig(t *testing.T, session string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(gatewayConfig, session)), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// gathered is gw's metrics by name, for value.
func gathered(t *testing.T, gw *proxy.Gateway) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := gw.Metrics.Registry().Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	fams := map[string]*dto.MetricFamily{}
	for _, f := range mfs {
		fams[f.GetName()] = f
	}
	return fams
}

func newSession(i int) *sessions.Session {
	return &sessions.Session{ID: sessions.NewID(), Subject: fmt.Sprint("user", i), Created: time.Now()}
}

// TestNewGateway_MemoryStore: with the default store, NewGateway builds a
// memory store bounded by session.max_sessions whose evictions are logged
// and counted, and whose size the active-sessions gauge reports.
func TestNewGateway_MemoryStore(t *testing.T) {
	logs := &syncBuffer{}
	gw, err := NewGateway(parseGatewayConfig(t, "  max_sessions: 1"), GatewayOptions{Logger: NewLogger(logs, config.Log{Format: "json"})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	if _, ok := gw.Store.(*sessions.Memory); !ok {
		t.Fatalf("store is %T, want *sessions.Memory", gw.Store)
	}
	for i := range 2 {
		if err := gw.Store.Create(t.Context(), newSession(i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := value(gathered(t, gw), "gatehouse_logouts_total", "reason", "evicted"); got != 1 {
		t.Errorf("gatehouse_logouts_total{reason=evicted} = %v after a second session over max_sessions 1, want 1", got)
	}
	if got := value(gathered(t, gw), "gatehouse_active_sessions"); got != 1 {
		t.Errorf("gatehouse_active_sessions = %v, want 1", got)
	}
	if !strings.Contains(logs.String(), `"event":"session_end","reason":"evicted","sub":"user0"`) {
		t.Errorf("no session_end log line for the evicted session; logs:\n%s", logs)
	}
}

// TestNewGateway_RedisStore: session.store redis builds the Redis store,
// counted by the active-sessions gauge; a reload keeps that store.
func TestNewGateway_RedisStore(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.KeyPrefix(t, srv.Addr)
	cfg := parseGatewayConfig(t, fmt.Sprintf("  store: redis\n  redis:\n    url: %s\n    key_prefix: %q", srv.URL, prefix))
	gw, err := NewGateway(cfg, GatewayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	store, ok := gw.Store.(*sessions.Redis)
	if !ok {
		t.Fatalf("store is %T, want *sessions.Redis", gw.Store)
	}
	if err := gw.Store.Create(t.Context(), newSession(0)); err != nil {
		t.Fatal(err)
	}
	if got := value(gathered(t, gw), "gatehouse_active_sessions"); got != 1 {
		t.Errorf("gatehouse_active_sessions = %v with one session in Redis, want 1", got)
	}
	next := parseGatewayConfig(t, "  store: memory")
	fixed, err := gw.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if gw.Store != sessions.Store(store) || !strings.Contains(strings.Join(fixed, ","), "session") {
		t.Errorf("after a reload to another store: store %T, fixed %v; want the same Redis store and session kept", gw.Store, fixed)
	}
}

// TestNewGateway_GivenStore: a store in the options is used as given.
func TestNewGateway_GivenStore(t *testing.T) {
	mem, err := sessions.NewMemory(10, sessions.Options{IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := NewGateway(parseGatewayConfig(t, "  max_sessions: 1"), GatewayOptions{Store: mem})
	if err != nil {
		t.Fatal(err)
	}
	if gw.Store != sessions.Store(mem) {
		t.Fatalf("store is %T %p, want the given %p", gw.Store, gw.Store, mem)
	}
}

// TestProxyNew_DoesNotBuildRedis: the request path does not build the
// configured Redis store; proxy.New without a store fails and names the
// composition to use, rather than build it or fall back to memory.
func TestProxyNew_DoesNotBuildRedis(t *testing.T) {
	cfg := parseGatewayConfig(t, "  store: redis\n  redis:\n    url: redis://127.0.0.1:1/0")
	gw, err := proxy.New(cfg, proxy.Options{})
	if err == nil || !strings.Contains(err.Error(), "NewGateway") {
		t.Fatalf("proxy.New(session.store redis, no store) = %v, %v; want an error naming NewGateway", gw, err)
	}
}
