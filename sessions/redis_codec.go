package sessions

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// How the redis store writes a session, so that a copy of the Redis data
// (a dump, a replica, a backup) reveals neither cookie values nor tokens:
//
//	key   <prefix>s:<hex(SHA-256("gatehouse lookup\x00" || id))>
//	value version (1 byte, redisFormatV1)
//	      sid index digest (32 bytes; zero when the session has no sid)
//	      sub index digest (32 bytes; zero when the session has no subject)
//	      admin length (2 bytes, big endian), admin description (that many bytes)
//	      nonce (12 bytes, random) || AES-256-GCM ciphertext || tag (16 bytes)
//
// The AES key is HKDF-SHA256(id, info "gatehouse redis value"): only the
// session ID, which only the browser's sealed cookie carries, opens the
// value. A Redis dump alone cannot (the key name is a one-way hash of the
// ID), and the cookie secret alone cannot either (it seals cookies, not
// values). The GCM additional data is the key's digest and the plaintext
// header, so a value moved to another key, or a header edited, fails to
// open.
//
// The admin description (subject, user, email, login time, client address
// and user agent; never a token) is sealed separately, with AES-256-GCM
// under a key derived from the cookie secret (Options.AdminKeys), so that
// session administration can list a user's sessions without their IDs.
// It is empty when no admin key is set.
//
// The index digests stay in clear text so that a logout by sid or subject,
// which has no session ID to derive keys from, can still remove a session
// from its other index. They are the same digests that name the index
// sets, so they add nothing a dump does not already show.

const (
	redisFormatV1 = 1

	lookupLabel = "gatehouse lookup\x00"
	valueInfo   = "gatehouse redis value"

	digestHexLen = 2 * sha256.Size
	// fixedHeaderLen is the header without the admin description.
	fixedHeaderLen = 1 + 2*sha256.Size + 2
	// valueMinLen is the fixed header, the nonce and the tag around an
	// empty plaintext.
	valueMinLen = fixedHeaderLen + 12 + 16
)

// digest is a SHA-256 hash that names something in Redis.
type digest [sha256.Size]byte

// lookupDigest returns the hash that names the session's key. It does not
// allocate: the hot path computes it on every request.
func lookupDigest(id ID) digest {
	var buf [len(lookupLabel) + IDBytes]byte
	copy(buf[:], lookupLabel)
	copy(buf[len(lookupLabel):], id[:])
	return sha256.Sum256(buf[:])
}

// indexDigest returns the hash that names the sid or sub index set holding
// v's sessions, or the zero digest for an empty v (no index).
func indexDigest(kind, v string) digest {
	if v == "" {
		return digest{}
	}
	return sha256.Sum256([]byte("gatehouse " + kind + "\x00" + v))
}

func (d digest) hex() string { return hex.EncodeToString(d[:]) }

// parseDigest reads a digest from its hex form.
func parseDigest(s string) (digest, bool) {
	var d digest
	if len(s) != digestHexLen {
		return d, false
	}
	_, err := hex.Decode(d[:], []byte(s))
	return d, err == nil
}

// errBadValue is a stored value that is malformed, of an unknown version
// (a rolling upgrade that changes the format must keep reading version 1),
// or does not authenticate under the session's key: Redis was tampered
// with, or a value was copied from another key. It reads as a missing
// session (fail closed).
var errBadValue = fmt.Errorf("%w: stored value does not open", ErrNotFound)

// redisRecord is what a value encrypts: the session's exported data,
// without its ID (the key stands for it), last-seen time (the key's
// expiry stands for it) or derived caches.
type redisRecord struct {
	Issuer            string              `json:"iss,omitempty"`
	Subject           string              `json:"sub,omitempty"`
	User              string              `json:"user,omitempty"`
	Email             string              `json:"email,omitempty"`
	EmailVerified     bool                `json:"email_verified,omitempty"`
	Name              string              `json:"name,omitempty"`
	PreferredUsername string              `json:"preferred_username,omitempty"`
	Groups            []string            `json:"groups,omitempty"`
	IdPSessionID      string              `json:"sid,omitempty"`
	Claims            map[string][]string `json:"claims,omitempty"`
	IDToken           string              `json:"id_token,omitempty"`
	AccessToken       string              `json:"access_token,omitempty"`
	RefreshToken      string              `json:"refresh_token,omitempty"`
	AccessExpiry      time.Time           `json:"access_expiry,omitzero"`
	RefreshAt         time.Time           `json:"refresh_at,omitzero"`
	Created           time.Time           `json:"created"`
	ClientIP          string              `json:"ip,omitempty"`
	UserAgent         string              `json:"ua,omitempty"`
	// AuthTime is absent in values stored by earlier versions: unknown.
	AuthTime time.Time `json:"auth_time,omitzero"`
	// ACR and NewDevice are absent in values stored by earlier versions:
	// no acr known, no new-device notice pending.
	ACR       string `json:"acr,omitempty"`
	NewDevice bool   `json:"new_device,omitempty"`
	// DeviceKey is absent in values stored by earlier versions: unbound.
	DeviceKey string    `json:"device_key,omitempty"`
	BoundAt   time.Time `json:"bound_at,omitzero"`
}

// adminRecord is the admin description a value carries.
type adminRecord struct {
	Subject   string    `json:"sub,omitempty"`
	User      string    `json:"user,omitempty"`
	Email     string    `json:"email,omitempty"`
	Created   time.Time `json:"created"`
	ClientIP  string    `json:"ip,omitempty"`
	UserAgent string    `json:"ua,omitempty"`
	Bound     bool      `json:"bound,omitempty"`
}

