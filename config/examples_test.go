package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// exampleEnv is what the example configurations in ../testdata need.
var exampleEnv = map[string]string{
	"OIDC_CLIENT_SECRET": "example-client-secret",
	"COOKIE_SECRET":      b64(testKey(1)),
	"ENTRA_TENANT_ID":    "72f988bf-86f1-41af-91ab-2d7cd011db47",
}

const (
	exampleCallback  = "https://app.example.com/_gatehouse/callback"
	exampleSignedOut = "https://app.example.com/_gatehouse/signed-out"
)

// liveLines returns the lines of a YAML file that are not comments.
func liveLines(data []byte) []string {
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, l)
		}
	}
	return out
}

var envRef = regexp.MustCompile(`\$\{([^}]*)\}`)

// TestExamples loads every ../testdata/*.yaml the way gatehouse does, with
// the environment variables they reference set, and expects no problems
// and no warnings.
func TestExamples(t *testing.T) {
	for name, value := range exampleEnv {
		t.Setenv(name, value)
	}
	files, err := filepath.Glob("../testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"gatehouse.example.yaml", "keycloak.yaml", "dex.yaml", "google.yaml", "entra-id.yaml", "okta.yaml"} {
		if !slices.Contains(files, "../testdata/"+want) {
			t.Errorf("../testdata/%s is missing", want)
		}
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range liveLines(data) {
				for _, m := range envRef.FindAllStringSubmatch(l, -1) {
					if _, ok := exampleEnv[m[1]]; !ok {
						t.Errorf("%s uses ${%s}; add it to exampleEnv", path, m[1])
					}
				}
			}
			cfg, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if len(cfg.Warnings) > 0 {
				t.Errorf("warnings:\n%s", lines(cfg.Warnings))
			}
			equal(t, "CallbackURL()", cfg.CallbackURL(), exampleCallback)
			equal(t, "PostLogoutRedirectURL", cfg.OIDC.PostLogoutRedirectURL, exampleSignedOut)
			// The comments tell the operator what to register; they must
			// name the URIs this configuration uses.
			for _, uri := range []string{exampleCallback, exampleSignedOut} {
				if !strings.Contains(string(data), uri) {
					t.Errorf("%s does not mention %s", path, uri)
				}
			}
		})
	}
}

// TestExamples_Providers pins what each provider example promises.
func TestExamples_Providers(t *testing.T) {
	for name, value := range exampleEnv {
		t.Setenv(name, value)
	}
	for _, tc := range []struct {
		file, issuer, groupsClaim string
		scopes                    []string
		allow                     Allow
	}{
		{"keycloak.yaml", "https://sso.example.com/realms/main", "groups", []string{"openid", "email", "profile", "groups"}, Allow{Groups: []string{"app-users", "app-admins"}}},
		{"dex.yaml", "https://dex.example.com/dex", "groups", []string{"openid", "email", "profile", "groups"}, Allow{Groups: []string{"example-org:platform"}}},
		{"google.yaml", "https://accounts.google.com", "groups", []string{"openid", "email", "profile"}, Allow{Emails: []string{"contractor@gmail.com"}, EmailDomains: []string{"example.com"}}},
		{"entra-id.yaml", "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0", "groups", []string{"openid", "email", "profile"}, Allow{Groups: []string{"11111111-2222-3333-4444-555555555555"}}},
		{"okta.yaml", "https://example.okta.com", "groups", []string{"openid", "email", "profile", "groups"}, Allow{Groups: []string{"app-users"}}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			cfg, err := Load("../testdata/" + tc.file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			equal(t, "Issuer", cfg.OIDC.Issuer, tc.issuer)
			equal(t, "GroupsClaim", cfg.OIDC.GroupsClaim, tc.groupsClaim)
			equal(t, "Scopes", cfg.OIDC.Scopes, tc.scopes)
			equal(t, "Allow", cfg.Allow, tc.allow)
			equal(t, "ClientSecret", cfg.OIDC.ClientSecret, exampleEnv["OIDC_CLIENT_SECRET"])
			equal(t, "Keys", cfg.Cookie.Keys, [][]byte{testKey(1)})
			equal(t, "InsecureAllowUnverifiedEmail", cfg.OIDC.InsecureAllowUnverifiedEmail, false)
		})
	}
}

// TestExamples_FullStatesTheDefaults checks that every value written in
// gatehouse.example.yaml is the default it claims to be: the file loads to
// the same configuration as one holding only the required keys.
func TestExamples_FullStatesTheDefaults(t *testing.T) {
	for name, value := range exampleEnv {
		t.Setenv(name, value)
	}
	cfg, err := Load("../testdata/gatehouse.example.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	minimal := `external_url: https://app.example.com
upstream: http://127.0.0.1:8080
oidc:
  issuer: https://sso.example.com/realms/main
  client_id: gatehouse
  client_secret: ${OIDC_CLIENT_SECRET}
cookie:
  secret: ${COOKIE_SECRET}
allow:
  email_domains: [example.com]
`
	want, err := Parse([]byte(minimal), os.LookupEnv)
	if err != nil {
		t.Fatalf("Parse(minimal): %v", err)
	}
	gv, wv := reflect.ValueOf(cfg).Elem(), reflect.ValueOf(want).Elem()
	for i := range gv.NumField() {
		if g, w := gv.Field(i).Interface(), wv.Field(i).Interface(); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: the example gives\n%+v\nthe default is\n%+v", gv.Type().Field(i).Name, g, w)
		}
	}
}

// schemaKeys lists the YAML path of every key of t, e.g. oidc.client_id.
func schemaKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, schemaKeys(f.Type, prefix+tag+".")...)
			continue
		}
		if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
			keys = append(keys, prefix+tag)
			continue // list items (routes) are described by example
		}
		keys = append(keys, prefix+tag)
	}
	return keys
}

// exampleKey matches a key line of the full example: a section at the
// left margin, or a key indented under it, possibly commented out.
var exampleKey = regexp.MustCompile(`^( *)(# ?)?([a-z_]+):(\s|$)`)

// TestExamples_FullListsEveryKey checks that gatehouse.example.yaml names
// every key of the schema, set or commented out, under its section.
func TestExamples_FullListsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../testdata/gatehouse.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	// path[i] is the key at indentation level i (two spaces a level).
	var path []string
	for _, l := range strings.Split(string(data), "\n") {
		m := exampleKey.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		level := len(m[1]) / 2
		if level == 0 && m[2] != "" {
			continue // a commented-out top-level line is prose
		}
		if level > len(path) {
			continue
		}
		path = append(path[:level], m[3])
		listed[strings.Join(path, ".")] = true
	}
	keys := schemaKeys(reflect.TypeFor[Config](), "")
	if len(keys) < 30 {
		t.Fatalf("schemaKeys found only %d keys: %v", len(keys), keys)
	}
	for _, k := range keys {
		if !listed[k] {
			t.Errorf("gatehouse.example.yaml does not list %s", k)
		}
	}
}
