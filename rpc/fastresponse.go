package rpc

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// fastResponse is the http.ResponseWriter of the fast path. An answer
// that sets no Content-Length is held back, up to fastHoldMax, to be
// given one; a longer one is sent chunked. The head is written as
// net/http writes it: status line, the handler's headers sorted, Date,
// the length, Connection: close when the connection ends after it.
type fastResponse struct {
	fc      *fastConn
	h       http.Header
	status  int
	sent    bool // the head is written
	chunked bool
	close   bool
	unread  bool // the connection closes with the request body unread
	dead    bool // the connection closes after the answer, silently
	hold    []byte
	bytes   int64
	keys    []string
	date    []byte
	num     [20]byte
}

func (w *fastResponse) reset(close bool) {
	clear(w.h)
	w.status, w.sent, w.chunked, w.close, w.unread, w.dead, w.bytes = 0, false, false, close, false, false, 0
	w.hold = w.hold[:0]
}

func (w *fastResponse) Header() http.Header { return w.h }

func (w *fastResponse) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *fastResponse) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.bytes += int64(len(p))
	if !w.sent {
		if _, ok := w.h["Content-Length"]; !ok && len(w.hold)+len(p) <= fastHoldMax {
			w.hold = append(w.hold, p...)
			return len(p), nil
		}
		w.writeHead(-1)
		w.writeBody(w.hold)
		w.hold = w.hold[:0]
	}
	w.writeBody(p)
	return len(p), nil
}

func (w *fastResponse) writeBody(p []byte) {
	if len(p) == 0 {
		return
	}
	bw := w.fc.w
	if w.chunked {
		bw.Write(strconv.AppendInt(w.num[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		bw.WriteString("\r\n")
		return
	}
	bw.Write(p)
}

// writeHead writes the status line and headers; length ≥ 0 is the
// Content-Length when the handler set none, -1 sends the body chunked.
func (w *fastResponse) writeHead(length int) {
	w.sent = true
	bw := w.fc.w
	if w.status == 0 {
		w.status = http.StatusOK
	}
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(w.num[:0], int64(w.status), 10))
	bw.WriteString(" ")
	bw.WriteString(http.StatusText(w.status))
	bw.WriteString("\r\n")
	if v := w.h.Get("Connection"); v != "" && !strings.EqualFold(v, "keep-alive") {
		w.close = true
	}
	_, hasLength := w.h["Content-Length"]
	if _, ok := w.h["Content-Type"]; !ok && length > 0 {
		w.h.Set("Content-Type", http.DetectContentType(w.hold))
	}
	w.keys = w.keys[:0]
	for k := range w.h {
		if k != "Connection" && k != "Transfer-Encoding" {
			w.keys = append(w.keys, k)
		}
	}
	slices.Sort(w.keys)
	for _, k := range w.keys {
		for _, v := range w.h[k] {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	w.date = time.Now().UTC().AppendFormat(w.date[:0], http.TimeFormat)
	bw.WriteString("Date: ")
	bw.Write(w.date)
	bw.WriteString("\r\n")
	switch {
	case hasLength:
	case length >= 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(w.num[:0], int64(length), 10))
		bw.WriteString("\r\n")
	default:
		w.chunked = true
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.close {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
}

// finish completes the answer and sends it; false: close the connection.
func (w *fastResponse) finish() bool {
	if !w.sent {
		w.writeHead(len(w.hold))
		w.writeBody(w.hold)
	} else if w.chunked {
		w.fc.w.WriteString("0\r\n\r\n")
	}
	if cap(w.hold) > 64<<10 {
		w.hold = nil
	}
	return w.fc.w.Flush() == nil && !w.close && !w.dead
}
