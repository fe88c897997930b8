package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// errIdPUnavailable means the identity provider's discovery document could
// not be loaded (yet).
var errIdPUnavailable = errors.New("identity provider unavailable")

// provider is the OpenID provider as gatehouse sees it: discovered lazily
// and retried, so gatehouse starts (and serves existing sessions) while
// the identity provider is down.
type provider struct {
	issuer       string
	clientID     string
	clientSecret string
	scopes       []string
	redirectURL  string
	client       *http.Client
	now          func() time.Time
	log          *slog.Logger

	mu      sync.Mutex // serialises discovery attempts
	lastTry time.Time
	lastErr error // the last attempt's failure, given to callers until the next
	d       atomic.Pointer[discovered]
}

// discovered is what discovery yields; immutable once built.
type discovered struct {
	op       *oidc.Provider
	meta     providerMeta
	keys     *keySet
	oauth2   oauth2.Config
	verifier *oidc.IDTokenVerifier // ID tokens from the token endpoint (refresh)
	issuer   string                // oidc.issuer, for verifierFor
	idConfig *oidc.Config          // verifier's, for verifierFor
	bearer   *oidc.IDTokenVerifier // machine tokens: aud checked by the caller
	// signedOnly checks only the signature (the provider's keys, an
	// asymmetric algorithm): to tell a refused ID token that the provider
	// signed for another issuer or client (a misconfiguration) from a
	// forgery. It never admits a token.
	signedOnly  *oidc.IDTokenVerifier
	endSession  string // end_session_endpoint, "" when not advertised
	signingAlgs []string
}

// verifierFor returns, for one verification of an ID token or a logout
// token (client ID checked), a verifier and the key set it uses, which
// tells afterwards whether the provider's keys could not be fetched
// (fetchErr): then the provider is at fault, not the token. limited is
// for tokens from anyone (keyUse). The verifier costs two small
// allocations; the login and the back-channel logout use it, never the
// request path.
func (d *discovered) verifierFor(limited bool) (*oidc.IDTokenVerifier, *keyFetch) {
	kf := &keyFetch{keyUse: keyUse{keys: d.keys, limited: limited}}
	return oidc.NewVerifier(d.issuer, kf, d.idConfig), kf
}

// retryEvery bounds how often a request may trigger a discovery attempt
// while the identity provider is down, so a flood of logins does not
// become a flood of discovery calls.
const retryEvery = 2 * time.Second

// get returns the discovered provider, trying discovery when it is not
// loaded and the last attempt is older than retryEvery.
func (p *provider) get(ctx context.Context) (*discovered, error) {
	if d := p.d.Load(); d != nil {
		return d, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.d.Load(); d != nil {
		return d, nil
	}
	if now := p.now(); now.Sub(p.lastTry) >= retryEvery || p.lastTry.IsZero() {
		p.lastTry = now
		if err := p.discover(ctx); err != nil {
			p.lastErr = err
			return nil, fmt.Errorf("%w: %w", errIdPUnavailable, err)
		}
		return p.d.Load(), nil
	}
	if p.lastErr != nil {
		// The cause still stands until the next attempt: a
		// misconfiguration keeps its page between retries.
		return nil, fmt.Errorf("%w: %w", errIdPUnavailable, p.lastErr)
	}
	return nil, errIdPUnavailable
}

// discover loads the discovery document and builds the OAuth 2.0 config
// and the ID token verifier.
func (p *provider) discover(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, p.client), p.client.Timeout)
	defer cancel()
	op, err := oidc.NewProvider(ctx, p.issuer)
	if err != nil {
		return fmt.Errorf("oidc discovery of %s: %w", p.issuer, err)
	}
	var meta providerMeta
	if err := op.Claims(&meta); err != nil {
		return fmt.Errorf("read discovery document: %w", err)
	}
	if meta.JWKS == "" {
		return fmt.Errorf("discovery document of %s has no jwks_uri", p.issuer)
	}
	// Only asymmetric algorithms: "none" and HS256 (signed with a secret
	// an attacker may know, or with the public key in an algorithm
	// confusion attack) are never accepted (OIDC Core §3.1.3.7, RFC 8725).
	algs := slices.DeleteFunc(slices.Clone(meta.Algs), func(a string) bool { return !asymmetricAlgs[a] })
	if len(algs) == 0 {
		algs = []string{oidc.RS256}
	}
	meta.Algs = algs
	p.d.Store(p.assemble(op, meta, nil))
	p.log.Info("identity provider discovered", "issuer", p.issuer, "end_session", meta.EndSession != "", "algs", algs)
	return nil
}

