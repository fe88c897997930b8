package sessions

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

var redisSetKeepTTL = redis.SetArgs{KeepTTL: true}

// TestRedis_Encryption shows what a copy of the Redis data reveals: not
// the session ID in any encoding, nor the identity or tokens; and that a
// value tampered with or moved to another key opens as no session.
func TestRedis_Encryption(t *testing.T) {
	a, _ := replicas(t)
	s := &Session{
		ID: NewID(), Issuer: "https://idp.example.com", Subject: "subject-alice", User: "user-alice",
		Email: "alice@example.com", Name: "Alice Liddell", PreferredUsername: "alice-pref",
		Groups: []string{"group-admins"}, IdPSessionID: "idp-session-1",
		Claims:  map[string][]string{"roles": {"role-secret"}},
		IDToken: "eyJ.id-token-secret", AccessToken: "access-token-secret", RefreshToken: "refresh-token-secret",
		Created: a.clock.Now(),
	}
	if err := a.Create(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	other := a.create(t, "bob", "sid-bob")
	key := a.sessionKey(lookupDigest(s.ID))
	raw, err := a.rt.admin.Get(t.Context(), key).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if raw[0] != redisFormatV1 {
		t.Errorf("value version byte = %d, want %d", raw[0], redisFormatV1)
	}
	h := sha256.Sum256(append([]byte("gatehouse lookup\x00"), s.ID[:]...))
	if want := a.prefix + "s:" + hex.EncodeToString(h[:]); key != want {
		t.Errorf("key = %s, want %s", key, want)
	}
	secrets := map[string]string{
		"email": s.Email, "name": s.Name, "preferred_username": s.PreferredUsername, "user": s.User,
		"subject": s.Subject, "sid": s.IdPSessionID, "group": "group-admins", "claim": "role-secret",
		"ID token": s.IDToken, "access token": s.AccessToken, "refresh token": s.RefreshToken,
		"ID raw": string(s.ID[:]), "ID hex": hex.EncodeToString(s.ID[:]), "ID HEX": strings.ToUpper(hex.EncodeToString(s.ID[:])),
		"ID base64": base64.StdEncoding.EncodeToString(s.ID[:]), "ID base64url": base64.RawURLEncoding.EncodeToString(s.ID[:]),
		"ID base64 raw": base64.RawStdEncoding.EncodeToString(s.ID[:]), "ID base64url padded": base64.URLEncoding.EncodeToString(s.ID[:]),
	}
	for _, k := range a.rt.keys(t) {
		val, _ := a.rt.admin.Dump(t.Context(), k).Bytes() // whatever the type
		for what, secret := range secrets {
			if strings.Contains(k, secret) || bytes.Contains(raw, []byte(secret)) || bytes.Contains(val, []byte(secret)) {
				t.Errorf("Redis data holds the %s in clear (key %s)", what, k)
			}
		}
	}

	reader := a.withoutCache(t)
	before := a.rt.keys(t)
	hdr, ok := parseHeader(raw)
	if !ok {
		t.Fatal("stored value has no readable header")
	}
	for _, tc := range []struct {
		name string
		at   int // byte to flip
	}{
		{"version", 0},
		{"sid digest", 1},
		{"sub digest", 1 + sha256.Size},
		{"admin length", 1 + 2*sha256.Size + 1},
		{"nonce", hdr.n},
		{"ciphertext", hdr.n + 12 + 3},
		{"tag", len(raw) - 1},
	} {
		t.Run("flipped "+tc.name, func(t *testing.T) {
			bad := bytes.Clone(raw)
			bad[tc.at] ^= 0x01
			if err := a.rt.admin.SetArgs(t.Context(), key, bad, redisSetKeepTTL).Err(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.rt.admin.SetArgs(context.Background(), key, raw, redisSetKeepTTL) })
			if _, err := reader.Get(t.Context(), s.ID); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) {
				t.Errorf("Get(tampered value) error = %v, want ErrNotFound", err)
			}
			if _, err := reader.Get(t.Context(), other.ID); err != nil {
				t.Errorf("Get(other session) after reading a tampered value: %v", err)
			}
			if after := a.rt.keys(t); !slices.Equal(slices.Sorted(slices.Values(after)), slices.Sorted(slices.Values(before))) {
				t.Errorf("keys changed: before %v, after %v", before, after)
			}
		})
	}
	t.Run("value moved to another key", func(t *testing.T) {
		otherKey := a.sessionKey(lookupDigest(other.ID))
		orig, _ := a.rt.admin.Get(t.Context(), otherKey).Bytes()
		a.rt.admin.SetArgs(t.Context(), otherKey, raw, redisSetKeepTTL)
		t.Cleanup(func() { a.rt.admin.SetArgs(context.Background(), otherKey, orig, redisSetKeepTTL) })
		if _, err := reader.Get(t.Context(), other.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(other ID) with s's value = %v, want ErrNotFound", err)
		}
	})
	t.Run("wrong session ID", func(t *testing.T) {
		// Opening under a key the ID does not name fails too.
		if _, err := openValue(other.ID, lookupDigest(s.ID), raw); !errors.Is(err, errBadValue) {
			t.Errorf("openValue with another ID = %v, want errBadValue", err)
		}
	})
	if _, err := reader.Get(t.Context(), s.ID); err != nil {
		t.Errorf("Get after restoring the value: %v", err)
	}
}
