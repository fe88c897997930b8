//go:build !race

package securitytest

const raceEnabled = false
