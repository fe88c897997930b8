package devidp

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// pkceValue matches a PKCE code verifier or S256 code challenge: 43 to 128
// unreserved characters (RFC 7636 §4.1 and §4.2).
var pkceValue = regexp.MustCompile(`^[A-Za-z0-9\-._~]{43,128}$`)

// authRequest holds the parameters of an authorization request.
type authRequest struct {
	clientID            string
	redirectURI         string
	responseType        string
	responseMode        string
	scope               string
	state               string
	nonce               string
	codeChallenge       string
	codeChallengeMethod string
	acrValues           string // space-separated, as requested
	scopes              []string
}

// SupportedACRValues are the authentication context classes the
// development provider claims: pwd, a sign-in with its form, and mfa, the
// same form pretending a second factor was used. Nothing is checked: it
// lets gatehouse's routes[].acr_values be tried without a real provider.
func SupportedACRValues() []string { return []string{"pwd", "mfa"} }

// acr is the class a sign-in reports: the first requested acr_values the
// provider supports (OIDC Core §3.1.2.1: a voluntary request), else pwd.
func (a *authRequest) acr() string {
	for _, v := range strings.Fields(a.acrValues) {
		if slices.Contains(SupportedACRValues(), v) {
			return v
		}
	}
	return "pwd"
}

// authError is a failed authorization request. When redirect is false the
// client or redirect URI could not be trusted and the error is shown to the
// user instead of being sent to the client.
type authError struct {
	redirect    bool
	code        string
	description string
}

// hiddenFields returns the parameters the sign-in form carries over to its
// POST, in a stable order.
func (a *authRequest) hiddenFields() []hiddenField {
	fields := []hiddenField{
		{"client_id", a.clientID},
		{"redirect_uri", a.redirectURI},
		{"response_type", a.responseType},
		{"response_mode", a.responseMode},
		{"scope", a.scope},
		{"state", a.state},
		{"nonce", a.nonce},
		{"code_challenge", a.codeChallenge},
		{"code_challenge_method", a.codeChallengeMethod},
		{"acr_values", a.acrValues},
	}
	return slices.DeleteFunc(fields, func(f hiddenField) bool { return f.Value == "" })
}

// parseAuthRequest validates an authorization request (RFC 6749 §4.1.1,
// OpenID Connect Core §3.1.2.1, RFC 7636 §4.3). The returned request is
// never nil, so that an error can be redirected to its redirect URI.
func (p *Provider) parseAuthRequest(v url.Values) (*authRequest, *authError) {
	req := &authRequest{}
	fatal := func(desc string) (*authRequest, *authError) {
		return req, &authError{code: "invalid_request", description: desc}
	}
	var err error
	if req.clientID, err = single(v, "client_id"); err != nil {
		return fatal(err.Error())
	}
	if req.clientID == "" {
		return fatal("client_id is required")
	}
	if req.clientID != p.clientID {
		return fatal("unknown client_id")
	}
	if req.redirectURI, err = single(v, "redirect_uri"); err != nil {
		return fatal(err.Error())
	}
	if req.redirectURI == "" {
		return fatal("redirect_uri is required")
	}
	if !slices.Contains(p.redirectURIs, req.redirectURI) {
		return fatal("redirect_uri is not registered for this client")
	}
	// From here on errors are sent back to the client.
	redirect := func(code, desc string) (*authRequest, *authError) {
		return req, &authError{redirect: true, code: code, description: desc}
	}
	if req.state, err = single(v, "state"); err != nil {
		return redirect("invalid_request", err.Error())
	}
	for _, name := range []string{"response_type", "response_mode", "scope", "nonce", "code_challenge", "code_challenge_method", "prompt", "acr_values"} {
		if _, err := single(v, name); err != nil {
			return redirect("invalid_request", err.Error())
		}
	}
	req.responseType = v.Get("response_type")
	req.responseMode = v.Get("response_mode")
	req.scope = v.Get("scope")
	req.nonce = v.Get("nonce")
	req.codeChallenge = v.Get("code_challenge")
	req.codeChallengeMethod = v.Get("code_challenge_method")
	req.acrValues = v.Get("acr_values")
	switch {
	case v.Has("request"):
		return redirect("request_not_supported", "request objects are not supported")
	case v.Has("request_uri"):
		return redirect("request_uri_not_supported", "request_uri is not supported")
	case req.responseType == "":
		return redirect("invalid_request", "response_type is required")
	case req.responseType != "code":
		return redirect("unsupported_response_type", "only response_type=code is supported")
	case req.responseMode != "" && req.responseMode != "query":
		return redirect("invalid_request", "only response_mode=query is supported")
	case !slices.Contains(strings.Fields(req.scope), "openid"):
		return redirect("invalid_scope", "scope must include openid")
	case req.codeChallenge == "":
		return redirect("invalid_request", "code_challenge is required (PKCE)")
	case req.codeChallengeMethod != "S256":
		return redirect("invalid_request", "code_challenge_method must be S256")
	case !pkceValue.MatchString(req.codeChallenge):
		return redirect("invalid_request", "code_challenge is malformed")
	case slices.Contains(strings.Fields(v.Get("prompt")), "none"):
		return redirect("login_required", "the development provider always shows its sign-in page")
	}
	req.scopes = grantedScopes(req.scope)
	return req, nil
}

