//go:build race

package securitytest

const raceEnabled = true
