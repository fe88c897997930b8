package auth

import (
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
