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

// DefaultGOGC is gatehouse's GOGC when a memory limit is in force and
// the environment sets no GOGC. A request allocates little, and a larger
// heap target makes the collector run less often on the hot path.
//
// Without a memory limit gatehouse keeps Go's default (100): the heap may
// grow to (1+GOGC/100) times the live heap before a collection, and with
// a million sessions (about 4 GB live) 400 would mean 20 GB. The limit is
// what makes the larger target safe.
const DefaultGOGC = 400

// Result says what Defaults chose, for the start-up log.
type Result struct {
	GOGC        int   // -1 when the environment set it
	MemoryLimit int64 // bytes; 0 when gatehouse set none
	LimitSource string
}

// Defaults applies the defaults. With a container memory limit (cgroup v2
// memory.max, or v1 memory.limit_in_bytes) it sets GOMEMLIMIT to 90% of
// it, so the collector works harder before the kernel kills the process.
func Defaults() Result {
	limit, src := containerMemory()
	r := choose(os.Getenv, limit, src)
	if r.GOGC > 0 {
		debug.SetGCPercent(r.GOGC)
	}
	if r.MemoryLimit > 0 {
		debug.SetMemoryLimit(r.MemoryLimit)
	}
	return r
}

// choose decides the runtime settings from the environment and the
// container's memory limit (0 when there is none).
func choose(getenv func(string) string, containerLimit int64, src string) Result {
	r := Result{GOGC: -1}
	limited := getenv("GOMEMLIMIT") != ""
	if !limited && containerLimit > 0 {
		r.MemoryLimit, r.LimitSource = containerLimit/10*9, src
		limited = true
	}
	if getenv("GOGC") == "" {
		r.GOGC = 100
		if limited {
			r.GOGC = DefaultGOGC
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
