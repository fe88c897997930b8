// Package dbsc reads and writes the wire format of Device Bound Session
// Credentials (W3C webappsec-dbsc), the part a server needs: it verifies
// the browser's Secure-Session-Response proof (a JWT typed dbsc+jwt,
// signed with the browser's device key) and formats the
// Secure-Session-Registration and Secure-Session-Challenge headers and the
// session instructions answered at registration and refresh.
//
// It is pure: no HTTP handlers, no clock, no state. It accepts ES256
// (P-256) and RS256 (RSA, 2048 to 4096 bits) keys only, as Chromium
// offers them; every other algorithm, "none" included, is refused
// before any key is read (algorithm confusion, RFC 8725 §2.1).
package dbsc

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Header names.
const (
	// RegistrationHeader offers the browser a bound session.
	RegistrationHeader = "Secure-Session-Registration"
	// ResponseHeader carries the browser's signed proof.
	ResponseHeader = "Secure-Session-Response"
	// ChallengeHeader gives the browser a challenge to sign at refresh.
	ChallengeHeader = "Secure-Session-Challenge"
	// SessionIDHeader names the browser's session at refresh.
	SessionIDHeader = "Sec-Secure-Session-Id"
)

// MaxProofBytes bounds a Secure-Session-Response value: an RS256 proof with
// a 4096-bit key in its header is under 2 KiB; anything far larger is
// refused before it is decoded.
const MaxProofBytes = 8 << 10

// MaxChallengeBytes bounds a challenge (the jti the browser signs).
const MaxChallengeBytes = 512

// ErrProof matches every error of Verify with errors.Is.
var ErrProof = errors.New("dbsc proof refused")

// ProofError says why a proof was refused; Reason is a stable code for
// logs and metrics (too_large, malformed, typ, alg, jwk, signature,
// challenge).
type ProofError struct {
	Reason string
	Detail string
}

func (e *ProofError) Error() string { return "dbsc proof refused: " + e.Reason + ": " + e.Detail }

// Is makes errors.Is(err, ErrProof) true.
func (e *ProofError) Is(target error) bool { return target == ErrProof }

