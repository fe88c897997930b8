package auth_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutFuzz is gatehouse with the real provider and a few signed-in
// sessions, which back-channel logout calls try to end.
type logoutFuzz struct {
	e        *testenv.Env
	client   *http.Client
	kid      string
	verifier logoutVerifier
	users    []*testenv.TokenUser
	sids     []string // each user's sid at the provider ("" for none)
	browsers []*testenv.Browser
}

func newLogoutFuzz(tb testing.TB) *logoutFuzz {
	e := testenv.New(tb, testenv.Options{NoUpstream: true,
		YAML: "routes:\n  - upstream: ${UPSTREAM}\n    pass_access_token: true\n    pass_id_token: true\n"})
	kid, err := e.IdP.Keypair.KeyID()
	if err != nil {
		tb.Fatal(err)
	}
	lf := &logoutFuzz{e: e, client: e.NewBrowser().Client, kid: kid, verifier: logoutVerifier{
		key: &e.IdP.Keypair.PrivateKey.PublicKey, kid: kid, issuer: e.IdP.Issuer(), clientID: e.IdP.ClientID, now: e.Clock.Now}}
	for _, u := range []struct{ sub, sid string }{{"alice", "sid-a"}, {"bob", "sid-b"}, {"carol", ""}} {
		user := &testenv.TokenUser{Sub: u.sub, Email: u.sub + "@example.com", Verified: new(true)}
		if u.sid != "" {
			sid := u.sid
			user.Mutate = func(c map[string]any) { c["sid"] = sid }
		}
		b := e.NewBrowser()
		if r := b.Login(user, "/"); r.StatusCode != http.StatusOK {
			tb.Fatalf("login %s: %d %s", u.sub, r.StatusCode, r.Body)
		}
		lf.users, lf.sids, lf.browsers = append(lf.users, user), append(lf.sids, u.sid), append(lf.browsers, b)
	}
	return lf
}

