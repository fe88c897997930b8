package auth

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/sessions"
)

// TestPolicy_FailsClosed: a policy with no rule lets nobody pass, even
// though validation refuses such a policy (defence in depth); only
// any_user: true lets every signed-in user pass.
func TestPolicy_FailsClosed(t *testing.T) {
	admin := &sessions.Session{Subject: "a", Email: "a@example.com", EmailVerified: true, Groups: []string{"admins"},
		Claims: map[string][]string{"roles": {"x"}}}
	nobody := &sessions.Session{Subject: "n"}
	for _, tc := range []struct {
		name        string
		allow       config.Allow
		admin, anon bool
	}{
		{"no rule", config.Allow{}, false, false},
		{"empty lists", config.Allow{Emails: []string{}, Groups: []string{}, Claims: map[string][]string{}}, false, false},
		{"a claim with no values", config.Allow{Claims: map[string][]string{"roles": nil}}, false, false},
		{"any_user", config.Allow{AnyUser: true}, true, true},
		{"a group", config.Allow{Groups: []string{"admins"}}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPolicy(tc.allow)
			if got := p.Allows(admin); got != tc.admin {
				t.Errorf("Allows(admin) = %v, want %v", got, tc.admin)
			}
			if got := p.Allows(nobody); got != tc.anon {
				t.Errorf("Allows(a user with no email or groups) = %v, want %v", got, tc.anon)
			}
			if p.Allows(nil) {
				t.Error("Allows(nil) = true")
			}
			if p.Open() != tc.allow.AnyUser {
				t.Errorf("Open() = %v, want %v", p.Open(), tc.allow.AnyUser)
			}
		})
	}
}

// TestPolicy_Explain: the denied log line says which rules the user
// failed and what the user had, bounded, naming no other user's email.
func TestPolicy_Explain(t *testing.T) {
	many := make([]string, 25)
	for i := range many {
		many[i] = fmt.Sprintf("g%02d", i)
	}
	for _, tc := range []struct {
		name     string
		allow    config.Allow
		s        *sessions.Session
		want     []string
		dontWant []string
	}{
		{"domain", config.Allow{EmailDomains: []string{"example.com", "*.corp.example"}},
			&sessions.Session{Email: "bob@other.org"},
			[]string{`email_domains [example.com, *.corp.example]: the email's domain is "other.org"`}, nil},
		{"no verified email", config.Allow{EmailDomains: []string{"example.com"}, Emails: []string{"alice@example.com"}},
			&sessions.Session{},
			[]string{"email_domains [example.com]: the user has no verified email", "emails (1): the user has no verified email"}, []string{"alice@example.com"}},
		{"groups, bounded", config.Allow{Groups: many},
			&sessions.Session{Groups: []string{"staff", "sales"}},
			[]string{"groups [g00, g01", "g09, … and 15 more]: the user's groups (2) include none of them"}, []string{"g10"}},
		{"claims", config.Allow{Claims: map[string][]string{"roles": {"admin"}}},
			&sessions.Session{Claims: map[string][]string{"roles": {"viewer"}}},
			[]string{"claims.roles [admin]: the user has [viewer]"}, nil},
		{"long values cut", config.Allow{EmailDomains: []string{"example.com"}},
			&sessions.Session{Email: "x@" + strings.Repeat("d", 500) + ".org"},
			[]string{"…"}, []string{strings.Repeat("d", 100)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := NewPolicy(tc.allow).Explain(tc.s)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("Explain = %q, want it to contain %q", got, w)
				}
			}
			for _, w := range tc.dontWant {
				if strings.Contains(got, w) {
					t.Errorf("Explain = %q, must not contain %q", got, w)
				}
			}
		})
	}
}
