package rpc

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// A request head as the fast path reads it (fastpath.go).

// headEnd returns the length of the request head at the start of b (up to
// its blank line), 0 if b does not hold all of it yet; bad for a line
// ended by a bare LF, or a blank first line, which net/http judges.
func headEnd(b []byte) (end int, bad bool) {
	for i := 0; ; i++ {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0, false
		}
		i += j
		if i < 2 || b[i-1] != '\r' {
			return 0, true
		}
		if i >= 3 && b[i-2] == '\n' {
			return i + 1, false
		}
	}
}

// fastRequest is a plain key request, as the fast path takes it.
type fastRequest struct {
	method string // http.MethodGet or http.MethodPut
	key    string
	raw    bool         // GET ?raw
	length int64        // Content-Length; -1 without
	close  bool         // Connection: close
	opts   WriteOptions // a PUT's wait and timeout
}

// parse reads head into r and reports whether it is a request the fast
// path answers: GET or PUT of /v1/kv/{key} over HTTP/1.1, with a Host, no
// query but GET's raw and PUT's wait and timeout (parseWriteQuery), a PUT
// with a Content-Length, no Transfer-Encoding,
// Expect or Upgrade, and nothing net/http would refuse. The key is taken
// as route takes it: the escaped path, unescaped once.
func (r *fastRequest) parse(head []byte) bool {
	*r = fastRequest{length: -1}
	line, rest := cutCRLF(head)
	method, line, _ := bytes.Cut(line, []byte(" "))
	switch string(method) {
	case http.MethodGet:
		r.method = http.MethodGet
	case http.MethodPut:
		r.method = http.MethodPut
	default:
		return false
	}
	target, proto, _ := bytes.Cut(line, []byte(" "))
	if string(proto) != "HTTP/1.1" {
		return false
	}
	path, query, hasQuery := bytes.Cut(target, []byte("?"))
	switch {
	case !hasQuery:
	case r.method == http.MethodGet && string(query) == "raw":
		r.raw = true
	case r.method == http.MethodPut && r.parseWriteQuery(query):
	default:
		return false
	}
	key, ok := bytes.CutPrefix(path, []byte("/v1/kv/"))
	if !ok || !r.parseKey(key) {
		return false
	}
	host := false
	for len(rest) > 0 {
		line, rest = cutCRLF(rest)
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !isToken(name) {
			return false
		}
		value = bytes.Trim(value, " \t")
		if !isFieldValue(value) {
			return false
		}
		switch {
		case bytes.EqualFold(name, []byte("Host")):
			if host || !isHost(value) {
				return false
			}
			host = true
		case bytes.EqualFold(name, []byte("Content-Length")):
			if r.length >= 0 || !parseLength(value, &r.length) {
				return false
			}
		case bytes.EqualFold(name, []byte("Connection")):
			switch {
			case bytes.EqualFold(value, []byte("close")):
				r.close = true
			case !bytes.EqualFold(value, []byte("keep-alive")):
				return false
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")),
			bytes.EqualFold(name, []byte("Expect")),
			bytes.EqualFold(name, []byte("Upgrade")):
			return false
		}
	}
	switch {
	case !host:
		return false // net/http answers 400
	case r.method == http.MethodPut:
		return r.length >= 0
	default:
		return r.length <= 0
	}
}

// parseWriteQuery takes a PUT's query when it is only wait=N and
// timeout=D, each at most once, in letters, digits and dots (nothing to
// unescape), and valid as writeOptions takes them: a replicated write
// (ckctl set --wait) stays on the fast path. Anything else, an invalid
// value included, is left to net/http, which answers it as it always did.
func (r *fastRequest) parseWriteQuery(q []byte) bool {
	var sawWait, sawTimeout bool
	for len(q) > 0 {
		var kv []byte
		kv, q, _ = bytes.Cut(q, []byte("&"))
		name, value, ok := bytes.Cut(kv, []byte("="))
		if !ok || len(value) == 0 || !onlyBytes(value, ".") {
			return false
		}
		switch {
		case string(name) == "wait" && !sawWait:
			n, err := strconv.Atoi(string(value))
			if err != nil || n < 0 {
				return false
			}
			sawWait, r.opts.Wait = true, n
		case string(name) == "timeout" && !sawTimeout:
			d, err := time.ParseDuration(string(value))
			if err != nil || d < 0 {
				return false
			}
			sawTimeout, r.opts.Timeout = true, Duration(d)
		default:
			return false
		}
	}
	return true
}

// parseKey takes the key from its escaped path: only unreserved
// characters, "/" and valid %-escapes, where url.URL.EscapedPath is the
// path as sent; anything else is left to net/http.
func (r *fastRequest) parseKey(b []byte) bool {
	escaped := false
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '/':
		case c == '%':
			escaped = true
		default:
			return false
		}
	}
	if !escaped {
		r.key = string(b)
		return true
	}
	key, err := url.PathUnescape(string(b))
	r.key = key
	return err == nil
}

// parseLength parses a Content-Length: 1 to 18 decimal digits.
func parseLength(b []byte, n *int64) bool {
	if len(b) == 0 || len(b) > 18 {
		return false
	}
	*n = 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
		*n = *n*10 + int64(c-'0')
	}
	return true
}

// cutCRLF cuts b at its first CRLF (headEnd checked that every line has one).
func cutCRLF(b []byte) (line, rest []byte) {
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i+2:]
}

// isToken reports whether b is a non-empty HTTP token (a header name):
// letters, digits and !#$%&'*+-.^_`|~.
func isToken(b []byte) bool {
	return len(b) > 0 && onlyBytes(b, "!#$%&'*+-.^_`|~")
}

// isHost reports a Host value net/http takes: letters, digits and the
// bytes of a host name, IPv6 literal and port (net/http may take more;
// anything else goes to it, and it judges).
func isHost(b []byte) bool {
	return onlyBytes(b, "!$%&'()*+,-.:;=[]_~")
}

// onlyBytes reports whether b holds only letters, digits and bytes of extra.
func onlyBytes(b []byte, extra string) bool {
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte(extra, c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isFieldValue reports a header value net/http takes: no control
// characters but tab.
func isFieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
