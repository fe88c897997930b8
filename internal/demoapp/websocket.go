package demoapp

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// websocketGUID is the fixed GUID of RFC 6455 §1.3.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// wsIdleTimeout closes WebSocket connections that stay silent this long.
const wsIdleTimeout = 5 * time.Minute

// wsLinger bounds how long a failed connection is drained before closing.
const wsLinger = 2 * time.Second

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// WebSocket close codes (RFC 6455 §7.4.1).
const (
	closeNormal          = 1000
	closeProtocolError   = 1002
	closeUnsupportedData = 1003
	closeNoStatus        = 1005
	closeInvalidPayload  = 1007
	closeTooBig          = 1009
)

// wsError is a reason to fail the connection with a close frame.
type wsError struct {
	code   uint16
	reason string
}

func (e *wsError) Error() string { return fmt.Sprintf("websocket %d: %s", e.code, e.reason) }

// websocketAccept computes Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func websocketAccept(key string) string {
	sum := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// headerHasToken reports whether a comma-separated header contains token,
// compared case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// serveWebSocket is a WebSocket echo endpoint built on the standard library.
// It echoes unfragmented text and binary messages of up to 65,535 bytes,
// answers pings and completes the closing handshake; anything else is
// refused with a close frame.
func serveWebSocket(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	decoded, err := base64.StdEncoding.DecodeString(key)
	switch {
	case !headerHasToken(r.Header, "Upgrade", "websocket") || !headerHasToken(r.Header, "Connection", "upgrade"):
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "this endpoint speaks WebSocket only", http.StatusUpgradeRequired)
		return
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, "unsupported WebSocket version", http.StatusUpgradeRequired)
		return
	case err != nil || len(decoded) != 16:
		http.Error(w, "invalid Sec-WebSocket-Key", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "websocket upgrade not supported", http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", websocketAccept(key))
	if err := brw.Flush(); err != nil {
		return
	}
	_ = echoLoop(conn, brw)
}

// echoLoop reads client frames and answers them until the connection closes.
func echoLoop(conn net.Conn, brw *bufio.ReadWriter) error {
	for {
		_ = conn.SetReadDeadline(time.Now().Add(wsIdleTimeout))
		op, payload, err := readFrame(brw.Reader)
		if err != nil {
			var we *wsError
			if errors.As(err, &we) && writeClose(brw.Writer, we.code, we.reason) == nil {
				lingerClose(conn, brw.Reader)
			}
			return err
		}
		switch op {
		case opText, opBinary:
			err = writeFrame(brw.Writer, op, payload)
		case opPing:
			err = writeFrame(brw.Writer, opPong, payload)
		case opPong:
			// Unsolicited pongs are ignored.
		case opClose:
			code := uint16(closeNormal)
			if len(payload) >= 2 {
				code = binary.BigEndian.Uint16(payload)
			}
			if code == closeNoStatus || len(payload) == 0 {
				err = writeFrame(brw.Writer, opClose, nil)
			} else {
				err = writeClose(brw.Writer, code, "")
			}
			if err == nil {
				return nil
			}
		}
		if err != nil {
			return err
		}
	}
}

// lingerClose half-closes conn after a close frame and drains what the
// client still sends for a moment, so that closing with unread input does
// not reset the connection and destroy the close frame in flight.
func lingerClose(conn net.Conn, r io.Reader) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(wsLinger))
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 1<<20))
}

// readFrame reads one masked client frame and returns its opcode and
// unmasked payload. Violations and unsupported frames are *wsError.
func readFrame(r *bufio.Reader) (byte, []byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("read frame header: %w", err)
	}
	fin := hdr[0]&0x80 != 0
	op := hdr[0] & 0x0f
	masked := hdr[1]&0x80 != 0
	length := uint64(hdr[1] & 0x7f)
	switch {
	case hdr[0]&0x70 != 0:
		return 0, nil, &wsError{closeProtocolError, "reserved bits set"}
	case !masked:
		return 0, nil, &wsError{closeProtocolError, "client frames must be masked"}
	case op >= opClose && (!fin || length > 125):
		return 0, nil, &wsError{closeProtocolError, "invalid control frame"}
	case op != opText && op != opBinary && op != opClose && op != opPing && op != opPong && op != opContinuation:
		return 0, nil, &wsError{closeProtocolError, "unknown opcode"}
	case op == opContinuation || !fin:
		return 0, nil, &wsError{closeUnsupportedData, "fragmented messages are not supported"}
	case length == 127:
		return 0, nil, &wsError{closeTooBig, "messages over 65535 bytes are not supported"}
	case length == 126:
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, fmt.Errorf("read frame length: %w", err)
		}
		length = uint64(binary.BigEndian.Uint16(ext[:]))
	}
	var mask [4]byte
	if _, err := io.ReadFull(r, mask[:]); err != nil {
		return 0, nil, fmt.Errorf("read frame mask: %w", err)
	}
	payload := make([]byte, length)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, fmt.Errorf("read frame payload: %w", err)
	}
	for i := range payload {
		payload[i] ^= mask[i%4]
	}
	if op == opText && !utf8.Valid(payload) {
		return 0, nil, &wsError{closeInvalidPayload, "text is not valid UTF-8"}
	}
	if op == opClose && len(payload) == 1 {
		return 0, nil, &wsError{closeProtocolError, "invalid close payload"}
	}
	return op, payload, nil
}

// writeFrame writes one unmasked, final server frame and flushes it.
func writeFrame(w *bufio.Writer, op byte, payload []byte) error {
	if len(payload) > 0xffff {
		return errors.New("websocket payload too large")
	}
	hdr := []byte{0x80 | op}
	if len(payload) <= 125 {
		hdr = append(hdr, byte(len(payload)))
	} else {
		hdr = append(hdr, 126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(payload)))
	}
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	if _, err := w.Write(payload); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// writeClose sends a close frame with a status code and reason.
func writeClose(w *bufio.Writer, code uint16, reason string) error {
	payload := binary.BigEndian.AppendUint16(nil, code)
	if len(reason) > 123 {
		reason = reason[:123]
	}
	return writeFrame(w, opClose, append(payload, reason...))
}
