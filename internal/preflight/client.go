package preflight

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"

	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/config"
)

// The client authentication methods gatehouse can use (RFC 6749 §2.3.1,
// names from OpenID Connect Core §9).
const (
	methodBasic = "client_secret_basic"
	methodPost  = "client_secret_post"
)

func methodOf(s oauth2.AuthStyle) string {
	if s == oauth2.AuthStyleInParams {
		return methodPost
	}
	return methodBasic
}

// outcome classifies the token endpoint's answer to a made-up code.
type outcome int

const (
	accepted     outcome = iota // invalid_grant: the client was authenticated
	refused                     // invalid_client, or 401 without an error code
	unauthorized                // unauthorized_client: authenticated, not allowed the grant
	unreachable                 // no answer
	unexpected                  // anything else
)

type answer struct {
	outcome outcome
	detail  string // e.g. HTTP 401 invalid_client "..."
	// redirect is set when the provider's description mentions the
	// redirect URI (Keycloak names a mismatch even for a bad code).
	redirect bool
}

// credentials proves the client ID and secret without a user: a token
// request with a made-up code, sent as gatehouse's login sends it, must
// be refused for the code (invalid_grant), not for the client.
func (c *checker) credentials(ctx context.Context, doc *discovery) {
	offered := slices.ContainsFunc(doc.AuthMethods, func(m string) bool { return m == methodBasic || m == methodPost })
	if len(doc.AuthMethods) > 0 && !offered {
		c.add(Warning, "", "the provider advertises token_endpoint_auth_methods_supported %v, none of which gatehouse uses (%s, %s); logins fail unless the client may use one of them",
			doc.AuthMethods, methodBasic, methodPost)
	}
	style := auth.TokenAuthStyle(doc.AuthMethods)
	a := c.tryCode(ctx, doc.TokenEndpoint, style)
	switch a.outcome {
	case accepted:
		c.add(Info, "", "client credentials accepted with %s, as gatehouse's login sends them (a made-up code was refused with invalid_grant)", methodOf(style))
	case refused:
		otherStyle := oauth2.AuthStyleInHeader
		if style == oauth2.AuthStyleInHeader {
			otherStyle = oauth2.AuthStyleInParams
		}
		if slices.Contains(doc.AuthMethods, methodOf(otherStyle)) && c.tryCode(ctx, doc.TokenEndpoint, otherStyle).outcome == accepted {
			c.add(Problem, "", "client credentials: the token endpoint %s refuses them with %s, which gatehouse's login uses since the provider advertises it (%s), and accepts them with %s; allow %s for this client at the provider",
				doc.TokenEndpoint, methodOf(style), a.detail, methodOf(otherStyle), methodOf(style))
			break
		}
		c.add(Problem, "", "client credentials refused by the token endpoint %s (%s): wrong oidc.client_id or oidc.client_secret; copy both from the client registered at the identity provider",
			doc.TokenEndpoint, a.detail)
	case unauthorized:
		c.add(Problem, "", "the token endpoint %s accepts the client but does not allow it the authorization code flow (%s); enable it for client %q at the provider (Keycloak: Standard flow)",
			doc.TokenEndpoint, a.detail, c.cfg.OIDC.ClientID)
	case unreachable:
		c.add(Problem, "", "cannot reach the token endpoint %s: %s; check that this machine can reach it", doc.TokenEndpoint, a.detail)
	default:
		c.add(Warning, "", "client credentials not proved: the token endpoint %s answered a made-up code with %s, neither invalid_grant (credentials accepted) nor invalid_client (refused); check oidc.client_id and oidc.client_secret",
			doc.TokenEndpoint, a.detail)
	}
	if a.redirect {
		c.add(Warning, "", "hint: the provider's answer mentions the redirect URI; %s is probably not registered for client %q: register it exactly as printed below",
			c.cfg.CallbackURL(), c.cfg.OIDC.ClientID)
	}
}

