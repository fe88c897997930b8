package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// errKeysUnavailable means the provider's signing keys could not be
// fetched: the provider is down, not the token bad.
var errKeysUnavailable = errors.New("identity provider signing keys unavailable")

// keyRefetchEvery bounds how often tokens with an unknown key ID make
// gatehouse fetch the provider's keys again. Back-channel logout takes
// tokens from anyone: without a bound, each forged token would cost the
// provider a request.
const keyRefetchEvery = 2 * time.Second

// keySet is the provider's signing keys, from its jwks_uri. It verifies ID
// tokens, logout tokens and bearer tokens for go-oidc's verifiers (through
// a keyUse), and
// fetches the keys again when a token names an unknown key (key rotation,
// OIDC Core §10.1.1), at most once per keyRefetchEvery. Safe for
// concurrent use.
type keySet struct {
	url    string
	client *http.Client

	mu      sync.Mutex // serialises fetches
	keys    []jose.JSONWebKey
	lastTry time.Time
}

// keyUse is the key set as one verifier uses it. limited marks tokens
// from anyone (a back-channel logout, a bearer token): an unknown key ID
// then refetches the keys at most once per keyRefetchEvery. A token from
// the token endpoint, fetched by gatehouse itself, may always refetch:
// right after a rotation the first login must not fail. Immutable, so
// verifiers built once at discovery share it.
type keyUse struct {
	keys    *keySet
	limited bool
}

// VerifySignature implements oidc.KeySet.
func (u keyUse) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	return u.keys.verify(ctx, raw, u.limited)
}

// keyFetch is a keyUse for one verification that remembers whether the
// keys could not be fetched. go-oidc formats a key set's error with %v,
// so its error no longer says that the provider, not the token, was at
// fault: the caller asks fetchErr instead. Not safe for concurrent use:
// make one per verification (verifierFor).
type keyFetch struct {
	keyUse
	fetchErr error // an errKeysUnavailable, or nil
}

// VerifySignature implements oidc.KeySet.
func (f *keyFetch) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	payload, err := f.keyUse.VerifySignature(ctx, raw)
	if errors.Is(err, errKeysUnavailable) {
		f.fetchErr = err
	}
	return payload, err
}

// verify checks a compact JWS against the keys held, fetching them again
// once when none verifies it (limited: at most once per keyRefetchEvery
// while keys are held). Only asymmetric algorithms are accepted, whatever
// the token's header says (RFC 8725 §3.1). It reads the compact
// serialization only: a JWT is never JWS JSON serialization (RFC 7519
// §7.2), although go-oidc's own parse accepts both.
func (k *keySet) verify(ctx context.Context, raw string, limited bool) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, asymmetricAlgList)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("not exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	k.mu.Lock()
	keys := k.keys
	k.mu.Unlock()
	if payload, ok := verifyWith(jws, kid, keys); ok {
		return payload, nil
	}
	keys, err = k.refresh(ctx, limited)
	if err != nil {
		return nil, err
	}
	if payload, ok := verifyWith(jws, kid, keys); ok {
		return payload, nil
	}
	return nil, errors.New("signature does not verify with the provider's keys")
}

func verifyWith(jws *jose.JSONWebSignature, kid string, keys []jose.JSONWebKey) ([]byte, bool) {
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		if payload, err := jws.Verify(&keys[i]); err == nil {
			return payload, true
		}
	}
	return nil, false
}

// refresh fetches the keys, unless limited and the last attempt is recent
// while keys are held, and returns the keys held.
func (k *keySet) refresh(ctx context.Context, limited bool) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if limited && len(k.keys) > 0 && time.Since(k.lastTry) < keyRefetchEvery {
		return k.keys, nil
	}
	k.lastTry = time.Now()
	keys, err := k.fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errKeysUnavailable, err)
	}
	k.keys = keys
	return keys, nil
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", k.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get %s: %s", k.url, resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("read keys from %s: %w", k.url, err)
	}
	var keys []jose.JSONWebKey
	for _, key := range set.Keys {
		if key.Valid() && key.IsPublic() && (key.Use == "" || key.Use == "sig") {
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no signing key", k.url)
	}
	return keys, nil
}

// asymmetricAlgList is asymmetricAlgs as go-jose wants it.
var asymmetricAlgList = func() []jose.SignatureAlgorithm {
	var l []jose.SignatureAlgorithm
	for a := range asymmetricAlgs {
		l = append(l, jose.SignatureAlgorithm(a))
	}
	return l
}()
