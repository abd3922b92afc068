//go:build !linux

package main

import (
	"context"
	"errors"
)

// runLoop needs epoll: elsewhere the loop client is not there.
func runLoop(context.Context, config, kind) (result, error) {
	return result{}, errors.New("-client loop needs Linux (epoll); use -client raw")
}
