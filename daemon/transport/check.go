package transport

// Check makes the checks New makes of cfg before it opens a socket (the
// interface exists and suits the mode, the sizes, the bind address), so
// that ckd -check refuses what a start would. It binds nothing.
func Check(cfg Config) error {
	_, _, err := cfg.resolve()
	return err
}