// tryCode sends a token request with a made-up authorization code (and a
// PKCE verifier, as a login does) and classifies the answer.
func (c *checker) tryCode(ctx context.Context, tokenURL string, style oauth2.AuthStyle) answer {
	conf := oauth2.Config{
		ClientID:     c.cfg.OIDC.ClientID,
		ClientSecret: c.cfg.OIDC.ClientSecret,
		Endpoint:     oauth2.Endpoint{TokenURL: tokenURL, AuthStyle: style},
		RedirectURL:  c.cfg.CallbackURL(),
		Scopes:       c.cfg.OIDC.Scopes,
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.client)
	_, err := conf.Exchange(ctx, "gatehouse-check-"+rand.Text(), oauth2.VerifierOption(oauth2.GenerateVerifier()))
	if err == nil {
		return answer{outcome: unexpected, detail: "tokens"}
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		var ue *url.Error
		if errors.As(err, &ue) {
			return answer{outcome: unreachable, detail: c.cause(err)}
		}
		return answer{outcome: unexpected, detail: c.redact(err.Error())}
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	a := answer{detail: fmt.Sprintf("HTTP %d", status)}
	if re.ErrorCode != "" {
		a.detail += " " + re.ErrorCode
	}
	if d := c.redact(re.ErrorDescription); d != "" {
		if len(d) > 200 {
			d = d[:200] + "..."
		}
		a.detail += fmt.Sprintf(" %q", d)
	}
	switch {
	case re.ErrorCode == "invalid_grant":
		a.outcome = accepted
	case re.ErrorCode == "invalid_client", re.ErrorCode == "" && status == http.StatusUnauthorized:
		a.outcome = refused
	case re.ErrorCode == "unauthorized_client":
		a.outcome = unauthorized
	default:
		a.outcome = unexpected
	}
	a.redirect = (re.ErrorCode == "invalid_grant" || re.ErrorCode == "invalid_request") &&
		strings.Contains(strings.ToLower(re.ErrorDescription), "redirect")
	return a
}

// scopes compares the claims the policy needs with the scopes requested
// and offered.
func (c *checker) scopes(doc *discovery) {
	groups, emails := policyNeeds(c.cfg)
	requested := c.cfg.OIDC.Scopes
	if len(groups) > 0 && !slices.Contains(requested, "groups") && slices.Contains(doc.ScopesSupported, "groups") {
		c.add(Warning, "oidc.scopes", "add groups; %s checks groups, and the provider offers a groups scope that oidc.scopes %v does not request, so ID tokens may carry no groups and nobody would pass",
			strings.Join(groups, ", "), requested)
	}
	if len(emails) > 0 && !slices.Contains(requested, "email") && (len(doc.ScopesSupported) == 0 || slices.Contains(doc.ScopesSupported, "email")) {
		c.add(Warning, "oidc.scopes", "add email; %s checks emails, and oidc.scopes %v does not request the email scope, so ID tokens may carry no email and nobody would pass",
			strings.Join(emails, ", "), requested)
	}
}

// policyNeeds lists the policy keys, top-level and per route, that check
// groups and emails.
func policyNeeds(cfg *config.Config) (groups, emails []string) {
	visit := func(prefix string, a *config.Allow) {
		if a == nil {
			return
		}
		if len(a.Groups) > 0 {
			groups = append(groups, prefix+"allow.groups")
		}
		if len(a.Emails) > 0 {
			emails = append(emails, prefix+"allow.emails")
		}
		if len(a.EmailDomains) > 0 {
			emails = append(emails, prefix+"allow.email_domains")
		}
	}
	visit("", &cfg.Allow)
	for i, r := range cfg.Routes {
		// Routes holding the top-level policy (the catch-all route
		// validation appends for upstream) are named by allow above.
		if r.Allow != nil && !reflect.DeepEqual(*r.Allow, cfg.Allow) {
			visit(fmt.Sprintf("routes[%d].", i), r.Allow)
		}
	}
	return groups, emails
}