func refuse(reason, format string, args ...any) error {
	return &ProofError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Key is a device's public key, as the browser sent it at registration.
type Key struct {
	// JWK is the key's canonical JSON (RFC 7638 §3: the required members
	// only, in lexicographic order, no white space): what a store keeps.
	JWK string
	pub crypto.PublicKey
}

// Thumbprint is the key's RFC 7638 SHA-256 thumbprint, base64url.
func (k *Key) Thumbprint() string {
	h := sha256.Sum256([]byte(k.JWK))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// Alg is the algorithm the key signs with: ES256 or RS256.
func (k *Key) Alg() string {
	if _, ok := k.pub.(*rsa.PublicKey); ok {
		return "RS256"
	}
	return "ES256"
}

// Proof is a verified Secure-Session-Response.
type Proof struct {
	Key       *Key   // the key that signed it
	Challenge string // the jti: the challenge the browser signed
}

type header struct {
	Alg string          `json:"alg"`
	Typ string          `json:"typ"`
	JWK json.RawMessage `json:"jwk"`
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// VerifyRegistration checks a registration proof: a JWT whose header names
// its own public key (jwk), signed with that key. It returns the key and
// the signed challenge; the caller checks that the challenge is one it
// issued, unused. Nothing is trusted before the signature checks out
// except the size, the typ and the algorithm.
func VerifyRegistration(raw string) (*Proof, error) {
	h, signed, payload, sig, err := split(raw)
	if err != nil {
		return nil, err
	}
	if len(h.JWK) == 0 {
		return nil, refuse("jwk", "the header carries no jwk")
	}
	key, err := ParseJWK(h.JWK)
	if err != nil {
		return nil, err
	}
	return finish(h, key, signed, payload, sig)
}

// VerifyRefresh checks a refresh proof with the key stored at
// registration. A jwk in the header is ignored: only the stored key
// counts.
func VerifyRefresh(raw string, key *Key) (*Proof, error) {
	if key == nil {
		return nil, refuse("jwk", "no registered key")
	}
	h, signed, payload, sig, err := split(raw)
	if err != nil {
		return nil, err
	}
	return finish(h, key, signed, payload, sig)
}

// split decodes a compact JWT, bounded, and checks its typ and alg.
func split(raw string) (h header, signed string, payload, sig []byte, err error) {
	if len(raw) > MaxProofBytes {
		return h, "", nil, nil, refuse("too_large", "%d bytes, at most %d", len(raw), MaxProofBytes)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return h, "", nil, nil, refuse("malformed", "a compact JWT has 3 parts, got %d", len(parts))
	}
	hb, err1 := b64(parts[0])
	payload, err2 := b64(parts[1])
	sig, err3 := b64(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return h, "", nil, nil, refuse("malformed", "not base64url: %v", err)
	}
	if err := strictJSON(hb, &h); err != nil {
		return h, "", nil, nil, refuse("malformed", "header: %v", err)
	}
	if !strings.EqualFold(h.Typ, "dbsc+jwt") {
		return h, "", nil, nil, refuse("typ", "typ %q, want dbsc+jwt", h.Typ)
	}
	if h.Alg != "ES256" && h.Alg != "RS256" {
		return h, "", nil, nil, refuse("alg", "alg %q; only ES256 and RS256 are accepted", h.Alg)
	}
	return h, parts[0] + "." + parts[1], payload, sig, nil
}

// finish checks the signature with key, then reads the payload.
func finish(h header, key *Key, signed string, payload, sig []byte) (*Proof, error) {
	if h.Alg != key.Alg() {
		return nil, refuse("alg", "alg %q does not fit the %s key", h.Alg, key.Alg())
	}
	digest := sha256.Sum256([]byte(signed))
	switch pub := key.pub.(type) {
	case *ecdsa.PublicKey:
		// JWS ES256 is r||s, 32 bytes each (RFC 7518 §3.4), not ASN.1.
		if len(sig) != 64 {
			return nil, refuse("signature", "ES256 signature of %d bytes, want 64", len(sig))
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(pub, digest[:], r, s) {
			return nil, refuse("signature", "does not verify with the key")
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
			return nil, refuse("signature", "does not verify with the key")
		}
	default:
		return nil, refuse("jwk", "unsupported key")
	}
	var claims struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, refuse("malformed", "payload: %v", err)
	}
	if claims.JTI == "" || len(claims.JTI) > MaxChallengeBytes {
		return nil, refuse("challenge", "jti missing or longer than %d bytes", MaxChallengeBytes)
	}
	return &Proof{Key: key, Challenge: claims.JTI}, nil
}

// ParseJWK reads an EC P-256 or RSA (2048 to 4096 bits, e = 65537 or
// another odd exponent above 1) public key, refusing private members and
// any other kind of key.
func ParseJWK(raw []byte) (*Key, error) {
	if len(raw) > MaxProofBytes {
		return nil, refuse("jwk", "too large")
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, refuse("jwk", "not a JSON object: %v", err)
	}
	if _, ok := probe["d"]; ok {
		return nil, refuse("jwk", "carries a private key (d)")
	}
	var k jwk
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, refuse("jwk", "%v", err)
	}
	switch k.Kty {
	case "EC":
		return parseEC(k)
	case "RSA":
		return parseRSA(k)
	}
	return nil, refuse("jwk", "kty %q; only EC (P-256) and RSA are accepted", k.Kty)
}

func parseEC(k jwk) (*Key, error) {
	if k.Crv != "P-256" {
		return nil, refuse("jwk", "crv %q; only P-256 is accepted", k.Crv)
	}
	x, err1 := b64(k.X)
	y, err2 := b64(k.Y)
	if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
		return nil, refuse("jwk", "x and y must be 32 bytes of base64url each")
	}
	// ecdsa.ParseUncompressedPublicKey checks that the point is on the
	// curve (invalid-curve attacks).
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		return nil, refuse("jwk", "not a point on P-256")
	}
	return &Key{pub: pub, JWK: fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":%q,"y":%q}`, k.X, k.Y)}, nil
}

func parseRSA(k jwk) (*Key, error) {
	n, err1 := b64(k.N)
	e, err2 := b64(k.E)
	if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 || n[0] == 0 || e[0] == 0 {
		return nil, refuse("jwk", "n and e must be unpadded base64url big-endian integers")
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	if bits := pub.N.BitLen(); bits < 2048 || bits > 4096 {
		return nil, refuse("jwk", "RSA key of %d bits; 2048 to 4096 are accepted", bits)
	}
	if pub.E < 3 || pub.E%2 == 0 {
		return nil, refuse("jwk", "RSA exponent %d is not an odd number above 1", pub.E)
	}
	return &Key{pub: pub, JWK: fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, k.E, k.N)}, nil
}

// b64 decodes unpadded base64url, strictly (no spare bits, no line breaks).
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

// strictJSON decodes one JSON object and nothing after it.
func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

// RegistrationValue is the Secure-Session-Registration header value that
// offers a bound session: an ES256 key, the registration path and a
// challenge, e.g. (ES256);path="/r";challenge="c", the form Chromium was
// measured to act on. RS256 proofs still verify (a browser may only have
// an RSA key), but ES256 is what is asked for. path and
// challenge must be sf-string safe (printable ASCII without '"' and '\'),
// which callers guarantee by using URL paths and base64url challenges.
func RegistrationValue(path, challenge string) string {
	return `(ES256);path="` + path + `";challenge="` + challenge + `"`
}

// ChallengeValue is the Secure-Session-Challenge header value that gives
// the browser's session id a challenge: "c";id="id".
func ChallengeValue(challenge, id string) string {
	return `"` + challenge + `";id="` + id + `"`
}

// Instructions is the session configuration answered at registration and
// refresh (the JSON the browser reads).
type Instructions struct {
	SessionIdentifier string       `json:"session_identifier"`
	RefreshURL        string       `json:"refresh_url,omitempty"`
	Scope             *Scope       `json:"scope,omitempty"`
	Credentials       []Credential `json:"credentials,omitempty"`
	// Continue false ends the browser's session (a refresh answer for a
	// session the server no longer has).
	Continue *bool `json:"continue,omitempty"`
}

// Scope is where the browser's session applies.
type Scope struct {
	IncludeSite        bool       `json:"include_site"`
	ScopeSpecification []struct{} `json:"scope_specification"`
}

// Credential is a cookie the browser keeps fresh.
type Credential struct {
	Type       string `json:"type"`
	Name       string `json:"name"`
	Attributes string `json:"attributes"`
}

// Session returns the instructions for a session on this origin only:
// refreshURL, one bound cookie with attributes.
func Session(id, refreshURL, cookie, attributes string) Instructions {
	return Instructions{
		SessionIdentifier: id, RefreshURL: refreshURL,
		Scope:       &Scope{ScopeSpecification: []struct{}{}},
		Credentials: []Credential{{Type: "cookie", Name: cookie, Attributes: attributes}},
	}
}

// End returns the refresh answer that ends the browser's session id.
func End(id string) Instructions {
	f := false
	return Instructions{SessionIdentifier: id, Continue: &f}
}
