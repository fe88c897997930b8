// Package tune sets gatehouse's Go runtime defaults, chosen from
// measurements (BENCHMARKS.md): a garbage collector that runs less often
// than Go's default, and a memory limit that follows the container's.
// The environment always wins: GOGC and GOMEMLIMIT, when set, are left
// alone.
package tune

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultGOGC is gatehouse's GOGC unless the environment sets one. A
// request allocates little, and a larger heap target halves the
// collector's CPU on the hot path for a few MiB of memory.
const DefaultGOGC = 400

// Result says what Defaults chose, for the start-up log.
type Result struct {
	GOGC        int   // -1 when the environment set it
	MemoryLimit int64 // bytes; 0 when none was set
	LimitSource string
}

// Defaults applies the defaults. With a container memory limit (cgroup v2
// memory.max, or v1 memory.limit_in_bytes) it sets GOMEMLIMIT to 90% of
// it, so the collector works harder before the kernel kills the process.
func Defaults() Result {
	r := Result{GOGC: -1}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGOGC)
		r.GOGC = DefaultGOGC
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if limit, src := containerMemory(); limit > 0 {
			r.MemoryLimit, r.LimitSource = limit/10*9, src
			debug.SetMemoryLimit(r.MemoryLimit)
		}
	}
	return r
}

// containerMemory reads the cgroup memory limit, 0 when there is none.
func containerMemory() (int64, string) {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 { // "max", or v1's "no limit" value
			return 0, ""
		}
		return n, f
	}
	return 0, ""
}