// post sends a back-channel logout call and returns the status.
func (lf *logoutFuzz) post(t *testing.T, token string) int {
	t.Helper()
	resp, err := lf.client.PostForm(lf.e.URL+auth.BackchannelLogoutPath, url.Values{"logout_token": {token}})
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// restore signs in again every user whose session a valid token ended.
// It drives the login as a browser would, with each user's cookie jar
// (testenv's Browser reports to the fuzz target's F, which a fuzz
// function must not use).
func (lf *logoutFuzz) restore(t *testing.T) {
	t.Helper()
	for i, b := range lf.browsers {
		c := &http.Client{Jar: b.Jar, Timeout: 10 * time.Second}
		if lf.get(t, c, auth.WhoamiPath, false) == http.StatusOK {
			continue
		}
		lf.e.IdP.QueueUser(lf.users[i])
		if status := lf.get(t, c, "/", true); status != http.StatusOK {
			t.Fatalf("login %s again: status %d", lf.users[i].Sub, status)
		}
	}
	if n := lf.e.Gateway.Store.Len(); n != len(lf.users) {
		t.Fatalf("store holds %d sessions after signing everyone in again, want %d", n, len(lf.users))
	}
}

// checkNamed fails t when a valid token ended the session of a user it
// does not name: with a sid and a sub, only a session with both may end
// (a sid alone must not end another user's session); with one of them,
// only sessions with it.
func (lf *logoutFuzz) checkNamed(t *testing.T, token string) {
	t.Helper()
	sub, sid := lf.verifier.names(token)
	for i, b := range lf.browsers {
		c := &http.Client{Jar: b.Jar, Timeout: 10 * time.Second}
		if lf.get(t, c, auth.WhoamiPath, false) == http.StatusOK {
			continue
		}
		u, usid := lf.users[i].Sub, lf.sids[i]
		named := (sid == "" || sid == usid) && (sub == "" || sub == u)
		if !named {
			t.Fatalf("logout_token %.300q (sub %q, sid %q) ended the session of %s (sid %q)", token, sub, sid, u, usid)
		}
	}
}

// get fetches path on gatehouse, following redirects, as a page load
// when navigate is set, and returns the final status.
func (lf *logoutFuzz) get(t *testing.T, c *http.Client, path string, navigate bool) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, lf.e.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if navigate {
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// claims returns a logout token's claims as the provider would send them.
func (lf *logoutFuzz) claims(sub, sid, jti string) jwt.MapClaims {
	now := lf.e.Clock.Now()
	c := jwt.MapClaims{"iss": lf.e.IdP.Issuer(), "aud": lf.e.IdP.ClientID, "iat": now.Unix(),
		"exp": now.Add(2 * time.Minute).Unix(), "jti": jti, "events": map[string]any{backchannelEvent: map[string]any{}}}
	if sub != "" {
		c["sub"] = sub
	}
	if sid != "" {
		c["sid"] = sid
	}
	return c
}

// signPayload signs raw claims with the provider's key, after replacing
// $ISS, $AUD, $NOW and $EXP with this environment's values, so that a
// seed stays valid in every fuzzing process (each has its own provider
// address, client ID and clock).
func (lf *logoutFuzz) signPayload(t *testing.T, payload []byte) string {
	t.Helper()
	now := lf.e.Clock.Now()
	claims := strings.NewReplacer(
		"$ISS", lf.e.IdP.Issuer(), "$AUD", lf.e.IdP.ClientID,
		"$NOW", strconv.FormatInt(now.Unix(), 10), "$EXP", strconv.FormatInt(now.Add(2*time.Minute).Unix(), 10),
	).Replace(string(payload))
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: lf.e.IdP.Keypair.PrivateKey},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", lf.kid))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign([]byte(claims))
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzLogoutToken posts arbitrary logout_token values to gatehouse's
// back-channel logout endpoint, with the real provider behind it and
// three signed-in sessions: never a 5xx; a token that is not a validly
// signed logout token (logoutVerifier, OpenID Connect Back-Channel Logout
// 1.0 §2.4 and §2.6) is refused with 400 and never ends a session. A valid
// one may end sessions; they are signed in again.
//
// With sign false the bytes are the token. With sign true they are the
// claims, signed with the provider's key after $ISS, $AUD, $NOW and $EXP
// are filled in: that explores the claim checks behind a good signature,
// and keeps valid seeds valid in every fuzzing process.
func FuzzLogoutToken(f *testing.F) {
	lf := newLogoutFuzz(f)
	e := lf.e
	sign := func(c jwt.Claims) string {
		s, err := e.IdP.Keypair.SignJWT(c)
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	valid := sign(lf.claims("alice", "sid-a", "seed-valid-sid"))
	f.Add([]byte(valid), false)
	f.Add([]byte(sign(lf.claims("carol", "", "seed-valid-sub"))), false)
	for _, i := range []int{0, 5, strings.IndexByte(valid, '.') + 3, strings.LastIndexByte(valid, '.') - 2,
		strings.LastIndexByte(valid, '.') + 1, len(valid) / 2, len(valid) - 1} {
		b := []byte(valid)
		b[i] ^= 1
		f.Add(b, false)
	}
	f.Add([]byte(unsignedToken(lf.claims("alice", "sid-a", "seed-none"))), false)
	// Tokens the provider really issued at login: an ID token (nonce, no
	// events) and an access token (no events).
	rs := e.Requests()
	last := rs[len(rs)-1]
	f.Add([]byte(last.Header.Get("X-Forwarded-Id-Token")), false)
	f.Add([]byte(last.Header.Get("X-Forwarded-Access-Token")), false)
	withNonce := lf.claims("alice", "sid-a", "seed-nonce")
	withNonce["nonce"] = "n"
	f.Add([]byte(sign(withNonce)), false)
	// Another key under the provider's kid, and HS256 keyed with the
	// provider's public key (algorithm confusion, RFC 8725 §2.1).
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherKP, _ := mockoidc.NewKeypair(other)
	otherKP.Kid = lf.kid
	if s, err := otherKP.SignJWT(lf.claims("alice", "sid-a", "seed-other-key")); err == nil {
		f.Add([]byte(s), false)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&e.IdP.Keypair.PrivateKey.PublicKey)
	f.Add([]byte(hs256(lf.claims("alice", "sid-a", "seed-hs256"), pub, lf.kid)), false)
	// The JWS JSON serialization of a valid token.
	parts := strings.Split(sign(lf.claims("bob", "sid-b", "seed-json")), ".")
	js, _ := json.Marshal(map[string]string{"protected": parts[0], "payload": parts[1], "signature": parts[2]})
	f.Add(js, false)
	f.Add([]byte(strings.Repeat("A", 70000)), false) // over the 64 KiB form limit
	// Claims to be signed (sign true) are in testdata/fuzz/FuzzLogoutToken:
	// a valid token by sid and by sub, then one rule broken each, each with
	// a jti of its own so that none is refused only as a replay.

	want := len(lf.users)
	f.Fuzz(func(t *testing.T, data []byte, signIt bool) {
		token := string(data)
		if signIt {
			token = lf.signPayload(t, data)
		}
		isValid, why := lf.verifier.check(token)
		status := lf.post(t, token)
		n := e.Gateway.Store.Len()
		switch {
		case status >= 500:
			t.Fatalf("status %d for logout_token %.300q", status, token)
		case !isValid && status != http.StatusBadRequest:
			t.Fatalf("status %d, want 400: logout_token %.300q is not a valid logout token (%s)", status, token, why)
		case n > want:
			t.Fatalf("store holds %d sessions, want at most %d", n, want)
		case n < want && !isValid:
			t.Fatalf("%d session(s) ended by logout_token %.300q, which is not a valid logout token (%s)", want-n, token, why)
		case n < want:
			lf.checkNamed(t, token)
			lf.restore(t)
		}
	})
}

// logoutVerifier says whether a token is a validly signed logout token:
// OpenID Connect Back-Channel Logout 1.0 §2.4 (claims) and §2.6
// (validation), with gatehouse's iat window (5 minutes old, 2 minutes in
// the future), and JSON read as go-oidc reads it (member names in any
// case, times as numbers or numeric strings).
type logoutVerifier struct {
	key              *rsa.PublicKey
	kid              string
	issuer, clientID string
	now              func() time.Time
}

func (v logoutVerifier) check(raw string) (bool, string) {
	// §2.6 step 3: signed by the provider, with the algorithm it
	// announced (RS256), never none or HS256.
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return false, "not a JWS: " + err.Error()
	}
	if len(jws.Signatures) != 1 {
		return false, "not one signature"
	}
	if kid := jws.Signatures[0].Header.KeyID; kid != "" && kid != v.kid {
		return false, "unknown kid"
	}
	payload, err := jws.Verify(v.key)
	if err != nil {
		return false, "bad signature"
	}
	var c struct {
		Iss    string          `json:"iss"`
		Aud    audience        `json:"aud"`
		Iat    unixTime        `json:"iat"`
		Exp    unixTime        `json:"exp"`
		Jti    string          `json:"jti"`
		Sub    string          `json:"sub"`
		Sid    string          `json:"sid"`
		Nonce  json.RawMessage `json:"nonce"`
		Events struct {
			Logout json.RawMessage `json:"http://schemas.openid.net/event/backchannel-logout"`
		} `json:"events"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return false, "claims: " + err.Error()
	}
	now := v.now()
	switch {
	case c.Iss != v.issuer:
		return false, "iss"
	case !slices.Contains(c.Aud, v.clientID):
		return false, "aud"
	case c.Exp.IsZero() || c.Exp.Before(now):
		return false, "exp"
	case c.Iat.IsZero() || c.Iat.After(now.Add(2*time.Minute)) || c.Iat.Before(now.Add(-5*time.Minute)):
		return false, "iat"
	case c.Jti == "":
		return false, "no jti"
	case c.Sub == "" && c.Sid == "":
		return false, "neither sub nor sid"
	case len(c.Nonce) != 0:
		return false, "nonce present"
	case len(c.Events.Logout) == 0:
		// §2.6 step 5 asks only for the member; §2.4 adds that its value
		// "MUST be a JSON object", which gatehouse does not check (a
		// value of null or "yes" is accepted): not held against it here.
		return false, "no back-channel logout event"
	}
	return true, ""
}

// names returns the sub and sid of a token check found valid, decoded as
// check decodes them.
func (v logoutVerifier) names(raw string) (sub, sid string) {
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(jws.Signatures) != 1 {
		return "", ""
	}
	payload, err := jws.Verify(v.key)
	if err != nil {
		return "", ""
	}
	var c struct {
		Sub string `json:"sub"`
		Sid string `json:"sid"`
	}
	_ = json.Unmarshal(payload, &c)
	return c.Sub, c.Sid
}

type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*a = audience{s}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(a))
}

type unixTime struct{ time.Time }

func (t *unixTime) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	if i, err := n.Int64(); err == nil {
		t.Time = time.Unix(i, 0)
		return nil
	}
	f, err := n.Float64()
	if err != nil {
		return err
	}
	t.Time = time.Unix(int64(f), 0)
	return nil
}

// unsignedToken makes an alg=none JWT.
func unsignedToken(c jwt.MapClaims) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	p, _ := json.Marshal(c)
	return h + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// hs256 signs c with HMAC-SHA256 keyed by key.
func hs256(c jwt.MapClaims, key []byte, kid string) string {
	h, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT", "kid": kid})
	p, _ := json.Marshal(c)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