// providerMeta is what gatehouse reads from the discovery document beyond
// go-oidc's own fields.
type providerMeta struct {
	EndSession  string   `json:"end_session_endpoint"`
	Algs        []string `json:"id_token_signing_alg_values_supported"`
	JWKS        string   `json:"jwks_uri"`
	AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
}

// TokenAuthStyle picks how the client secret goes to the token endpoint
// from what the provider advertises (token_endpoint_auth_methods_supported),
// so x/oauth2 does not probe (a failed first try, a timeout included, would
// be tried again the other way, doubling the wait): in the body when
// client_secret_post is offered, else HTTP Basic, the OAuth 2.0 default.
// gatehouse check uses it to try the credentials the way a login sends them.
func TokenAuthStyle(methods []string) oauth2.AuthStyle {
	if slices.Contains(methods, "client_secret_post") {
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader
}

// assemble builds the client side of a discovered provider: the OAuth 2.0
// config and the verifiers, which depend on the client ID and secret.
// keys, when set, are signing keys already fetched (a reload).
func (p *provider) assemble(op *oidc.Provider, meta providerMeta, keys *keySet) *discovered {
	ks := &keySet{url: meta.JWKS, client: p.client}
	if keys != nil {
		keys.mu.Lock()
		ks.keys = keys.keys
		keys.mu.Unlock()
	}
	idConfig := &oidc.Config{
		ClientID:             p.clientID,
		SupportedSigningAlgs: meta.Algs,
		Now:                  p.now,
	}
	endpoint := op.Endpoint()
	endpoint.AuthStyle = TokenAuthStyle(meta.AuthMethods)
	return &discovered{
		op:   op,
		meta: meta,
		keys: ks,
		oauth2: oauth2.Config{
			ClientID:     p.clientID,
			ClientSecret: p.clientSecret,
			Endpoint:     endpoint,
			RedirectURL:  p.redirectURL,
			Scopes:       p.scopes,
		},
		verifier: oidc.NewVerifier(p.issuer, keyUse{keys: ks}, idConfig),
		issuer:   p.issuer,
		idConfig: idConfig,
		bearer: oidc.NewVerifier(p.issuer, keyUse{keys: ks, limited: true}, &oidc.Config{
			SkipClientIDCheck:    true,
			SupportedSigningAlgs: meta.Algs,
			Now:                  p.now,
		}),
		signedOnly: oidc.NewVerifier(p.issuer, keyUse{keys: ks}, &oidc.Config{
			SkipClientIDCheck:    true,
			SkipIssuerCheck:      true,
			SkipExpiryCheck:      true,
			SupportedSigningAlgs: meta.Algs,
			Now:                  p.now,
		}),
		endSession:  meta.EndSession,
		signingAlgs: meta.Algs,
	}
}

// inherit takes over a previous provider's discovery when the issuer is
// the same (a reload): no new discovery, and the signing keys it already
// fetched stay cached. A changed client ID, secret or timeout is applied.
func (p *provider) inherit(prev *provider) {
	if prev.issuer != p.issuer {
		return
	}
	if d := prev.d.Load(); d != nil {
		p.d.Store(p.assemble(d.op, d.meta, d.keys))
	}
}

var asymmetricAlgs = map[string]bool{
	oidc.RS256: true, oidc.RS384: true, oidc.RS512: true,
	oidc.ES256: true, oidc.ES384: true, oidc.ES512: true,
	oidc.PS256: true, oidc.PS384: true, oidc.PS512: true, oidc.EdDSA: true,
}

// ready reports whether discovery has succeeded.
func (p *provider) ready() bool { return p.d.Load() != nil }

// run retries discovery in the background, with capped exponential
// backoff, until it succeeds or ctx ends.
func (p *provider) run(ctx context.Context) {
	backoff := retryEvery
	for !p.ready() {
		if _, err := p.get(ctx); err == nil {
			return
		} else if m := discoveryMismatch(err); m != nil && ctx.Err() == nil {
			p.log.Error("identity provider discovery failed: gatehouse is misconfigured; fix oidc.issuer", "key", "oidc.issuer", "issuer", p.issuer, "retry_in", backoff, "err", m.Err.Error())
		} else if ctx.Err() == nil {
			p.log.Warn("identity provider discovery failed; retrying", "issuer", p.issuer, "retry_in", backoff, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Minute)
	}
}

// ctx returns a context whose OAuth 2.0 and OIDC calls use the bounded
// HTTP client.
func (p *provider) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(context.WithValue(ctx, oauth2.HTTPClient, p.client), p.client)
}
