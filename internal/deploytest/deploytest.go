// Package deploytest helps the tests of gatehouse's deployment files (the
// Kubernetes manifests and the Helm chart, a module of its own) load the
// gatehouse.yaml they carry: it finds every file the configuration names,
// and makes valid stand-ins for the secrets mounted there.
package deploytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// FileRef is one value in a configuration that names a file.
type FileRef struct {
	Key  string     // YAML path, lists as [], e.g. assertion.previous_key_files[]
	Node *yaml.Node // the scalar holding the path
}

// FileRefs finds every *_file and *_files value under n; prefix is the
// YAML path of n ("" for a document).
func FileRefs(n *yaml.Node, prefix string) []FileRef {
	var out []FileRef
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			out = append(out, FileRefs(c, prefix)...)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			out = append(out, FileRefs(c, prefix+"[]")...)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := strings.TrimPrefix(prefix+"."+k.Value, ".")
			switch {
			case strings.HasSuffix(k.Value, "_file") && v.Kind == yaml.ScalarNode:
				out = append(out, FileRef{p, v})
			case strings.HasSuffix(k.Value, "_files") && v.Kind == yaml.SequenceNode:
				for _, item := range v.Content {
					out = append(out, FileRef{p + "[]", item})
				}
			default:
				out = append(out, FileRefs(v, p)...)
			}
		}
	}
	return out
}

// Stand-ins: valid contents for the secret files a configuration names.
func ClientSecret(*testing.T) string { return "test-client-secret\n" }
func CookieSecret(*testing.T) string {
	return base64.StdEncoding.EncodeToString(RandomBytes(32)) + "\n"
}
func RedisURL(*testing.T) string   { return "redis://:password@redis:6379/0\n" }
func AdminToken(*testing.T) string { return hex.EncodeToString(RandomBytes(16)) + "\n" }

// RandomBytes returns n bytes from crypto/rand.
func RandomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}

// ECDSAKeyPEM returns a fresh ECDSA P-256 private key in PEM, as
// openssl ecparam -name prime256v1 -genkey -noout writes it.
func ECDSAKeyPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}
