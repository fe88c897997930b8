package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/sessions"
)

// JWKSPath serves the public keys that verify identity assertions.
const JWKSPath = Prefix + "jwks.json"

// Asserter signs identity assertions: short-lived JWTs (ES256) that tell
// an upstream who is calling, which it can verify with the keys at
// /_gatehouse/jwks.json. Identity headers alone can be forged by anyone
// who reaches the upstream directly; a signed assertion cannot.
//
// A signed assertion is cached on the session for each audience (in its
// sessions.CacheAssertions slot, see assertionCache) and re-signed when
// within a minute of expiry, so the hot path does not sign.
// An Asserter is safe for concurrent use.
type Asserter struct {
	issuer    string
	lifetime  time.Duration
	margin    time.Duration // re-sign when this close to expiry
	now       func() time.Time
	ephemeral bool

	keyGen atomic.Uint64 // counts key changes; cached assertions of an older key are signed again

	mu      sync.RWMutex
	current signingKey
	retired []retiredKey // keys that signed before; served until their tokens expire
	fixed   []jose.JSONWebKey
	jwks    []byte
}

type signingKey struct {
	signer jose.Signer
	jwk    jose.JSONWebKey // public
}

type retiredKey struct {
	jwk   jose.JSONWebKey
	until time.Time
}

// AssertionSlot names the audience of a route's assertions; routes keep
// theirs for their lifetime. The assertions themselves are cached on the
// session (assertionCache).
type AssertionSlot struct{ audience string }

type assertionEntry struct {
	audience string
	value    []string // shared, never modified
	exp      time.Time
}

// assertionCache is what a session's sessions.CacheAssertions slot holds:
// the assertions one Asserter signed for the session, at most
// maxCachedAudiences of them. It is immutable: an update stores a new
// one. A cache of another Asserter (the configuration was reloaded with
// another lifetime or issuer) is dropped whole, so reloads never add to a
// session's memory. So is one made before a key rotation: the new key
// signs from the next request on.
type assertionCache struct {
	signer  *Asserter
	keyGen  uint64
	entries []assertionEntry
}

// maxCachedAudiences bounds a session's cached assertions: a session
// calling more audiences than this re-signs for the least recent.
const maxCachedAudiences = 8

// NewAsserter loads the signing key from cfg.KeyFile, or makes an
// ephemeral one (logged at WARN), and the public keys of
// cfg.PreviousKeyFiles. issuer is the external URL.
func NewAsserter(cfg config.Assertion, issuer string, now func() time.Time, log *slog.Logger) (*Asserter, error) {
	if now == nil {
		now = time.Now
	}
	as := &Asserter{issuer: issuer, lifetime: cfg.Lifetime, now: now}
	as.margin = min(time.Minute, cfg.Lifetime/2)
	var key *ecdsa.PrivateKey
	var err error
	if cfg.KeyFile != "" {
		if key, err = readECKey(cfg.KeyFile); err != nil {
			return nil, fmt.Errorf("assertion.key_file: %w", err)
		}
	} else {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, err
		}
		as.ephemeral = true
		if log != nil {
			log.Warn("identity assertions are signed with an ephemeral key made at start; upstreams must fetch /_gatehouse/jwks.json again after a restart, and several replicas would each have their own. Set assertion.key_file.")
		}
	}
	for i, f := range cfg.PreviousKeyFiles {
		k, err := readECKey(f)
		if err != nil {
			return nil, fmt.Errorf("assertion.previous_key_files[%d]: %w", i, err)
		}
		jwk, err := publicJWK(k)
		if err != nil {
			return nil, err
		}
		as.fixed = append(as.fixed, jwk)
	}
	if err := as.setKey(key); err != nil {
		return nil, err
	}
	return as, nil
}

// Lifetime returns how long assertions live.
func (as *Asserter) Lifetime() time.Duration { return as.lifetime }

// Ephemeral reports whether the signing key was made at start.
func (as *Asserter) Ephemeral() bool { return as.ephemeral }

// readECKey reads a PEM ECDSA P-256 private key (SEC 1 or PKCS #8).
func readECKey(file string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block; create one with: openssl ecparam -name prime256v1 -genkey -noout -out key.pem")
	}
	var key any
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, err
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("not an ECDSA P-256 key (ES256 needs prime256v1)")
	}
	return ec, nil
}

func publicJWK(key *ecdsa.PrivateKey) (jose.JSONWebKey, error) {
	jwk := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return jwk, err
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return jwk, nil
}