func (p *Provider) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodPost) {
		return
	}
	params := r.URL.Query()
	if r.Method == http.MethodPost {
		if err := parsePostForm(w, r); err != nil {
			p.renderError(w, http.StatusBadRequest, "The sign-in form could not be read.")
			return
		}
		params = r.PostForm
	}
	req, aerr := p.parseAuthRequest(params)
	if aerr != nil {
		p.log.Info("devidp: rejected authorization request", "error", aerr.code, "description", aerr.description)
		if aerr.redirect {
			p.redirectTo(w, r, req.redirectURI, url.Values{
				"error":             {aerr.code},
				"error_description": {aerr.description},
			}, req.state)
			return
		}
		p.renderError(w, http.StatusBadRequest, "Invalid sign-in request: "+aerr.description+".")
		return
	}
	if r.Method == http.MethodGet {
		p.renderLogin(w, http.StatusOK, req, "")
		return
	}

	deny, err1 := single(params, "deny")
	sub, err2 := single(params, "user")
	switch {
	case err1 != nil || err2 != nil:
		p.renderLogin(w, http.StatusBadRequest, req, "Choose exactly one user.")
		return
	case deny != "":
		p.redirectTo(w, r, req.redirectURI, url.Values{
			"error":             {"access_denied"},
			"error_description": {"the user denied the request"},
		}, req.state)
		return
	case sub == "":
		p.renderLogin(w, http.StatusBadRequest, req, "Choose a user to sign in as.")
		return
	}
	user, ok := p.userBySubject(sub)
	if !ok {
		p.renderLogin(w, http.StatusBadRequest, req, "Unknown user.")
		return
	}

	now := p.now()
	code := randomToken()
	p.mu.Lock()
	p.codes.put(now, code, now.Add(codeTTL), &authCode{
		clientID:      req.clientID,
		redirectURI:   req.redirectURI,
		codeChallenge: req.codeChallenge,
		nonce:         req.nonce,
		scopes:        req.scopes,
		subject:       user.Subject,
		sid:           randomToken(),
		authTime:      now,
		acr:           req.acr(),
	})
	p.mu.Unlock()
	p.log.Info("devidp: user signed in", "sub", user.Subject, "client_id", req.clientID, "acr", req.acr())
	p.redirectTo(w, r, req.redirectURI, url.Values{"code": {code}}, req.state)
}

// redirectTo sends a 302 to target with params (and state, if not empty)
// added to any query target already has.
func (p *Provider) redirectTo(w http.ResponseWriter, r *http.Request, target string, params url.Values, state string) {
	u, err := url.Parse(target)
	if err != nil { // registered URIs were validated in New
		p.renderError(w, http.StatusInternalServerError, "Invalid redirect URI.")
		return
	}
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusFound)
}
