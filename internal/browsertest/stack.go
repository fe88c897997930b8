package browsertest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	gatehouseserve "github.com/gatehouse/gatehouse/internal/serve"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/proxy"
)

// Stack is the development provider (internal/devidp), gatehouse and an
// app behind it, each on its own 127.0.0.1 port, sharing one clock that
// the test moves. It stops when the test ends.
type Stack struct {
	URL     string // gatehouse's external_url, e.g. http://127.0.0.1:40123
	IdPURL  string
	AppURL  string
	IdP     *devidp.Provider
	Gateway *proxy.Gateway
	Config  *config.Config
	Clock   *testenv.Clock
	Logs    *testenv.LogBuffer
	t       testing.TB
}

// StackOptions shape a Stack.
type StackOptions struct {
	// YAML is appended to the base configuration (external_url,
	// upstream, oidc, cookie); give whole top-level sections. ${UPSTREAM}
	// is the app's URL. Without a top-level allow, any_user: true is
	// added.
	YAML string
	// CookieYAML is added inside the cookie section, e.g.
	// "  persistent: false\n" (indented by two spaces).
	CookieYAML string
	// App is the upstream; default an empty 200 page.
	App http.Handler
}

// StartStack starts a Stack: the gateway runs (discovery, the store's
// sweeper or invalidation listener) until the test ends.
func StartStack(t testing.TB, opts StackOptions) *Stack {
	t.Helper()
	app := opts.App
	if app == nil {
		app = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	}
	appSrv := httptest.NewServer(app)
	t.Cleanup(appSrv.Close)
	gwLn, idpLn := listen(t), listen(t)
	s := &Stack{
		URL:    "http://" + gwLn.Addr().String(),
		IdPURL: "http://" + idpLn.Addr().String(),
		AppURL: appSrv.URL,
		Clock:  testenv.NewClock(time.Now()),
		Logs:   &testenv.LogBuffer{},
		t:      t,
	}
	clientSecret := randomSecret()
	idp, err := devidp.New(devidp.Options{
		Issuer:                 s.IdPURL,
		ClientID:               "gatehouse-browser-test",
		ClientSecret:           clientSecret,
		RedirectURIs:           []string{s.URL + "/_gatehouse/callback"},
		PostLogoutRedirectURIs: []string{s.URL + "/_gatehouse/signed-out"},
		Now:                    s.Clock.Now,
	})
	if err != nil {
		t.Fatalf("development provider: %v", err)
	}
	s.IdP = idp
	serve(t, idpLn, &http.Server{Handler: idp, ReadHeaderTimeout: 10 * time.Second})

	yml := fmt.Sprintf(`external_url: %s
upstream: %s
oidc:
  issuer: %s
  client_id: gatehouse-browser-test
  client_secret: %s
  scopes: [openid, email, profile, groups]
cookie:
  secret: %s
%s`, s.URL, s.AppURL, s.IdPURL, clientSecret, randomSecret(), opts.CookieYAML) + opts.YAML
	if !strings.HasPrefix(opts.YAML, "allow:") && !strings.Contains(opts.YAML, "\nallow:") {
		yml += "\nallow:\n  any_user: true\n"
	}
	cfg, err := config.Parse([]byte(yml), func(k string) (string, bool) {
		if k == "UPSTREAM" {
			return s.AppURL, true
		}
		return "", false
	})
	if err != nil {
		t.Fatalf("configuration: %v\n%s", err, yml)
	}
	s.Config = cfg
	s.Gateway = s.startGateway(gwLn, s.Logs)
	return s
}

// Replica is a second gatehouse of the Stack, as another replica of one
// Deployment: the same configuration and clock, its own listener,
// gateway and session store (shared with the first only through
// session.store: redis). Logins still go through the Stack's
// external_url.
type Replica struct {
	URL     string
	Gateway *proxy.Gateway
	Logs    *testenv.LogBuffer
}

// Replica starts a replica of the stack's gatehouse.
func (s *Stack) Replica() *Replica {
	s.t.Helper()
	r := &Replica{Logs: &testenv.LogBuffer{}}
	ln := listen(s.t)
	r.URL = "http://" + ln.Addr().String()
	r.Gateway = s.startGateway(ln, r.Logs)
	return r
}

// startGateway builds a gateway from the stack's configuration and
// serves it on ln until the test ends, then closes its store.
func (s *Stack) startGateway(ln net.Listener, logs *testenv.LogBuffer) *proxy.Gateway {
	t := s.t
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gw, err := gatehouseserve.NewGateway(s.Config, gatehouseserve.GatewayOptions{Logger: logger, Now: s.Clock.Now})
	if err != nil {
		ln.Close()
		t.Fatalf("gateway: %v", err)
	}
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
	serve(t, ln, gw.Server()) // stops first (cleanups run last first)
	return gw
}

// serve serves srv on ln until the test ends.
func serve(t testing.TB, ln net.Listener, srv *http.Server) {
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve %s: %v", ln.Addr(), err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func randomSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// WantLoginPage checks that the browser shows the development provider's
// sign-in page at idpURL.
func WantLoginPage(t testing.TB, ctx context.Context, idpURL string) {
	t.Helper()
	if loc := Location(t, ctx); !strings.HasPrefix(loc, idpURL+"/authorize") {
		Failf(t, ctx, "not on the provider's sign-in page (want %s/authorize…)", idpURL)
	}
	Do(t, ctx, "wait for the sign-in buttons", chromedp.WaitVisible(chromedp.ID("login-alice")), chromedp.WaitVisible(chromedp.ID("deny")))
}

// SignIn opens rawURL (on gatehouse or a replica), which must send the
// browser to the stack's provider, and presses the user's button there.
// It returns the response of the page the browser ends on.
func (s *Stack) SignIn(t testing.TB, ctx context.Context, user, rawURL string) *network.Response {
	t.Helper()
	Load(t, ctx, "open "+rawURL, chromedp.Navigate(rawURL))
	WantLoginPage(t, ctx, s.IdPURL)
	return Load(t, ctx, "sign in as "+user, chromedp.Click(chromedp.ID("login-"+user)))
}
