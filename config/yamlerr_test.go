package config

import (
	"errors"
	"strings"
	"testing"
)

// TestParse_SyntaxErrorExcerpt checks that a YAML syntax error shows the
// lines around it with their numbers, a caret under the suspect column
// and, for the common mistakes, a hint.
func TestParse_SyntaxErrorExcerpt(t *testing.T) {
	const head = "external_url: https://app.example.com\nupstream: http://127.0.0.1:8080\noidc:\n  issuer: https://sso.example.com\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{
			name: "key dedented, the next line indented",
			yaml: head + "  client_id: gatehouse\nclient_secret: s3cret\n  scopes: [openid]\n",
			want: `line 7: not valid YAML: mapping values are not allowed in this context
    5 |   client_id: gatehouse
    6 | client_secret: <redacted>
    7 |   scopes: [openid]
      |         ^
    hint: check the indentation of line 7 against the line above it (a key must line up with the keys of its mapping); quote a value that contains ': ', e.g. "a: b"`,
		},
		{
			name: "value containing ': '",
			yaml: head + "  client_id: my: client\n",
			want: `line 5: not valid YAML: mapping values are not allowed in this context
    3 | oidc:
    4 |   issuer: https://sso.example.com
    5 |   client_id: my: client
      |                ^
    hint: check the indentation of line 5 against the line above it (a key must line up with the keys of its mapping); quote a value that contains ': ', e.g. "a: b"`,
		},
		{
			name: "key dedented by one space",
			yaml: head + "  client_id: gatehouse\n client_secret: s3cret\ncookie:\n  secret: x\n",
			want: `line 6: not valid YAML: did not find expected key
    4 |   issuer: https://sso.example.com
    5 |   client_id: gatehouse
    6 |  client_secret: <redacted>
      |  ^
    hint: check the indentation of line 6 against the lines above it: the keys of one mapping (and the - of one list) start in the same column`,
		},
		{
			name: "tab",
			yaml: head + "\tclient_id: gatehouse\n",
			want: "line 5: not valid YAML: found a tab character that violates indentation\n" +
				"    3 | oidc:\n" +
				"    4 |   issuer: https://sso.example.com\n" +
				"    5 | \tclient_id: gatehouse\n" +
				"      | ^\n" +
				"    hint: tabs are not allowed in YAML indentation; indent with spaces",
		},
		{
			name: "list not closed",
			yaml: head + "  scopes: [openid, email\ncookie:\n  secret: x\n",
			want: `line 5: not valid YAML: did not find expected ',' or ']'
    3 | oidc:
    4 |   issuer: https://sso.example.com
    5 |   scopes: [openid, email
      |           ^
    hint: a [list] or {mapping} on one line must be closed on that line`,
		},
		{
			name: "URL credentials stay out",
			yaml: "session:\n  redis:\n    url: redis://:hunter2@127.0.0.1:6379\n   key_prefix: x\n",
			want: `line 4: not valid YAML: did not find expected key
    2 |   redis:
    3 |     url: redis://<redacted>@127.0.0.1:6379
    4 |    key_prefix: x
      |    ^
    hint: check the indentation of line 4 against the lines above it: the keys of one mapping (and the - of one list) start in the same column`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), func(string) (string, bool) { return "", false })
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Problems) != 1 {
				t.Fatalf("Parse: %v; want one problem", err)
			}
			if got := ce.Problems[0].String(); got != tc.want {
				t.Errorf("yaml:\n%s\ngot:\n%s\nwant:\n%s", tc.yaml, got, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows a secret:\n%v", err)
			}
		})
	}
}
