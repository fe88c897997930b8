package sessions

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/securecookie"
)

// MaxCookieBytes is the longest cookie value a codec encodes or decodes;
// browsers drop cookies over 4096 bytes (RFC 6265bis §5.6).
const MaxCookieBytes = 4096

// ErrCookie means a cookie value did not open: tampered, truncated, made
// with an unknown key, too old, too long, or for another cookie name.
var ErrCookie = errors.New("cookie does not open")

// Codec seals values into cookie values and opens them again, with
// gorilla/securecookie: AES-256-CTR encryption, then HMAC-SHA256 over the
// cookie name, a timestamp and the ciphertext, compared in constant time
// before anything is decrypted. The cookie name is bound into the MAC, so a
// value cannot be moved from one cookie to another.
//
// Keys are derived from each configured secret with HKDF-SHA256 and a
// purpose label, so the session cookie and the login cookie never share
// keys. The first secret seals; every secret opens, so a secret can be
// rotated without signing everyone out.
//
// A Codec is safe for concurrent use.
type Codec struct {
	name   string
	codecs []securecookie.Codec
	ids    idCache
}

// NewCodec returns a codec for the cookie called name. secrets holds the
// current secret first, then previous ones; purpose separates the keys of
// different cookies; values older than maxAge do not open.
func NewCodec(name, purpose string, secrets [][]byte, maxAge time.Duration) (*Codec, error) {
	if len(secrets) == 0 {
		return nil, errors.New("sessions: no cookie secret")
	}
	c := &Codec{name: name}
	for i, secret := range secrets {
		hashKey, err := hkdf.Key(sha256.New, secret, nil, "gatehouse "+purpose+" cookie hmac-sha256", 32)
		if err != nil {
			return nil, fmt.Errorf("derive cookie keys from secret %d: %w", i, err)
		}
		blockKey, err := hkdf.Key(sha256.New, secret, nil, "gatehouse "+purpose+" cookie aes-256", 32)
		if err != nil {
			return nil, fmt.Errorf("derive cookie keys from secret %d: %w", i, err)
		}
		sc := securecookie.New(hashKey, blockKey).
			SetSerializer(securecookie.NopEncoder{}).
			MaxAge(int(maxAge / time.Second)).
			MaxLength(MaxCookieBytes)
		c.codecs = append(c.codecs, sc)
	}
	return c, nil
}

// Name returns the cookie name the codec binds values to.
func (c *Codec) Name() string { return c.name }

// Seal returns the cookie value holding plaintext, sealed with the
// current (first) secret. plaintext is not modified.
func (c *Codec) Seal(plaintext []byte) (string, error) {
	if len(plaintext) == 0 {
		return "", fmt.Errorf("seal %s cookie: empty value", c.name)
	}
	// securecookie encrypts its input in place: give it a copy.
	v, err := c.codecs[0].Encode(c.name, bytes.Clone(plaintext))
	if err != nil {
		return "", fmt.Errorf("seal %s cookie: %w", c.name, err)
	}
	return v, nil
}

// Open returns the plaintext sealed in value, or ErrCookie. Only the
// canonical encoding opens: the outer base64 layer is not covered by the
// MAC, and Go's decoder would otherwise skip line breaks and ignore the
// spare bits of the last character, so that several strings open to the
// same value.
func (c *Codec) Open(value string) ([]byte, error) {
	if value == "" || len(value) > MaxCookieBytes || strings.ContainsAny(value, "\r\n") {
		return nil, ErrCookie
	}
	if _, err := base64.URLEncoding.Strict().DecodeString(value); err != nil {
		return nil, ErrCookie
	}
	var b []byte
	if err := securecookie.DecodeMulti(c.name, value, &b, c.codecs...); err != nil {
		return nil, ErrCookie
	}
	return b, nil
}

// SealID returns the cookie value for a session ID.
func (c *Codec) SealID(id ID) (string, error) { return c.Seal(id[:]) }

// OpenID returns the session ID sealed in value, or ErrCookie.
//
// A value that opened before is answered from a bounded cache without
// decoding again (a decode is two base64 passes, an HMAC and an AES pass,
// and a dozen allocations); only values that passed the MAC are cached, so
// the cache cannot be filled with forgeries. The cached answer skips
// securecookie's timestamp check, which is harmless: the cookie's max age
// is the session's absolute lifetime, which the store enforces.
func (c *Codec) OpenID(value string) (ID, error) {
	if id, ok := c.ids.get(value); ok {
		return id, nil
	}
	var id ID
	b, err := c.Open(value)
	if err != nil {
		return id, err
	}
	if len(b) != IDBytes {
		return id, ErrCookie
	}
	copy(id[:], b)
	c.ids.put(value, id)
	return id, nil
}

// idCache maps cookie values that opened to their session IDs. It is
// sharded to keep parallel readers off one lock, and bounded: a full shard
// is emptied and refills from the next requests.
type idCache struct {
	shards [idCacheShards]idShard
}

type idShard struct {
	mu sync.RWMutex
	m  map[string]ID
}

const (
	idCacheShards   = 16
	idCachePerShard = 1024 // 16,384 cookies in all, a few MiB at most
)

func (c *idCache) shard(v string) *idShard {
	// Sealed values are base64 of random bytes: any inner byte spreads.
	return &c.shards[(v[len(v)/2]+v[len(v)/3])%idCacheShards]
}

func (c *idCache) get(v string) (ID, bool) {
	if v == "" {
		return ID{}, false
	}
	sh := c.shard(v)
	sh.mu.RLock()
	id, ok := sh.m[v]
	sh.mu.RUnlock()
	return id, ok
}

func (c *idCache) put(v string, id ID) {
	sh := c.shard(v)
	sh.mu.Lock()
	if sh.m == nil || len(sh.m) >= idCachePerShard {
		sh.m = make(map[string]ID, 64)
	}
	sh.m[v] = id
	sh.mu.Unlock()
}
