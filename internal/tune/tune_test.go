package tune

import "testing"

func TestChoose(t *testing.T) {
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	const gib = 1 << 30
	for _, tc := range []struct {
		name      string
		env       map[string]string
		container int64
		want      Result
	}{
		{"no limit anywhere: Go's default GOGC, no memory limit", nil, 0,
			Result{GOGC: 100}},
		{"container limit: 90% of it, and the larger GOGC", nil, 2 * gib,
			Result{GOGC: DefaultGOGC, MemoryLimit: 2 * gib / 10 * 9, LimitSource: "memory.max"}},
		{"GOMEMLIMIT from the environment: left alone, larger GOGC", map[string]string{"GOMEMLIMIT": "1GiB"}, 2 * gib,
			Result{GOGC: DefaultGOGC}},
		{"GOGC from the environment wins", map[string]string{"GOGC": "50"}, 2 * gib,
			Result{GOGC: -1, MemoryLimit: 2 * gib / 10 * 9, LimitSource: "memory.max"}},
		{"both from the environment", map[string]string{"GOGC": "off", "GOMEMLIMIT": "1GiB"}, 0,
			Result{GOGC: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := choose(env(tc.env), tc.container, "memory.max"); got != tc.want {
				t.Errorf("choose = %+v, want %+v", got, tc.want)
			}
		})
	}
}
