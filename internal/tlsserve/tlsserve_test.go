package tlsserve

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/internal/devca"
)

// TestHolder_HalfWrittenRotation: a check that catches the new
// certificate beside the old key refuses the pair once, and the check
// after the key is written loads it; a check with nothing changed reads
// nothing.
func TestHolder_HalfWrittenRotation(t *testing.T) {
	ca, err := devca.New("holder test CA")
	if err != nil {
		t.Fatal(err)
	}
	first, err := ca.IssueFor("app.example.com")
	if err != nil {
		t.Fatal(err)
	}
	second, err := ca.IssueFor("app.example.com")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := first.Write(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	h, err := NewHolder(certFile, keyFile, "app.example.com", slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.Check() {
		t.Error("Check reloaded with no file changed")
	}

	if err := os.WriteFile(certFile, second.CertPEM, 0o644); err != nil { // the key not yet
		t.Fatal(err)
	}
	if h.Check() || !h.Current().Leaf.Equal(first.Leaf) {
		t.Fatal("a certificate beside the old key was taken")
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "key=tls.key_file file="+keyFile) {
		t.Errorf("no ERROR naming the key file:\n%s", logs.String())
	}
	if h.Check() {
		t.Error("the refused pair was read again with no file changed")
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines for one bad pair, want 1", n)
	}

	if err := os.WriteFile(keyFile, second.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if !h.Check() || !h.Current().Leaf.Equal(second.Leaf) {
		t.Fatal("the completed pair was not loaded")
	}
}

// TestHolder_ConcurrentHandshakes: handshakes read the pair while
// reloads replace it (run with -race).
func TestHolder_ConcurrentHandshakes(t *testing.T) {
	ca, _ := devca.New("holder test CA")
	p, _ := ca.IssueFor("app.example.com")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := p.Write(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	h, err := NewHolder(certFile, keyFile, "app.example.com", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				if c, _ := h.GetCertificate(nil); c == nil || c.Leaf == nil {
					t.Error("GetCertificate returned no pair")
					return
				}
			}
		})
	}
	for range 20 {
		h.Reload("test")
	}
	wg.Wait()
}
