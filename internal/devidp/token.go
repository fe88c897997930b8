package devidp

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// tokenError is an RFC 6749 §5.2 error response.
type tokenError struct {
	status      int
	code        string
	description string
}

func (e *tokenError) Error() string { return e.code + ": " + e.description }

func invalidRequest(desc string) *tokenError {
	return &tokenError{http.StatusBadRequest, "invalid_request", desc}
}

func invalidGrant(desc string) *tokenError {
	return &tokenError{http.StatusBadRequest, "invalid_grant", desc}
}

func invalidClient(desc string) *tokenError {
	return &tokenError{http.StatusUnauthorized, "invalid_client", desc}
}

// tokenResponse is a successful RFC 6749 §5.1 response.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	IDToken      string `json:"id_token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
}

func (p *Provider) handleToken(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	resp, terr := p.token(w, r)
	if terr != nil {
		p.log.Info("devidp: token request failed", "error", terr.code, "description", terr.description)
		if terr.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="devidp"`)
		}
		writeJSON(w, terr.status, map[string]string{
			"error":             terr.code,
			"error_description": terr.description,
		})
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) (*tokenResponse, *tokenError) {
	if err := parsePostForm(w, r); err != nil {
		return nil, invalidRequest("malformed form body")
	}
	form := r.PostForm
	for name := range form {
		if len(form[name]) > 1 {
			return nil, invalidRequest(fmt.Sprintf("parameter %s is repeated", name))
		}
	}
	if terr := p.authenticateClient(r, form); terr != nil {
		return nil, terr
	}
	switch gt := form.Get("grant_type"); gt {
	case "authorization_code":
		return p.grantAuthorizationCode(form)
	case "refresh_token":
		return p.grantRefreshToken(form)
	case "":
		return nil, invalidRequest("grant_type is required")
	default:
		return nil, &tokenError{http.StatusBadRequest, "unsupported_grant_type", "only authorization_code and refresh_token are supported"}
	}
}

// authenticateClient checks client_secret_basic or client_secret_post
// credentials (RFC 6749 §2.3.1).
func (p *Provider) authenticateClient(r *http.Request, form url.Values) *tokenError {
	id, secret := form.Get("client_id"), form.Get("client_secret")
	if user, pass, ok := r.BasicAuth(); ok {
		if secret != "" {
			return invalidRequest("use only one client authentication method")
		}
		// The credentials are form-urlencoded before Basic encoding.
		bid, err1 := url.QueryUnescape(user)
		bsecret, err2 := url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return invalidClient("malformed client credentials")
		}
		if id != "" && id != bid {
			return invalidClient("client_id does not match the authenticated client")
		}
		id, secret = bid, bsecret
	} else if r.Header.Get("Authorization") != "" {
		return invalidClient("unsupported client authentication method")
	}
	if id == "" || secret == "" {
		return invalidClient("client authentication is required")
	}
	idOK := constantTimeEqual(id, p.clientID)
	secretOK := constantTimeEqual(secret, p.clientSecret)
	if !idOK || !secretOK {
		return invalidClient("client authentication failed")
	}
	return nil
}

// constantTimeEqual compares a and b in time independent of their contents
// and lengths.
func constantTimeEqual(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

func (p *Provider) grantAuthorizationCode(form url.Values) (*tokenResponse, *tokenError) {
	code := form.Get("code")
	redirectURI := form.Get("redirect_uri")
	verifier := form.Get("code_verifier")
	if code == "" {
		return nil, invalidRequest("code is required")
	}
	now := p.now()

	p.mu.Lock()
	ac, ok := p.codes.get(now, code)
	if !ok {
		p.mu.Unlock()
		return nil, invalidGrant("unknown or expired authorization code")
	}
	if ac.used {
		// A replayed code revokes the tokens issued for it (RFC 6749 §4.1.2).
		p.access.delete(ac.issuedAccess)
		p.refresh.delete(ac.issuedRefresh)
		p.codes.delete(code)
		p.mu.Unlock()
		p.log.Warn("devidp: authorization code reused; tokens revoked", "sub", ac.subject)
		return nil, invalidGrant("authorization code was already used")
	}
	ac.used = true // single use, whatever the outcome below
	var terr *tokenError
	switch {
	case ac.clientID != p.clientID:
		terr = invalidGrant("authorization code was issued to another client")
	case redirectURI != ac.redirectURI:
		terr = invalidGrant("redirect_uri does not match the authorization request")
	case verifier == "":
		terr = invalidGrant("code_verifier is required")
	case !pkceValue.MatchString(verifier):
		terr = invalidGrant("code_verifier is malformed")
	case !constantTimeEqual(s256(verifier), ac.codeChallenge):
		terr = invalidGrant("code_verifier does not match code_challenge")
	}
	user, ok := p.userBySubject(ac.subject)
	if terr == nil && !ok {
		terr = invalidGrant("user no longer exists")
	}
	if terr != nil {
		p.mu.Unlock()
		return nil, terr
	}
	access, refresh := p.storeTokensLocked(now, ac.clientID, ac.subject, ac.sid, ac.scopes, ac.scopes, ac.authTime, ac.acr)
	ac.issuedAccess, ac.issuedRefresh = access, refresh
	p.mu.Unlock()

	return p.tokenResponse(now, user, ac.scopes, ac.nonce, ac.sid, ac.authTime, ac.acr, access, refresh)
}

func (p *Provider) grantRefreshToken(form url.Values) (*tokenResponse, *tokenError) {
	token := form.Get("refresh_token")
	if token == "" {
		return nil, invalidRequest("refresh_token is required")
	}
	now := p.now()

	p.mu.Lock()
	rt, ok := p.refresh.get(now, token)
	if !ok {
		p.mu.Unlock()
		return nil, invalidGrant("unknown, expired or already used refresh token")
	}
	if rt.clientID != p.clientID {
		p.mu.Unlock()
		return nil, invalidGrant("refresh token was issued to another client")
	}
	scopes := rt.scopes
	if raw, has := form["scope"]; has {
		requested := strings.Fields(raw[0])
		for _, s := range requested {
			if !slices.Contains(rt.scopes, s) {
				p.mu.Unlock()
				return nil, &tokenError{http.StatusBadRequest, "invalid_scope", "scope exceeds the original grant"}
			}
		}
		scopes = grantedScopes(raw[0])
	}
	user, ok := p.userBySubject(rt.subject)
	if !ok {
		p.mu.Unlock()
		return nil, invalidGrant("user no longer exists")
	}
	p.refresh.delete(token) // rotation: the old refresh token is spent
	// The new refresh token keeps the original grant (RFC 6749 §6).
	access, refresh := p.storeTokensLocked(now, rt.clientID, rt.subject, rt.sid, scopes, rt.scopes, rt.authTime, rt.acr)
	p.mu.Unlock()

	return p.tokenResponse(now, user, scopes, "", rt.sid, rt.authTime, rt.acr, access, refresh)
}

// storeTokensLocked mints and remembers an access token with accessScopes
// and a refresh token with refreshScopes. p.mu must be held.
func (p *Provider) storeTokensLocked(now time.Time, clientID, sub, sid string, accessScopes, refreshScopes []string, authTime time.Time, acr string) (access, refresh string) {
	access, refresh = randomToken(), randomToken()
	p.access.put(now, access, now.Add(p.accessTTL), &accessToken{
		clientID: clientID,
		subject:  sub,
		scopes:   accessScopes,
	})
	p.refresh.put(now, refresh, now.Add(refreshTokenTTL), &refreshToken{
		clientID: clientID,
		subject:  sub,
		sid:      sid,
		scopes:   refreshScopes,
		authTime: authTime,
		acr:      acr,
	})
	return access, refresh
}

// tokenResponse builds the token endpoint's answer, signing an ID token if
// the openid scope was granted.
func (p *Provider) tokenResponse(now time.Time, user User, scopes []string, nonce, sid string, authTime time.Time, acr, access, refresh string) (*tokenResponse, *tokenError) {
	resp := &tokenResponse{
		AccessToken:  access,
		TokenType:    "Bearer",
		ExpiresIn:    int64(p.accessTTL / time.Second),
		RefreshToken: refresh,
		Scope:        strings.Join(scopes, " "),
	}
	if slices.Contains(scopes, "openid") {
		claims := userClaims(user, scopes)
		claims["iss"] = p.issuer
		claims["aud"] = []string{p.clientID}
		claims["azp"] = p.clientID
		claims["iat"] = now.Unix()
		claims["exp"] = now.Add(p.idTokenTTL).Unix()
		claims["auth_time"] = authTime.Unix()
		claims["acr"] = acr
		claims["sid"] = sid
		claims["at_hash"] = atHash(access)
		if nonce != "" {
			claims["nonce"] = nonce
		}
		idToken, err := p.SignJWT(claims)
		if err != nil {
			p.log.Error("devidp: signing id token failed", "error", err)
			return nil, &tokenError{http.StatusInternalServerError, "server_error", "could not sign the id token"}
		}
		resp.IDToken = idToken
	}
	return resp, nil
}

// s256 is the PKCE S256 transform: BASE64URL(SHA256(ASCII(verifier))).
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (p *Provider) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodPost) {
		return
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		// No credentials: no error code (RFC 6750 §3.1).
		w.Header().Set("WWW-Authenticate", `Bearer realm="devidp"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "bearer token required"})
		return
	}
	p.mu.Lock()
	at, ok := p.access.get(p.now(), token)
	p.mu.Unlock()
	var user User
	if ok {
		user, ok = p.userBySubject(at.subject)
	}
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="the access token is invalid or expired"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "the access token is invalid or expired"})
		return
	}
	writeJSON(w, http.StatusOK, userClaims(user, at.scopes))
}