// adminAEAD returns the AEAD of an admin key.
func adminAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// valueAEAD returns the AEAD that seals the values of the session with id.
func valueAEAD(id ID) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, id[:], nil, valueInfo, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// additionalData binds a value to its key and its clear-text header.
func additionalData(d digest, header []byte) []byte {
	ad := make([]byte, 0, len(d)+len(header))
	return append(append(ad, d[:]...), header...)
}

// sealValue encrypts s for the key named d; adminKey, when set, seals
// its admin description.
func sealValue(d digest, s *Session, adminKey []byte) ([]byte, error) {
	plain, err := json.Marshal(redisRecord{
		Issuer: s.Issuer, Subject: s.Subject, User: s.User, Email: s.Email,
		EmailVerified: s.EmailVerified, Name: s.Name, PreferredUsername: s.PreferredUsername,
		Groups: s.Groups, IdPSessionID: s.IdPSessionID, Claims: s.Claims,
		IDToken: s.IDToken, AccessToken: s.AccessToken, RefreshToken: s.RefreshToken,
		AccessExpiry: s.AccessExpiry, RefreshAt: s.RefreshAt, Created: s.Created, ClientIP: s.ClientIP, UserAgent: s.UserAgent,
		AuthTime: s.AuthTime, ACR: s.ACR, NewDevice: s.NewDevice,
		DeviceKey: s.DeviceKey, BoundAt: s.BoundAt,
	})
	if err != nil {
		return nil, fmt.Errorf("encode session: %w", err)
	}
	var admin []byte
	if adminKey != nil {
		info, err := json.Marshal(adminRecord{Subject: s.Subject, User: s.User, Email: s.Email,
			Created: s.Created, ClientIP: s.ClientIP, UserAgent: s.UserAgent, Bound: s.DeviceKey != ""})
		if err != nil {
			return nil, err
		}
		aead, err := adminAEAD(adminKey)
		if err != nil {
			return nil, err
		}
		admin = aead.Seal(nil, nil, info, d[:])
		if len(admin) > 0xffff {
			return nil, errors.New("encode session: admin description too long")
		}
	}
	aead, err := valueAEAD(s.ID)
	if err != nil {
		return nil, fmt.Errorf("session value key: %w", err)
	}
	headerLen := fixedHeaderLen + len(admin)
	out := make([]byte, headerLen, headerLen+12+16+len(plain))
	out[0] = redisFormatV1
	sid, sub := indexDigest("sid", s.IdPSessionID), indexDigest("sub", s.Subject)
	copy(out[1:], sid[:])
	copy(out[1+len(sid):], sub[:])
	binary.BigEndian.PutUint16(out[1+2*sha256.Size:], uint16(len(admin)))
	copy(out[fixedHeaderLen:], admin)
	return aead.Seal(out, nil, plain, additionalData(d, out[:headerLen])), nil
}

// valueHeader is a value's clear-text part.
type valueHeader struct {
	sid, sub digest
	admin    []byte // the sealed admin description, maybe empty
	n        int    // the header's length
}

// parseHeader reads a value's clear-text header.
func parseHeader(raw []byte) (h valueHeader, ok bool) {
	if len(raw) < valueMinLen || raw[0] != redisFormatV1 {
		return h, false
	}
	copy(h.sid[:], raw[1:])
	copy(h.sub[:], raw[1+sha256.Size:])
	n := int(binary.BigEndian.Uint16(raw[1+2*sha256.Size:]))
	if len(raw) < valueMinLen+n {
		return h, false
	}
	h.admin = raw[fixedHeaderLen : fixedHeaderLen+n]
	h.n = fixedHeaderLen + n
	return h, true
}

// openAdmin opens a value's admin description with any of keys.
func openAdmin(keys [][]byte, d digest, sealed []byte) (adminRecord, bool) {
	var rec adminRecord
	for _, k := range keys {
		aead, err := adminAEAD(k)
		if err != nil {
			continue
		}
		if plain, err := aead.Open(nil, nil, sealed, d[:]); err == nil {
			return rec, json.Unmarshal(plain, &rec) == nil
		}
	}
	return rec, false
}

// openValue decrypts the value stored under the key named d, which must
// be id's. Any failure is errBadValue.
func openValue(id ID, d digest, raw []byte) (*Session, error) {
	h, ok := parseHeader(raw)
	if !ok {
		return nil, errBadValue
	}
	aead, err := valueAEAD(id)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, nil, raw[h.n:], additionalData(d, raw[:h.n]))
	if err != nil {
		return nil, errBadValue
	}
	var rec redisRecord
	if err := json.Unmarshal(plain, &rec); err != nil {
		return nil, errBadValue
	}
	return &Session{
		ID: id, Issuer: rec.Issuer, Subject: rec.Subject, User: rec.User, Email: rec.Email,
		EmailVerified: rec.EmailVerified, Name: rec.Name, PreferredUsername: rec.PreferredUsername,
		Groups: rec.Groups, IdPSessionID: rec.IdPSessionID, Claims: rec.Claims,
		IDToken: rec.IDToken, AccessToken: rec.AccessToken, RefreshToken: rec.RefreshToken,
		AccessExpiry: rec.AccessExpiry, RefreshAt: rec.RefreshAt, Created: rec.Created, ClientIP: rec.ClientIP, UserAgent: rec.UserAgent,
		AuthTime: rec.AuthTime, ACR: rec.ACR, NewDevice: rec.NewDevice,
		DeviceKey: rec.DeviceKey, BoundAt: rec.BoundAt,
	}, nil
}

// valueIndexes reads the index digests from a value's clear-text header,
// without the session ID (for logouts by sid or subject).
func valueIndexes(raw []byte) (sid, sub digest, ok bool) {
	h, ok := parseHeader(raw)
	return h.sid, h.sub, ok
}
