//go:build !linux

package direct

import "net"

// Supported reports whether the direct path runs here: elsewhere than
// Linux, every request goes through httputil.ReverseProxy; the direct
// path needs a non-blocking peek at a socket to keep idle connections
// honest (see peek_linux.go).
const Supported = false

type peeker struct{}

func newPeeker(net.Conn) *peeker { return nil }

func (*peeker) quiet() bool { return false }
