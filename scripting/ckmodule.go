package scripting

import (
	lua "github.com/yuin/gopher-lua"
)

// The ck module (docs/PROTOCOL.md, Lua hooks): ck.json, ck.log, and outside conflict hooks
// ck.get and ck.node.

const (
	// maxLogLines bounds ck.log lines per call, so a loop cannot flood the
	// log within its timeout; the rest are dropped and counted.
	maxLogLines = 100
	// maxLogMessage bounds one ck.log message, in bytes.
	maxLogMessage = 4096
)

// ckModules returns the frozen ck tables for ordinary and conflict hooks.
func (sb *sandbox) ckModules() (ck, ckConflict *lua.LTable) {
	L := sb.L
	protected := func() *lua.LTable {
		mt := L.NewTable()
		mt.RawSetString("__metatable", lua.LFalse)
		return mt
	}
	sb.jsonArrayMT = protected()
	sb.jsonObjectMT = protected()
	nullMT := protected()
	nullMT.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString("null"))
		return 1
	}))
	sb.jsonNull = L.NewUserData()
	sb.jsonNull.Metatable = nullMT

	json := sb.lib(map[string]lua.LGFunction{
		"encode": sb.jsonEncode,
		"decode": sb.jsonDecode,
		"array":  jsonMark(sb.jsonArrayMT),
		"object": jsonMark(sb.jsonObjectMT),
	})
	json.RawSetString("null", sb.jsonNull)
	frozenJSON := freeze(L, json, "ck.json")

	full := sb.lib(map[string]lua.LGFunction{"log": sb.ckLog, "get": sb.ckGet})
	full.RawSetString("json", frozenJSON)
	full.RawSetString("node", lua.LString(sb.eng.cfg.NodeName))
	conflict := sb.lib(map[string]lua.LGFunction{"log": sb.ckLog})
	conflict.RawSetString("json", frozenJSON)
	return freeze(L, full, "ck"), freeze(L, conflict, "ck")
}

// ckLog is ck.log(level, msg): a line in the daemon's log, with the
// script and key as fields.
func (sb *sandbox) ckLog(L *lua.LState) int {
	level := L.CheckString(1)
	msg := L.ToStringMeta(L.CheckAny(2)).String()
	log := sb.eng.luaLog
	var emit func(string, ...interface{})
	switch level {
	case "trace":
		emit = log.Trace
	case "debug":
		emit = log.Debug
	case "info":
		emit = log.Info
	case "warn":
		emit = log.Warn
	case "error":
		emit = log.Error
	default:
		L.ArgError(1, "level must be trace, debug, info, warn or error")
	}
	if sb.call.logs >= maxLogLines {
		sb.eng.stats.logsDropped.Add(1)
		return 0
	}
	sb.call.logs++
	if len(msg) > maxLogMessage {
		msg = msg[:maxLogMessage] + "…"
	}
	emit(msg, "script", sb.call.hook.Script, "key", sb.call.key)
	return 0
}

// ckGet is ck.get(key): the local value, or nil. It reads through
// Config.Get and never waits on the network.
func (sb *sandbox) ckGet(L *lua.LState) int {
	key := L.CheckString(1)
	if sb.eng.cfg.Get == nil {
		L.RaiseError("ck.get: not available")
	}
	v, found, err := sb.eng.cfg.Get(key)
	if err != nil {
		L.RaiseError("ck.get: %v", err)
	}
	if !found {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(v))
	return 1
}
