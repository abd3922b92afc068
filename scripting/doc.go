// Package scripting is CloudKnowledge's Lua hook engine (docs/PROTOCOL.md, Lua hooks), on
// gopher-lua.
//
// A hook block names a key pattern and a script; the script defines any of
// on_set, on_get and on_conflict. New compiles every script once; the
// compiled code (a FunctionProto) is shared by all Lua states. Calls run on
// a bounded pool of sandboxed states (pool.go), each call on its state's
// own goroutine so the caller can walk away the instant the hook's timeout
// passes; an overrunning state is abandoned, never reused. Calls that find
// every state busy queue for one, first come first served.
//
// The sandbox (sandbox.go) allows the base library without loading or
// environment functions, string without dump, table, math and the ck
// module (ckmodule.go, json.go); every call runs the script's chunk in a
// fresh environment, so nothing a call writes is seen by the next.
// Conflict hooks get a deterministic variant: no ck.get, ck.node or
// math.random, and read-only globals.
//
// Limits: gopher-lua checks the call's context only between VM
// instructions, so built-ins that can run long or build large strings are
// replaced: string.rep, string.format, table.concat, gsub and
// ck.json.encode are checked against a per-call memory budget
// (limits.go), and find/match/gmatch/gsub run on a port of Lua 5.1's
// pattern matcher that counts its steps and polls the context
// (luapattern.go). Concatenation, which no wrapper can reach, is bounded by
// the timeout and by a heap watchdog (watchdog.go).
//
// One process-wide setting changes: lua.MaxArrayIndex is lowered to 2^20
// (engine.go's init explains why), which only matters for sequences of
// more than a million elements.
//
// The package imports neither the store, the daemon nor rpc: the daemon
// hands it a Get function for ck.get and maps its errors (errors.go) to
// API codes.
package scripting
