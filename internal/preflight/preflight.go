// Package preflight proves a configuration against the real identity
// provider, the way gatehouse's first login will use it, so that
// gatehouse check catches what validation of the file alone cannot: an
// unreachable provider, an issuer the provider does not publish (a
// trailing slash), wrong client credentials, and scopes the policy needs
// but does not request.
//
// It asks the provider nothing a user would notice: it reads the
// discovery document and sends one token request with a made-up
// authorization code, which a provider must refuse. How it refuses tells
// whether the client credentials are right: invalid_grant (the code is
// bad, so the client was authenticated) or invalid_client.
package preflight

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse/gatehouse/config"
)

// Severity grades a finding.
type Severity int

const (
	// Info is something proved, e.g. that the credentials are accepted.
	Info Severity = iota
	// Warning may work but likely not as intended; check still exits 0.
	Warning
	// Problem makes logins fail; check exits 1.
	Problem
)

// Finding is one result of the preflight.
type Finding struct {
	Severity Severity
	// Key is the YAML key the finding is about (oidc.issuer), or "".
	Key string
	// Msg says what was found and, for warnings and problems, the fix.
	Msg string
}

func (f Finding) String() string {
	if f.Key == "" {
		return f.Msg
	}
	return f.Key + ": " + f.Msg
}

// Options shape a preflight.
type Options struct {
	// Client makes the requests; nil uses one whose timeout is
	// oidc.timeout, as gatehouse's own.
	Client *http.Client
}

// Check runs the preflight of cfg and returns its findings in the order
// they were made. It never returns the client secret in a message, even
// when the provider echoes it back.
func Check(ctx context.Context, cfg *config.Config, opts Options) []Finding {
	c := &checker{cfg: cfg, client: opts.Client}
	if c.client == nil {
		c.client = &http.Client{Timeout: cfg.OIDC.Timeout}
	}
	doc, ok := c.discover(ctx)
	if !ok {
		return c.findings
	}
	c.credentials(ctx, doc)
	c.scopes(doc)
	c.acrValues(doc)
	return c.findings
}

type checker struct {
	cfg      *config.Config
	client   *http.Client
	findings []Finding
}

func (c *checker) add(s Severity, key, format string, args ...any) {
	c.findings = append(c.findings, Finding{Severity: s, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// redact removes the client secret from text the provider sent, which may
// echo it (mockoidc does: "Invalid client secret: ...").
func (c *checker) redact(text string) string {
	if secret := c.cfg.OIDC.ClientSecret; secret != "" {
		text = strings.ReplaceAll(text, secret, "<redacted>")
	}
	return text
}

// discovery is what the preflight reads from the discovery document.
type discovery struct {
	Issuer          string   `json:"issuer"`
	TokenEndpoint   string   `json:"token_endpoint"`
	JWKS            string   `json:"jwks_uri"`
	ScopesSupported []string `json:"scopes_supported"`
	AuthMethods     []string `json:"token_endpoint_auth_methods_supported"`
	ACRSupported    []string `json:"acr_values_supported"`
}

// maxDocumentBytes bounds the discovery document read.
const maxDocumentBytes = 1 << 20

// discover fetches the discovery document from where go-oidc (and so
// gatehouse) looks for it, and compares its issuer with oidc.issuer. It
// reports false when there is no document to check further.
func (c *checker) discover(ctx context.Context) (*discovery, bool) {
	issuer := c.cfg.OIDC.Issuer
	wellKnown := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		c.add(Problem, "oidc.issuer", "cannot build the discovery request for %s: %v", wellKnown, err)
		return nil, false
	}
	resp, err := c.client.Do(req)
	if err != nil {
		c.add(Problem, "oidc.issuer", "cannot reach the identity provider at %s: %s; check the URL, and that this machine can reach it (DNS, firewall, proxy)",
			wellKnown, c.cause(err))
		return nil, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes))
	if err != nil {
		c.add(Problem, "oidc.issuer", "reading the discovery document at %s: %s", wellKnown, c.cause(err))
		return nil, false
	}
	if resp.StatusCode != http.StatusOK {
		c.add(Problem, "oidc.issuer", "%s answered %s, not a discovery document; use the issuer URL the provider publishes its /.well-known/openid-configuration under (Keycloak: https://HOST/realms/REALM)",
			wellKnown, resp.Status)
		return nil, false
	}
	var doc discovery
	if err := json.Unmarshal(body, &doc); err != nil || doc.Issuer == "" {
		c.add(Problem, "oidc.issuer", "%s is not a discovery document (a JSON object with an issuer); use the issuer URL the provider publishes its /.well-known/openid-configuration under", wellKnown)
		return nil, false
	}
	switch {
	case doc.Issuer == issuer:
		c.add(Info, "", "discovery document at %s: issuer matches", wellKnown)
	case doc.Issuer == otherSlash(issuer):
		c.add(Problem, "oidc.issuer", "%q differs from the issuer the provider publishes, %q, by the trailing slash; ID tokens would be refused and logins fail: use %q exactly as the provider publishes it",
			issuer, doc.Issuer, doc.Issuer)
	default:
		c.add(Problem, "oidc.issuer", "the provider at %s publishes the issuer %q, not %q; ID tokens would be refused and logins fail: use %q exactly as the provider publishes it",
			wellKnown, doc.Issuer, issuer, doc.Issuer)
	}
	if doc.JWKS == "" {
		c.add(Problem, "oidc.issuer", "the discovery document at %s has no jwks_uri, so ID tokens cannot be verified; is this an OpenID Connect provider?", wellKnown)
	}
	if doc.TokenEndpoint == "" {
		c.add(Problem, "oidc.issuer", "the discovery document at %s has no token_endpoint; is this an OpenID Connect provider?", wellKnown)
		return &doc, false
	}
	return &doc, true
}

// otherSlash is issuer with a trailing slash added, or removed.
func otherSlash(issuer string) string {
	if s, ok := strings.CutSuffix(issuer, "/"); ok {
		return s
	}
	return issuer + "/"
}

// cause is the reason a request failed, without the method and URL
// net/http repeats, and with the timeout named.
func (c *checker) cause(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Sprintf("no answer within %s (oidc.timeout)", c.cfg.OIDC.Timeout)
		}
		err = ue.Err
	}
	return err.Error()
}
