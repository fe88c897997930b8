package dbsc_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/dbsc"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func ecJWK(t *testing.T, k *ecdsa.PrivateKey) map[string]any {
	t.Helper()
	pub, err := k.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"kty": "EC", "crv": "P-256", "x": b64(pub[1:33]), "y": b64(pub[33:])}
}

func rsaJWK(k *rsa.PrivateKey) map[string]any {
	return map[string]any{"kty": "RSA", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

// token builds a compact JWT from header and payload, signed by sign.
func token(t *testing.T, header, payload any, sign func(signed []byte) []byte) string {
	t.Helper()
	hb, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := json.Marshal(payload)
	signed := b64(hb) + "." + b64(pb)
	return signed + "." + b64(sign([]byte(signed)))
}

func es256(t *testing.T, k *ecdsa.PrivateKey) func([]byte) []byte {
	return func(signed []byte) []byte {
		d := sha256.Sum256(signed)
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig
	}
}

func rs256(t *testing.T, k *rsa.PrivateKey) func([]byte) []byte {
	return func(signed []byte) []byte {
		d := sha256.Sum256(signed)
		sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

func TestVerifyRegistration(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	hdr := func(alg string, jwk any) map[string]any {
		h := map[string]any{"alg": alg, "typ": "dbsc+jwt"}
		if jwk != nil {
			h["jwk"] = jwk
		}
		return h
	}
	jti := map[string]string{"jti": "c1"}
	withD := ecJWK(t, ec)
	d, err := ec.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	withD["d"] = b64(d)
	offCurve := ecJWK(t, ec)
	offCurve["y"] = b64(make([]byte, 32))
	hs := func(signed []byte) []byte { m := hmac.New(sha256.New, []byte("k")); m.Write(signed); return m.Sum(nil) }
	for _, tc := range []struct {
		name   string
		raw    string
		reason string // "" accepts
	}{
		{"ES256", token(t, hdr("ES256", ecJWK(t, ec)), jti, es256(t, ec)), ""},
		{"RS256", token(t, hdr("RS256", rsaJWK(rk)), jti, rs256(t, rk)), ""},
		{"wrong key", token(t, hdr("ES256", ecJWK(t, ec)), jti, es256(t, other)), "signature"},
		{"signature of another payload", func() string {
			a := token(t, hdr("ES256", ecJWK(t, ec)), jti, es256(t, ec))
			b := token(t, hdr("ES256", ecJWK(t, ec)), map[string]string{"jti": "c2"}, es256(t, ec))
			return a[:strings.LastIndexByte(a, '.')] + b[strings.LastIndexByte(b, '.'):]
		}(), "signature"},
		{"alg none", token(t, hdr("none", ecJWK(t, ec)), jti, func([]byte) []byte { return nil }), "alg"},
		{"alg HS256", token(t, hdr("HS256", ecJWK(t, ec)), jti, hs), "alg"},
		{"alg ES384", token(t, hdr("ES384", ecJWK(t, ec)), jti, func([]byte) []byte { return make([]byte, 96) }), "alg"},
		{"alg PS256", token(t, hdr("PS256", rsaJWK(rk)), jti, rs256(t, rk)), "alg"},
		{"alg RS256 with an EC key", token(t, hdr("RS256", ecJWK(t, ec)), jti, rs256(t, rk)), "alg"},
		{"alg ES256 with an RSA key", token(t, hdr("ES256", rsaJWK(rk)), jti, es256(t, ec)), "alg"},
		{"typ jwt", token(t, map[string]any{"alg": "ES256", "typ": "JWT", "jwk": ecJWK(t, ec)}, jti, es256(t, ec)), "typ"},
		{"no typ", token(t, map[string]any{"alg": "ES256", "jwk": ecJWK(t, ec)}, jti, es256(t, ec)), "typ"},
		{"no jwk", token(t, hdr("ES256", nil), jti, es256(t, ec)), "jwk"},
		{"jwk not an object", token(t, hdr("ES256", "key"), jti, es256(t, ec)), "jwk"},
		{"jwk P-384", token(t, hdr("ES256", map[string]any{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}), jti, es256(t, ec)), "jwk"},
		{"jwk short x", token(t, hdr("ES256", map[string]any{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": ecJWK(t, ec)["y"]}), jti, es256(t, ec)), "jwk"},
		{"jwk point off the curve", token(t, hdr("ES256", offCurve), jti, es256(t, ec)), "jwk"},
		{"jwk with a private key", token(t, hdr("ES256", withD), jti, es256(t, ec)), "jwk"},
		{"jwk oct", token(t, hdr("ES256", map[string]any{"kty": "oct", "k": "AAAA"}), jti, es256(t, ec)), "jwk"},
		{"jwk RSA 1024", token(t, hdr("RS256", rsaJWK(small)), jti, rs256(t, small)), "jwk"},
		{"jwk RSA e=1", token(t, hdr("RS256", map[string]any{"kty": "RSA", "n": rsaJWK(rk)["n"], "e": "AQ"}), jti, rs256(t, rk)), "jwk"},
		{"no jti", token(t, hdr("ES256", ecJWK(t, ec)), map[string]string{}, es256(t, ec)), "challenge"},
		{"jti too long", token(t, hdr("ES256", ecJWK(t, ec)), map[string]string{"jti": strings.Repeat("c", 600)}, es256(t, ec)), "challenge"},
		{"ASN.1 signature", token(t, hdr("ES256", ecJWK(t, ec)), jti, func(signed []byte) []byte {
			d := sha256.Sum256(signed)
			sig, _ := ecdsa.SignASN1(rand.Reader, ec, d[:])
			return sig
		}), "signature"},
		{"oversized header", token(t, map[string]any{"alg": "ES256", "typ": "dbsc+jwt", "jwk": ecJWK(t, ec), "pad": strings.Repeat("x", dbsc.MaxProofBytes)}, jti, es256(t, ec)), "too_large"},
		{"two parts", "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJjMSJ9", "malformed"},
		{"four parts", "a.b.c.d", "malformed"},
		{"padded base64", strings.Replace(token(t, hdr("ES256", ecJWK(t, ec)), jti, es256(t, ec)), ".", "=.", 1), "malformed"},
		{"header not JSON", b64([]byte("{")) + "." + b64([]byte(`{"jti":"c1"}`)) + "." + b64(make([]byte, 64)), "malformed"},
		{"empty", "", "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := dbsc.VerifyRegistration(tc.raw)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if p.Challenge != "c1" || p.Key.JWK == "" {
					t.Errorf("proof %+v", p)
				}
				return
			}
			var pe *dbsc.ProofError
			if !errors.As(err, &pe) || !errors.Is(err, dbsc.ErrProof) {
				t.Fatalf("got %v, %v; want a refusal for %s", p, err, tc.reason)
			}
			if pe.Reason != tc.reason {
				t.Errorf("reason %q (%v), want %q", pe.Reason, err, tc.reason)
			}
		})
	}
}

func TestVerifyRefresh(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	reg, err := dbsc.VerifyRegistration(token(t, map[string]any{"alg": "ES256", "typ": "dbsc+jwt", "jwk": ecJWK(t, ec)},
		map[string]string{"jti": "r"}, es256(t, ec)))
	if err != nil {
		t.Fatal(err)
	}
	// The stored form parses back to the same key.
	stored, err := dbsc.ParseJWK([]byte(reg.Key.JWK))
	if err != nil || stored.Thumbprint() != reg.Key.Thumbprint() {
		t.Fatalf("stored key %q: %v", reg.Key.JWK, err)
	}
	plain := map[string]any{"alg": "ES256", "typ": "dbsc+jwt"}
	if p, err := dbsc.VerifyRefresh(token(t, plain, map[string]string{"jti": "c2"}, es256(t, ec)), stored); err != nil || p.Challenge != "c2" {
		t.Errorf("refresh with the stored key: %v %v", p, err)
	}
	// Another key in the header does not replace the stored one.
	swap := map[string]any{"alg": "ES256", "typ": "dbsc+jwt", "jwk": ecJWK(t, other)}
	if _, err := dbsc.VerifyRefresh(token(t, swap, map[string]string{"jti": "c2"}, es256(t, other)), stored); !errors.Is(err, dbsc.ErrProof) {
		t.Errorf("refresh signed by another key with its jwk: %v, want refused", err)
	}
	if _, err := dbsc.VerifyRefresh(token(t, plain, map[string]string{"jti": "c2"}, es256(t, ec)), nil); err == nil {
		t.Error("refresh without a stored key accepted")
	}
}

func TestHeaderValues(t *testing.T) {
	if got, want := dbsc.RegistrationValue("/_gatehouse/dbsc/register", "abc"), `(ES256);path="/_gatehouse/dbsc/register";challenge="abc"`; got != want {
		t.Errorf("registration %q, want %q", got, want)
	}
	if got, want := dbsc.ChallengeValue("abc", "id1"), `"abc";id="id1"`; got != want {
		t.Errorf("challenge %q, want %q", got, want)
	}
	b, _ := json.Marshal(dbsc.Session("id1", "/r", "c", "Path=/"))
	want := `{"session_identifier":"id1","refresh_url":"/r","scope":{"include_site":false,"scope_specification":[]},"credentials":[{"type":"cookie","name":"c","attributes":"Path=/"}]}`
	if string(b) != want {
		t.Errorf("instructions %s, want %s", b, want)
	}
	b, _ = json.Marshal(dbsc.End("id1"))
	if string(b) != `{"session_identifier":"id1","continue":false}` {
		t.Errorf("end %s", b)
	}
}

func FuzzVerifyRegistration(f *testing.F) {
	f.Add("a.b.c")
	f.Add(`eyJhbGciOiJFUzI1NiIsInR5cCI6ImRic2Mrand0In0.eyJqdGkiOiJjIn0.` + strings.Repeat("A", 86))
	f.Fuzz(func(t *testing.T, raw string) {
		// No forged proof verifies: nothing here is signed by a key whose
		// private half the fuzzer has.
		if p, err := dbsc.VerifyRegistration(raw); err == nil {
			t.Fatalf("accepted %q: %+v", raw, p)
		}
	})
}
