package preflight

import (
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
)

// acrConfig is a configuration whose admin route asks for acr values.
func acrConfig(t *testing.T, issuer, clientID, secret, acr string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(`external_url: https://app.example.com
oidc:
  issuer: `+issuer+`
  client_id: `+clientID+`
  client_secret: `+secret+`
cookie:
  secret: this-is-a-32-byte-cookie-secret!
routes:
  - name: admin
    match: {path_prefix: /admin}
    upstream: http://127.0.0.1:9000
    acr_values: `+acr+`
    allow: {any_user: true}
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// acrFindings returns the findings about routes[0].acr_values.
func acrFindings(fs []Finding) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Key == "routes[0].acr_values" {
			out = append(out, f)
		}
	}
	return out
}

// TestCheck_ACRValues: check warns when the provider does not list a
// route's acr_values in acr_values_supported (the development provider
// lists pwd and mfa), or lists none at all (mockoidc).
func TestCheck_ACRValues(t *testing.T) {
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	idp, err := devidp.New(devidp.Options{Issuer: issuer, ClientID: "gatehouse", ClientSecret: "devidp-client-secret",
		RedirectURIs: []string{"https://app.example.com/_gatehouse/callback"}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = idp
	srv.Start()
	t.Cleanup(srv.Close)

	if got := acrFindings(Check(t.Context(), acrConfig(t, issuer, "gatehouse", "devidp-client-secret", "[mfa]"), Options{})); len(got) != 0 {
		t.Errorf("acr_values the provider supports: findings %v, want none", got)
	}
	got := acrFindings(Check(t.Context(), acrConfig(t, issuer, "gatehouse", "devidp-client-secret", "[mfa, hwk]"), Options{}))
	if len(got) != 1 || got[0].Severity != Warning || !strings.Contains(got[0].Msg, "does not list hwk in acr_values_supported [pwd mfa]") {
		t.Errorf("an acr value the provider does not list: findings %v, want one warning naming hwk", got)
	}

	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	got = acrFindings(Check(t.Context(), acrConfig(t, m.Issuer(), m.ClientID, m.ClientSecret, "[mfa]"), Options{}))
	if len(got) != 1 || got[0].Severity != Warning || !strings.Contains(got[0].Msg, "lists no acr_values_supported") {
		t.Errorf("a provider without acr_values_supported: findings %v, want one warning", got)
	}
}
