package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestPosterNetHTTP talks to net/http's server: fixed length and chunked
// answers, error statuses, and connections kept, closed by the server
// and closed while idle.
func TestPosterNetHTTP(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter,
		r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil || r.Method != http.MethodPost || r.URL.RequestURI() != "/x?y=1" ||
			r.Header.Get("Content-Type") != contentType {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		switch string(body) {
		case "fixed":
			w.Write([]byte("fixed answer"))
		case "chunked":
			for i := range 3 {
				w.Write(bytes.Repeat([]byte{'a' + byte(i)}, 5000))
				w.(http.Flusher).Flush()
			}
		case "fault":
			http.Error(w, "<fault/>", http.StatusInternalServerError)
		case "close":
			w.Header().Set("Connection", "close")
			w.Write([]byte("closing"))
		case "empty":
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	p, err := newPoster(srv.URL+"/x?y=1", 4, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	tests := []struct {
		body   string
		status int
		answer string
		conns  int32 // opened so far
	}{
		{"fixed", 200, "fixed answer", 1},
		{"chunked", 200, strings.Repeat("a", 5000) + strings.Repeat("b", 5000) +
			strings.Repeat("c", 5000), 1},
		{"fault", 500, "<fault/>\n", 1},
		{"empty", 204, "", 1},
		{"close", 200, "closing", 1},
		{"fixed", 200, "fixed answer", 2},
	}
	var answer bytes.Buffer
	for _, tt := range tests {
		status, err := p.post(contentType, []byte(tt.body), &answer)
		if err != nil || status != tt.status || answer.String() != tt.answer {
			t.Errorf("%s: status %d, error %v, answer %.80q; want %d, %.80q", tt.body,
				status, err, answer.String(), tt.status, tt.answer)
		}
		if n := conns.Load(); n != tt.conns {
			t.Errorf("%s: %d connections opened, want %d", tt.body, n, tt.conns)
		}
	}

	// The server closes idle connections: the next request is sent again
	// on a new one.
	srv.CloseClientConnections()
	time.Sleep(50 * time.Millisecond)
	if status, err := p.post(contentType, []byte("fixed"), &answer); err != nil ||
		status != 200 || answer.String() != "fixed answer" {
		t.Errorf("after the server closed the connection: %d, %v, %q", status, err,
			answer.String())
	}
}

// TestPosterFraming serves answers that break HTTP/1.1's framing from a
// raw TCP server: each must be an error, never a success.
func TestPosterFraming(t *testing.T) {
	tests := []struct {
		name, answer string
		want         error
	}{
		{"not HTTP", "SSH-2.0-x\r\n\r\n", errFraming},
		{"bad status", "HTTP/1.1 2x0 OK\r\n\r\n", errFraming},
		{"body short of Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" +
			"12345", io.ErrUnexpectedEOF},
		{"two Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n" +
			"Content-Length: 2\r\n\r\nab", errFraming},
		{"negative Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
			errFraming},
		{"length and chunked", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n" +
			"Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n", errFraming},
		{"unknown coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", errFraming},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"zz\r\n", errFraming},
		{"chunk longer than its size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked" +
			"\r\n\r\n2\r\nabc\r\n0\r\n\r\n", errFraming},
		{"no last chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"2\r\nab\r\n", io.ErrUnexpectedEOF},
		{"header without colon", "HTTP/1.1 200 OK\r\nContent-Length 1\r\n\r\na",
			errFraming},
		{"no answer", "", io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := serveOnce(t, tt.answer)
			p, err := newPoster(url, 1, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			var answer bytes.Buffer
			status, err := p.post(contentType, []byte("x"), &answer)
			if !errors.Is(err, tt.want) {
				t.Errorf("status %d, error %v; want %v", status, err, tt.want)
			}
		})
	}
}

// TestPosterInterim checks that a 100 Continue before the answer is
// passed over, and that an answer without a length runs to the end of the
// connection.
func TestPosterInterim(t *testing.T) {
	url := serveOnce(t, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nto the end")
	p, err := newPoster(url, 1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var answer bytes.Buffer
	status, err := p.post(contentType, []byte("x"), &answer)
	if err != nil || status != 200 || answer.String() != "to the end" {
		t.Errorf("status %d, error %v, answer %q", status, err, answer.String())
	}
}

// serveOnce returns the URL of a TCP server that reads one request and
// answers it with answer, then closes the connection.
func serveOnce(t *testing.T, answer string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		if _, err := http.ReadRequest(r); err != nil {
			return
		}
		c.Write([]byte(answer))
	}()
	return "http://" + ln.Addr().String() + "/"
}
