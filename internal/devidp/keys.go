package devidp

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
)

// signingKey is an RSA key pair with its key id.
type signingKey struct {
	kid    string
	priv   *rsa.PrivateKey
	signer jose.Signer
}

// newSigningKey generates an RSA-2048 key whose kid is its RFC 7638
// thumbprint.
func newSigningKey() (*signingKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	pub := jose.JSONWebKey{Key: &priv.PublicKey}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("key thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: priv, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("create signer: %w", err)
	}
	return &signingKey{kid: kid, priv: priv, signer: signer}, nil
}

// RotateKey generates a new signing key and makes it the active one. Earlier
// public keys stay in the JWKS (up to the 16 most recent keys), so tokens
// they signed still verify.
func (p *Provider) RotateKey() error {
	key, err := newSigningKey()
	if err != nil {
		return fmt.Errorf("devidp: rotate key: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = append(p.keys, key)
	if len(p.keys) > maxKeys {
		p.keys = slices.Delete(p.keys, 0, len(p.keys)-maxKeys)
	}
	p.log.Info("devidp: signing key rotated", "kid", key.kid)
	return nil
}

// SignJWT signs claims as a compact JWS with the active key (RS256, with a
// kid header and typ JWT). It is meant for tests, e.g. of back-channel logout.
func (p *Provider) SignJWT(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devidp: encode claims: %w", err)
	}
	p.mu.Lock()
	key := p.keys[len(p.keys)-1]
	p.mu.Unlock()
	jws, err := key.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devidp: sign: %w", err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("devidp: serialize: %w", err)
	}
	return s, nil
}

// verifyJWT checks that token is a compact JWS signed by one of the
// provider's keys and returns its decoded claims. It does not check any
// claim.
func (p *Provider) verifyJWT(token string) (map[string]any, error) {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, fmt.Errorf("parse jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("jwt must have exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	p.mu.Lock()
	var pub *rsa.PublicKey
	for _, k := range p.keys {
		if k.kid == kid {
			pub = &k.priv.PublicKey
		}
	}
	p.mu.Unlock()
	if pub == nil {
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		return nil, fmt.Errorf("verify jwt: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, fmt.Errorf("decode jwt claims: %w", err)
	}
	return claims, nil
}

func (p *Provider) handleJWKS(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	p.mu.Lock()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(p.keys))}
	for i := len(p.keys) - 1; i >= 0; i-- { // active key first
		k := p.keys[i]
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key:       &k.priv.PublicKey,
			KeyID:     k.kid,
			Use:       "sig",
			Algorithm: string(jose.RS256),
		})
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, set)
}

// atHash returns the OpenID Connect at_hash of an access token for RS256.
func atHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}
