package direct

import (
	"net"
	"syscall"
)

// Supported reports whether the direct path runs here: it needs peeker,
// which needs a non-blocking peek at a socket.
const Supported = true

// peeker looks at an idle connection's socket without reading from it.
type peeker struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool // p.try, made once
	err error
	buf [1]byte
}

func newPeeker(conn net.Conn) *peeker {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &peeker{rc: rc}
	p.fn = p.try
	return p
}

func (p *peeker) try(fd uintptr) bool {
	_, _, p.err = syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return true
}

// quiet reports whether nothing is waiting on the socket: no byte from the
// upstream and no end of stream. A connection that cannot be peeked at is
// not quiet.
func (p *peeker) quiet() bool {
	if p == nil {
		return false
	}
	if err := p.rc.Read(p.fn); err != nil {
		return false
	}
	return p.err == syscall.EAGAIN || p.err == syscall.EWOULDBLOCK
}
