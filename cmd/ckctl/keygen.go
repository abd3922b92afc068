package main

import (
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
)

var keygenCmd = &command{
	name:    "keygen",
	args:    "",
	summary: "print a new cluster key",
	detail:  "Prints 32 random bytes in padded base64, for the cluster keyring. Needs no daemon.",
	maxArgs: 0,
	offline: true,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			key := make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return err
			}
			_, err := fmt.Fprintln(e.stdout, base64.StdEncoding.EncodeToString(key))
			return err
		}
	},
}
