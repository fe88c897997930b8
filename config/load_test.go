package config

import (
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

// TestLoad_Golden loads every testdata/*.yaml and compares the text of
// the error with testdata/*.golden. Refresh with go test ./config -update.
func TestLoad_Golden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.yaml")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cfg, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want an error", path, cfg)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load(%s) error is %T (%v), want *Error", path, err, err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./config -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Load(%s) error:\n%s\nwant (%s):\n%s", path, got, golden, want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	t.Run("valid", func(t *testing.T) {
		cfg, err := Load(write("valid.yaml", validYAML))
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		equal(t, "ExternalURL", cfg.ExternalURL, "https://app.example.com")
	})

	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(dir, "missing.yaml")
		cfg, err := Load(path)
		if cfg != nil || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Load = %v, %v; want nil and an error wrapping fs.ErrNotExist", cfg, err)
		}
		equal(t, "error", err.Error(), "read config: open "+path+": no such file or directory")
		var ce *Error
		if errors.As(err, &ce) {
			t.Errorf("error is an *Error (%v), want a read error", ce)
		}
	})

	t.Run("directory", func(t *testing.T) {
		cfg, err := Load(dir)
		if cfg != nil || err == nil {
			t.Fatalf("Load = %v, %v; want an error", cfg, err)
		}
		equal(t, "error", err.Error(), "read config "+dir+": read "+dir+": is a directory")
	})

	// pad returns validYAML followed by a comment, n bytes in all.
	pad := func(n int) string {
		s := validYAML + "#"
		return s + strings.Repeat("x", n-len(s))
	}

	t.Run("larger than 1 MiB", func(t *testing.T) {
		path := write("large.yaml", pad(MaxFileBytes+1))
		cfg, err := Load(path)
		if cfg != nil || err == nil {
			t.Fatalf("Load = %v, %v; want an error", cfg, err)
		}
		equal(t, "error", err.Error(), "read config "+path+": larger than 1048576 bytes")
	})

	t.Run("exactly 1 MiB", func(t *testing.T) {
		if _, err := Load(write("max.yaml", pad(1<<20))); err != nil {
			t.Fatalf("Load: %v", err)
		}
	})

	t.Run("problems name the file first", func(t *testing.T) {
		path := write("bad.yaml", withAllow(plus("listen: nowhere\nsession:\n  max_sessions: -1\n")))
		cfg, err := Load(path)
		if cfg != nil {
			t.Errorf("Load returned a config along with an error")
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("error is %T (%v), want *Error", err, err)
		}
		equal(t, "Error.File", ce.File, path)
		if !strings.HasPrefix(err.Error(), path+": ") {
			t.Errorf("Error() = %q, want it to start with %q", err, path+": ")
		}
		equal(t, "Error()", err.Error(), path+": 2 configuration problem(s):\n"+
			`  listen (line 9): "nowhere" is not host:port; write e.g. 127.0.0.1:4180 or :4180`+"\n"+
			"  session.max_sessions (line 11): must be at least 1 (got -1)")
	})

	t.Run("environment and secret files", func(t *testing.T) {
		// Secret files are read relative to the working directory, not
		// to the configuration file's directory.
		chdirSecrets(t)
		t.Setenv("GATEHOUSE_TEST_CLIENT_ID", "from-env")
		path := write("env.yaml", withAllow(edit("  client_id: gatehouse\n  client_secret: s3cret\ncookie:\n  secret: "+rawSecret,
			"  client_id: ${GATEHOUSE_TEST_CLIENT_ID}\n  client_secret_file: client.secret\ncookie:\n  secret_file: cookie.secret")))
		cfg, err := Load(path)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		equal(t, "ClientID", cfg.OIDC.ClientID, "from-env")
		equal(t, "ClientSecret", cfg.OIDC.ClientSecret, "from-file")
		equal(t, "Keys", cfg.Cookie.Keys, [][]byte{testKey(1)})
	})
}
