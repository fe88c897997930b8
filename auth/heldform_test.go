package auth

import (
	"bytes"
	"testing"
)

func TestHeldForm_SealOpen(t *testing.T) {
	f := heldForm{Subject: "alice", Method: "POST", URI: "/a?b=c", ContentType: "application/x-www-form-urlencoded", Body: []byte("x=1")}
	id, key, ref := newHeldRef()
	sealed, err := sealHeld(key, id, f.encode())
	if err != nil {
		t.Fatal(err)
	}
	id2, key2, ok := parseHeldRef(ref)
	if !ok || !bytes.Equal(id, id2) || !bytes.Equal(key, key2) {
		t.Fatal("ref does not round-trip")
	}
	plain, err := openHeld(key, id, sealed)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeHeldForm(plain)
	if err != nil || got.Subject != f.Subject || got.URI != f.URI || string(got.Body) != "x=1" || got.ContentType != f.ContentType || got.Method != "POST" {
		t.Fatalf("decode = %+v, %v", got, err)
	}
	otherID, otherKey, _ := newHeldRef()
	if _, err := openHeld(otherKey, id, sealed); err == nil {
		t.Error("another browser's key opened the form")
	}
	if _, err := openHeld(key, otherID, sealed); err == nil {
		t.Error("the form opened under another ID")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := openHeld(key, id, sealed); err == nil {
		t.Error("a tampered form opened")
	}
}

// FuzzHeldFormCodec: decoding never panics, and what decodes re-encodes
// to the same bytes.
func FuzzHeldFormCodec(f *testing.F) {
	f.Add((&heldForm{Subject: "a", Method: "POST", URI: "/", ContentType: "x", Body: []byte("b")}).encode())
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeldForm(b)
		if err != nil {
			return
		}
		if !bytes.Equal(h.encode(), b) {
			t.Fatalf("re-encoding %x differs", b)
		}
	})
}
