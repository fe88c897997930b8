package sessions

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
)

// The fuzz codecs use fixed secrets and no age limit, so the sealed values
// stored in testdata/fuzz keep opening. fuzzPrevSecret seals the "old key"
// seeds; the codec opens both.
var (
	fuzzSecret     = []byte("gatehouse fuzz secret, current..")
	fuzzPrevSecret = []byte("gatehouse fuzz secret, previous.")
)

func newFuzzCodec(t testing.TB, secrets ...[]byte) *Codec {
	t.Helper()
	c, err := NewCodec(testCookie, "session", secrets, 0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// FuzzOpenID feeds arbitrary strings to OpenID: it must never panic, a
// failure is always ErrCookie with the zero ID, only canonical encodings
// open, and any value that opens holds an ID that seals and opens again to
// the same ID.
func FuzzOpenID(f *testing.F) {
	c := newFuzzCodec(f, fuzzSecret, fuzzPrevSecret)
	prev := newFuzzCodec(f, fuzzPrevSecret)
	other := newFuzzCodec(f, []byte("another secret entirely........."))

	var zero ID
	ids := []ID{zero, {0xff, 0xfe}, NewID()}
	for _, id := range ids {
		for _, codec := range []*Codec{c, prev, other} {
			v, err := codec.SealID(id)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(v)
			f.Add(v[:len(v)/2])
			f.Add(v[:len(v)-1])
			f.Add(v + "=")
			f.Add(v + v)
		}
	}
	for _, n := range []int{1, IDBytes - 1, IDBytes + 1, 200} {
		v, err := c.Seal(bytes.Repeat([]byte{'x'}, n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v)
	}
	for _, s := range []string{"", "=", "====", "|", "a|b|c", "MTIzfHh8eQ==", "\x00", "\xff\xfe", "%41", "null"} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, value string) {
		id, err := c.OpenID(value)
		if err != nil {
			if !errors.Is(err, ErrCookie) {
				t.Fatalf("OpenID(%q) error = %v, want ErrCookie", value, err)
			}
			if id != zero {
				t.Fatalf("OpenID(%q) failed with %v but returned ID %v", value, err, id)
			}
			return
		}
		// Only the exact text a codec produced opens: canonical base64url
		// (no stray line breaks, zero spare bits before the padding).
		if raw, err := base64.URLEncoding.DecodeString(value); err != nil || base64.URLEncoding.EncodeToString(raw) != value {
			t.Errorf("OpenID opened %q, which is not the canonical encoding of its bytes", value)
		}
		again, err := c.SealID(id)
		if err != nil {
			t.Fatalf("SealID of an ID that opened from %q: %v", value, err)
		}
		got, err := c.OpenID(again)
		if err != nil || got != id {
			t.Fatalf("OpenID(SealID(%v)) = %v, %v; want the same ID", id, got, err)
		}
		// The cached and uncached paths agree.
		if got2, err := c.OpenID(value); err != nil || got2 != id {
			t.Fatalf("second OpenID(%q) = %v, %v; want %v, nil", value, got2, err, id)
		}
	})
}

// FuzzCookieTamper seals a real value and changes one character of it at
// the fuzzer's position: either to the fuzzer's byte, or, when xor is
// set, to the base64url digit XORed with the byte's low six bits (which
// stays inside the alphabet and so reaches the MAC check). Positions from
// 0xff00 up count back from the end (0xffff is the last character), so
// seeds can aim at the padding whatever the value's length. A value that
// differs from the original must not open.
func FuzzCookieTamper(f *testing.F) {
	c := newFuzzCodec(f, fuzzSecret, fuzzPrevSecret)
	for _, n := range []uint8{IDBytes, 0, 1, 29, 33} {
		f.Add(n, uint16(0), byte('A'), false)
		f.Add(n, uint16(10), byte('|'), false)
		f.Add(n, uint16(60), byte(1), true)
		f.Add(n, uint16(0xffff), byte(1), true)  // last character
		f.Add(n, uint16(0xfffe), byte(3), true)  // last but one
		f.Add(n, uint16(0xfffd), byte(15), true) // last but two
	}

	f.Fuzz(func(t *testing.T, plainLen uint8, pos uint16, b byte, xor bool) {
		plain := bytes.Repeat([]byte{'p'}, int(plainLen))
		v, err := c.Seal(plain)
		if err != nil {
			t.Skip() // too long to seal
		}
		mutated := []byte(v)
		i := int(pos) % len(mutated)
		if pos >= 0xff00 { // count from the end
			i = len(mutated) - 1 - int(0xffff-pos)%len(mutated)
		}
		if xor {
			d := bytes.IndexByte([]byte(b64URL), mutated[i])
			if d < 0 { // padding
				return
			}
			mutated[i] = b64URL[d^int(b&63)]
		} else {
			mutated[i] = b
		}
		if string(mutated) == v {
			return
		}
		got, err := c.Open(string(mutated))
		if !errors.Is(err, ErrCookie) {
			t.Errorf("value %q with byte %d changed %q→%q opened to %q, %v; want ErrCookie",
				v, i, v[i], mutated[i], got, err)
		}
		if plainLen == IDBytes {
			if id, err := c.OpenID(string(mutated)); !errors.Is(err, ErrCookie) {
				t.Errorf("OpenID of tampered value = %v, %v; want ErrCookie", id, err)
			}
		}
	})
}

const b64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
