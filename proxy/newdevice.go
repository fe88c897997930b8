package proxy

import (
	"net/http"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/sessions"
)

// identityHeaderNames are the configured names of the headers gatehouse
// sets for the app, which the stripper removes from every client request
// (with their look-alikes): the identity headers and, when set,
// headers.new_device.
func identityHeaderNames(h config.Headers) []string {
	names := []string{h.User, h.Email, h.Groups, h.Name}
	if h.NewDevice != "" {
		names = append(names, h.NewDevice)
	}
	return names
}

// tellNewDevice sets headers.new_device on the first request to the app
// after a sign-in from a new device (session.new_device), and clears the
// session's mark so that later requests do not carry it.
func (h *gate) tellNewDevice(r *http.Request, s *sessions.Session) {
	if h.newDevice == "" || !s.NewDevice {
		return
	}
	r.Header[h.newDevice] = []string{"1"}
	h.auth.NewDeviceSeen(r, s)
}
