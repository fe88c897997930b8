package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// TestKeySet_CompactOnly: a token signed by the provider's key verifies in
// compact serialization and is refused in JWS JSON serialization, which
// is not a JWT (RFC 7519 §7.2).
func TestKeySet_CompactOnly(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign([]byte(`{"iss":"https://idp.example","sub":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	ks := keyUse{keys: &keySet{keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}}
	compact, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.VerifySignature(t.Context(), compact); err != nil {
		t.Fatalf("compact token: %v", err)
	}
	if payload, err := ks.VerifySignature(t.Context(), jws.FullSerialize()); err == nil {
		t.Fatalf("JSON-serialized token verified (payload %s); want it refused", payload)
	}
}
