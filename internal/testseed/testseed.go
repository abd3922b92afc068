// Package testseed gives a randomised test its random source: a fresh
// seed, or the one to replay from -seed or $CK_SEED, logged either way so
// that a failure names the seed that made it. Test support only.
package testseed

import (
	"flag"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

var flagSeed = flag.Uint64("seed", 0, "seed for randomised tests (0: random; also $CK_SEED)")

// Rand returns a random source for t, seeded from -seed, else $CK_SEED,
// else the clock, and logs the seed.
func Rand(t testing.TB) *rand.Rand {
	t.Helper()
	seed := *flagSeed
	if env := os.Getenv("CK_SEED"); seed == 0 && env != "" {
		var err error
		if seed, err = strconv.ParseUint(env, 10, 64); err != nil {
			t.Fatalf("CK_SEED: %v", err)
		}
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with CK_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed>>1|1))
}
