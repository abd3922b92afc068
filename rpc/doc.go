// Package rpc is ckd's local API: HTTP/1.1 with JSON on a Unix socket.
//
// It holds the request and response types both sides share (types.go),
// the error codes and their Go sentinels (errors.go), the server that
// translates HTTP into calls on a Backend (server.go, stream.go for watch,
// export and import), the Unix socket it listens on (listener.go, with the
// default paths in paths.go), and the Go client used by ckctl and the
// tests (client.go). Package rpctest holds an in-memory Backend for tests.
//
// The package imports neither the store nor the daemon: the daemon
// implements Backend and hands it to NewServer. Keep it free of heavy
// dependencies, because ckctl links it and must start fast.
package rpc
