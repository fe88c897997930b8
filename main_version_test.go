package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

// TestRun_VersionFlags: --version and -version print the version, like
// the version command, instead of reaching serve's flags.
func TestRun_VersionFlags(t *testing.T) {
	_, want, _ := runMain(t, "version")
	for _, arg := range []string{"--version", "-version"} {
		code, stdout, stderr := runMain(t, arg)
		if code != 0 || stdout != want || !strings.HasPrefix(stdout, "gatehouse ") || stderr != "" {
			t.Errorf("gatehouse %s: exit %d, stdout %q, stderr %q; want 0, %q, nothing", arg, code, stdout, stderr, want)
		}
	}
}

func TestBuildVersion(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i+1 < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		name     string
		version  string
		settings []debug.BuildSetting
		want     string
	}{
		{"go install of a release", "v1.2.3", nil, "v1.2.3"},
		{"checkout", "(devel)", vcs("vcs.revision", rev, "vcs.time", "2026-01-02T03:04:05Z", "vcs.modified", "false"),
			"devel (0123456789ab, 2026-01-02T03:04:05Z)"},
		{"modified checkout", "(devel)", vcs("vcs.revision", rev, "vcs.time", "2026-01-02T03:04:05Z", "vcs.modified", "true"),
			"devel (0123456789ab-dirty, 2026-01-02T03:04:05Z)"},
		{"release with revision", "v1.2.3", vcs("vcs.revision", rev, "vcs.time", "2026-01-02T03:04:05Z"),
			"v1.2.3 (0123456789ab, 2026-01-02T03:04:05Z)"},
		{"revision without time", "", vcs("vcs.revision", "abc", "vcs.modified", "true"), "devel (abc-dirty)"},
		{"nothing known", "", nil, "devel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/gatehouse/gatehouse", Version: tc.version}, Settings: tc.settings}
			if got := buildVersion(bi); got != tc.want {
				t.Errorf("buildVersion(%q, %v) = %q, want %q", tc.version, tc.settings, got, tc.want)
			}
		})
	}
}