// setKey makes key the signing key.
func (as *Asserter) setKey(key *ecdsa.PrivateKey) error {
	jwk, err := publicJWK(key)
	if err != nil {
		return err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", jwk.KeyID))
	if err != nil {
		return err
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	if as.current.signer != nil && as.current.jwk.KeyID != jwk.KeyID {
		as.retired = append(as.retired, retiredKey{jwk: as.current.jwk, until: as.now().Add(as.lifetime)})
		as.keyGen.Add(1)
	}
	as.current = signingKey{signer: signer, jwk: jwk}
	as.jwks = nil
	return nil
}

// Rotate switches to a new signing key. The old public key stays in the
// JWKS until the assertions it signed have expired.
func (as *Asserter) Rotate(key *ecdsa.PrivateKey) error { return as.setKey(key) }

// RotateFrom rotates to the key in cfg.KeyFile when it differs.
func (as *Asserter) RotateFrom(cfg config.Assertion) error {
	if cfg.KeyFile == "" {
		return nil
	}
	key, err := readECKey(cfg.KeyFile)
	if err != nil {
		return err
	}
	return as.setKey(key)
}

// JWKS returns the JSON Web Key Set of the keys that verify assertions:
// the current key, retired keys whose assertions may still be valid, and
// previous_key_files.
func (as *Asserter) JWKS() []byte {
	now := as.now()
	as.mu.RLock()
	cached, stale := as.jwks, false
	for _, r := range as.retired {
		stale = stale || !now.Before(r.until)
	}
	as.mu.RUnlock()
	if cached != nil && !stale {
		return cached
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	keep := as.retired[:0]
	for _, r := range as.retired {
		if now.Before(r.until) {
			keep = append(keep, r)
		}
	}
	as.retired = keep
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{as.current.jwk}}
	for _, r := range as.retired {
		set.Keys = append(set.Keys, r.jwk)
	}
	set.Keys = append(set.Keys, as.fixed...)
	b, _ := json.Marshal(set)
	as.jwks = b
	return b
}

// ServeJWKS answers GET /_gatehouse/jwks.json.
func (as *Asserter) ServeJWKS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(as.JWKS())
}

// Slot returns the audience of a route's assertions; routes keep theirs
// for their lifetime.
func (as *Asserter) Slot(audience string) *AssertionSlot { return &AssertionSlot{audience: audience} }

// assertionClaims is an assertion's payload.
type assertionClaims struct {
	jwt.Claims
	Email    string   `json:"email,omitempty"`
	Groups   []string `json:"groups,omitempty"`
	Name     string   `json:"preferred_username,omitempty"`
	Session  string   `json:"sid"`
	UserName string   `json:"user,omitempty"`
}

// Value returns the header value asserting s to the slot's audience,
// signing a new assertion only when the cached one is within a minute of
// expiry.
func (as *Asserter) Value(s *sessions.Session, slot *AssertionSlot) ([]string, error) {
	now := as.now()
	cached, _ := s.Cached(sessions.CacheAssertions).(*assertionCache)
	gen := as.keyGen.Load()
	if cached != nil && cached.signer == as && cached.keyGen == gen {
		for i := range cached.entries {
			if e := &cached.entries[i]; e.audience == slot.audience && now.Before(e.exp.Add(-as.margin)) {
				return e.value, nil
			}
		}
	}
	exp := now.Add(as.lifetime)
	name := s.PreferredUsername
	if name == "" {
		name = s.Name
	}
	c := assertionClaims{
		Claims: jwt.Claims{
			Issuer: as.issuer, Subject: s.Subject, Audience: jwt.Audience{slot.audience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp),
		},
		Email: s.Email, Groups: s.Groups, Name: name, UserName: s.User, Session: sessionTag(s.ID),
	}
	as.mu.RLock()
	signer := as.current.signer
	as.mu.RUnlock()
	token, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		return nil, fmt.Errorf("sign identity assertion: %w", err)
	}
	e := assertionEntry{audience: slot.audience, value: []string{token}, exp: exp}
	s.SetCached(sessions.CacheAssertions, cached.with(as, gen, e, now))
	return e.value, nil
}

// with returns a cache of as (at key generation gen) holding e and those
// of c's entries that are still fresh for another audience, newest first
// and at most maxCachedAudiences. A nil c, or one of another signer or
// key, starts empty.
func (c *assertionCache) with(as *Asserter, gen uint64, e assertionEntry, now time.Time) *assertionCache {
	n := &assertionCache{signer: as, keyGen: gen, entries: []assertionEntry{e}}
	if c == nil || c.signer != as || c.keyGen != gen {
		return n
	}
	for _, old := range c.entries {
		if len(n.entries) == maxCachedAudiences {
			break
		}
		if old.audience != e.audience && now.Before(old.exp.Add(-as.margin)) {
			n.entries = append(n.entries, old)
		}
	}
	return n
}

// sessionTag is a stable, one-way name of a session for assertions: an
// upstream can tell requests of one session apart without learning the
// session ID.
func sessionTag(id sessions.ID) string {
	h := sha256.Sum256(append([]byte("gatehouse assertion sid\x00"), id[:]...))
	return base64.RawURLEncoding.EncodeToString(h[:16])
}
