//go:build !linux

package timerslack

import "errors"

// Ensure does nothing where the timer slack cannot be set.
func Ensure(ns uint64) error { return nil }

// Current is unknown here.
func Current() (uint64, error) { return 0, errors.ErrUnsupported }
