package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// testProvider is a real OpenID provider running in the test.
type testProvider struct {
	name                       string
	issuer, clientID, secret   string
	tokenURL                   string
	wrongSecretAnswer          string // how the token endpoint refuses a wrong secret
	wrongClientAnswer          string // and an unknown client ID
	wrongSecret, wrongClientID string
}

const callbackURL = "https://app.example.com/_gatehouse/callback"

// startDevIdP runs the development provider on a loopback port.
func startDevIdP(t *testing.T) testProvider {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	idp, err := devidp.New(devidp.Options{Issuer: issuer, ClientID: "gatehouse", ClientSecret: "devidp-client-secret", RedirectURIs: []string{callbackURL}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = idp
	srv.Start()
	t.Cleanup(srv.Close)
	return testProvider{
		name: "devidp", issuer: issuer, clientID: "gatehouse", secret: "devidp-client-secret", tokenURL: issuer + "/token",
		// A secret that is a word of the message: only what the
		// provider says is redacted, not gatehouse's own words.
		wrongSecret: "wrong", wrongClientID: "not-gatehouse",
		wrongSecretAnswer: `HTTP 401 invalid_client "client authentication failed"`,
		wrongClientAnswer: `HTTP 401 invalid_client "client authentication failed"`,
	}
}

// startMockOIDC runs mockoidc on a loopback port. mockoidc checks the
// client secret too (only in the body, client_secret_post, which it
// advertises and gatehouse therefore uses), and echoes the wrong value in
// its error description, which check must redact.
func startMockOIDC(t *testing.T, middleware ...func(http.Handler) http.Handler) testProvider {
	t.Helper()
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, mw := range middleware {
		_ = m.AddMiddleware(mw)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return testProvider{
		name: "mockoidc", issuer: m.Issuer(), clientID: m.ClientID, secret: m.ClientSecret, tokenURL: m.TokenEndpoint(),
		wrongSecret: "not-the-mockoidc-secret", wrongClientID: "not-the-client",
		wrongSecretAnswer: `HTTP 401 invalid_client "Invalid client secret: <redacted>"`,
		wrongClientAnswer: `HTTP 401 invalid_client "Invalid client id: not-the-client"`,
	}
}

// providerConfig is a configuration for p; edit changes it before it is
// written.
func providerConfig(issuer, clientID, secret, extra string) string {
	return fmt.Sprintf(`external_url: https://app.example.com
upstream: http://127.0.0.1:8080
oidc:
  issuer: %s
  client_id: %s
  client_secret: %s
%scookie:
  secret: this-is-a-32-byte-cookie-secret!
allow:
  email_domains: [example.com]
`, issuer, clientID, secret, extra)
}

const registerLines = "register at your identity provider:\n" +
	"  redirect URI:             https://app.example.com/_gatehouse/callback\n" +
	"  post-logout redirect URI: https://app.example.com/_gatehouse/signed-out\n"

// TestRun_CheckProvider runs gatehouse check against real providers
// with each mistake a new user makes, and checks the exact messages.
func TestRun_CheckProvider(t *testing.T) {
	for _, p := range []testProvider{startDevIdP(t), startMockOIDC(t)} {
		t.Run(p.name, func(t *testing.T) {
			wellKnown := p.issuer + "/.well-known/openid-configuration"
			discovered := "identity provider: discovery document at " + wellKnown + ": issuer matches\n"
			accepted := "identity provider: client credentials accepted with client_secret_post, as gatehouse's login sends them (a made-up code was refused with invalid_grant)\n"

			t.Run("ok", func(t *testing.T) {
				path := writeConfig(t, "g.yaml", providerConfig(p.issuer, p.clientID, p.secret, ""))
				wantRun(t, []string{"check", path}, 0, discovered+accepted+path+": ok\n"+registerLines, "")
			})

			t.Run("-offline does not ask the provider", func(t *testing.T) {
				path := writeConfig(t, "g.yaml", providerConfig(p.issuer, p.clientID, p.wrongSecret, ""))
				wantRun(t, []string{"check", "-offline", path}, 0, path+": ok\n"+registerLines, "")
			})

			t.Run("trailing slash", func(t *testing.T) {
				path := writeConfig(t, "g.yaml", providerConfig(p.issuer+"/", p.clientID, p.secret, ""))
				wantRun(t, []string{"check", path}, 1, accepted+registerLines,
					path+": 1 identity provider problem(s):\n"+
						`  oidc.issuer: "`+p.issuer+`/" differs from the issuer the provider publishes, "`+p.issuer+`", by the trailing slash; `+
						`ID tokens would be refused and logins fail: use "`+p.issuer+`" exactly as the provider publishes it`+"\n")
			})

			t.Run("another issuer", func(t *testing.T) {
				path := writeConfig(t, "g.yaml", providerConfig(strings.Replace(p.issuer, "127.0.0.1", "localhost", 1), p.clientID, p.secret, ""))
				other := strings.Replace(p.issuer, "127.0.0.1", "localhost", 1)
				wantRun(t, []string{"check", path}, 1, accepted+registerLines,
					path+": 1 identity provider problem(s):\n"+
						`  oidc.issuer: the provider at `+other+`/.well-known/openid-configuration publishes the issuer "`+p.issuer+`", not "`+other+`"; `+
						`ID tokens would be refused and logins fail: use "`+p.issuer+`" exactly as the provider publishes it`+"\n")
			})

			t.Run("wrong secret", func(t *testing.T) {
				path := writeConfig(t, "g.yaml", providerConfig(p.issuer, p.clientID, p.wrongSecret, ""))
				code, stdout, stderr := runMain(t, "check", path)
				want := path + ": 1 identity provider problem(s):\n" +
					"  client credentials refused by the token endpoint " + p.tokenURL + " (" + p.wrongSecretAnswer + "): " +
					"wrong oidc.client_id or oidc.client_secret; copy both from the client registered at the identity provider\n"
				if code != 1 || stdout != discovered+registerLines || stderr != want {
					t.Errorf("exit %d, want 1\nstdout:\n%s\nwant:\n%s\nstderr:\n%s\nwant:\n%s", code, stdout, discovered+registerLines, stderr, want)
				}
				if p.name == "mockoidc" && strings.Contains(stdout+stderr, p.wrongSecret) {
					t.Errorf("the output shows the client secret")
				}
			})

			t.Run("wrong client ID", func(t *testing.T) {
				path := writeConfig(t, "g.yaml", providerConfig(p.issuer, p.wrongClientID, p.secret, ""))
				wantRun(t, []string{"check", path}, 1, discovered+registerLines,
					path+": 1 identity provider problem(s):\n"+
						"  client credentials refused by the token endpoint "+p.tokenURL+" ("+p.wrongClientAnswer+"): "+
						"wrong oidc.client_id or oidc.client_secret; copy both from the client registered at the identity provider\n")
			})

			t.Run("groups policy without the groups scope", func(t *testing.T) {
				cfg := strings.Replace(providerConfig(p.issuer, p.clientID, p.secret, "  scopes: [openid, email]\n"),
					"allow:\n  email_domains: [example.com]\n", "allow:\n  email_domains: [example.com]\nroutes:\n  - match: {host: admin.example.com}\n    upstream: http://127.0.0.1:8081\n    allow: {groups: [admins]}\n", 1)
				path := writeConfig(t, "g.yaml", cfg)
				wantRun(t, []string{"check", path}, 0, discovered+accepted+
					"warning: oidc.scopes: add groups; routes[0].allow.groups checks groups, and the provider offers a groups scope that oidc.scopes [openid email] does not request, "+
					"so ID tokens may carry no groups and nobody would pass\n"+
					path+": ok\n"+registerLines, "")
			})

			t.Run("email policy without the email scope", func(t *testing.T) {
				path := writeConfig(t, "g.yaml", providerConfig(p.issuer, p.clientID, p.secret, "  scopes: [openid, groups]\n"))
				wantRun(t, []string{"check", path}, 0, discovered+accepted+
					"warning: oidc.scopes: add email; allow.email_domains checks emails, and oidc.scopes [openid groups] does not request the email scope, "+
					"so ID tokens may carry no email and nobody would pass\n"+
					path+": ok\n"+registerLines, "")
			})
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now
		path := writeConfig(t, "g.yaml", providerConfig("http://"+addr+"/realms/main", "gatehouse", "s3cret", ""))
		wantRun(t, []string{"check", path}, 1, registerLines,
			path+": 1 identity provider problem(s):\n"+
				"  oidc.issuer: cannot reach the identity provider at http://"+addr+"/realms/main/.well-known/openid-configuration: "+
				"dial tcp "+addr+": connect: connection refused; check the URL, and that this machine can reach it (DNS, firewall, proxy)\n")
	})

	t.Run("no answer", func(t *testing.T) {
		// A provider behind a firewall that drops: connections open, no
		// answer comes. oidc.timeout bounds the wait.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var conns []net.Conn
		t.Cleanup(func() {
			ln.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		})
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		addr := ln.Addr().String()
		path := writeConfig(t, "g.yaml", providerConfig("http://"+addr, "gatehouse", "s3cret", "  timeout: 200ms\n"))
		wantRun(t, []string{"check", path}, 1, registerLines,
			path+": 1 identity provider problem(s):\n"+
				"  oidc.issuer: cannot reach the identity provider at http://"+addr+"/.well-known/openid-configuration: "+
				"no answer within 200ms (oidc.timeout); check the URL, and that this machine can reach it (DNS, firewall, proxy)\n")
	})

	t.Run("not a discovery URL", func(t *testing.T) {
		p := startDevIdP(t)
		path := writeConfig(t, "g.yaml", providerConfig(p.issuer+"/realms/main", p.clientID, p.secret, ""))
		wantRun(t, []string{"check", path}, 1, registerLines,
			path+": 1 identity provider problem(s):\n"+
				"  oidc.issuer: "+p.issuer+"/realms/main/.well-known/openid-configuration answered 404 Not Found, not a discovery document; "+
				"use the issuer URL the provider publishes its /.well-known/openid-configuration under (Keycloak: https://HOST/realms/REALM)\n")
	})

	// A provider's answer other than invalid_grant or invalid_client
	// proves nothing: a warning, not "ok" by silence. Where it mentions
	// the redirect URI (Keycloak names a redirect_uri it does not know),
	// a hint says to register it.
	notProved := func(answer string) string {
		return "warning: client credentials not proved: the token endpoint %[2]s answered a made-up code with " + answer + ", " +
			"neither invalid_grant (credentials accepted) nor invalid_client (refused); check oidc.client_id and oidc.client_secret\n"
	}
	for _, tc := range []struct {
		name, body string
		status     int
		warnings   string // with %[1]s for the client ID, %[2]s for the token endpoint
	}{
		{"server error", `{"error":"server_error","error_description":"database down"}`, http.StatusInternalServerError,
			notProved(`HTTP 500 server_error "database down"`)},
		{"redirect URI not registered", `{"error":"invalid_request","error_description":"Invalid parameter: redirect_uri"}`, http.StatusBadRequest,
			notProved(`HTTP 400 invalid_request "Invalid parameter: redirect_uri"`) +
				"warning: hint: the provider's answer mentions the redirect URI; https://app.example.com/_gatehouse/callback is probably not registered for client %[1]q: " +
				"register it exactly as printed below\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startMockOIDC(t, testenv.AnswerToken(tc.status, tc.body))
			path := writeConfig(t, "g.yaml", providerConfig(p.issuer, p.clientID, p.secret, ""))
			wantRun(t, []string{"check", path}, 0,
				"identity provider: discovery document at "+p.issuer+"/.well-known/openid-configuration: issuer matches\n"+
					fmt.Sprintf(tc.warnings, p.clientID, p.tokenURL)+path+": ok\n"+registerLines, "")
		})
	}
}

// TestRun_CheckAuthMethod: a provider that advertises client_secret_post
// (so gatehouse's login sends the secret in the body) but accepts the
// credentials only with client_secret_basic is a problem that names both
// methods: the login would fail although the secret is right.
func TestRun_CheckAuthMethod(t *testing.T) {
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	idp, err := devidp.New(devidp.Options{Issuer: issuer, ClientID: "gatehouse", ClientSecret: "devidp-client-secret", RedirectURIs: []string{callbackURL}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			if err := r.ParseForm(); err == nil && r.PostForm.Get("client_secret") != "" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"client_secret_post is not allowed"}`))
				return
			}
		}
		idp.ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(srv.Close)
	path := writeConfig(t, "g.yaml", providerConfig(issuer, "gatehouse", "devidp-client-secret", ""))
	wantRun(t, []string{"check", path}, 1,
		"identity provider: discovery document at "+issuer+"/.well-known/openid-configuration: issuer matches\n"+registerLines,
		path+": 1 identity provider problem(s):\n"+
			"  client credentials: the token endpoint "+issuer+"/token refuses them with client_secret_post, which gatehouse's login uses since the provider advertises it "+
			`(HTTP 401 invalid_client "client_secret_post is not allowed"), and accepts them with client_secret_basic; allow client_secret_post for this client at the provider`+"\n")
}
