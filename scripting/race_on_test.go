//go:build race

package scripting

// raceEnabled: the race detector slows large copies several times over,
// so timing checks allow more slack.
const raceEnabled = true
