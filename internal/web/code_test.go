package web

import (
	"errors"
	"fmt"
	"testing"
)

func TestCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"web error", &Error{Code: "bad_original_request"}, "bad_original_request"},
		{"wrapped web error", fmt.Errorf("check: %w", &Error{Code: "untrusted_forwarder"}), "untrusted_forwarder"},
		{"web error without code", &Error{Title: "x"}, "internal"},
		{"other error", errors.New("boom"), "internal"},
		{"nil", nil, "internal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Code(tc.err); got != tc.want {
				t.Errorf("Code(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}
