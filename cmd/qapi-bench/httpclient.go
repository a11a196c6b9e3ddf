package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// poster sends POST requests over keep-alive HTTP/1.1 connections to one
// URL. It does what the load runs need and no more: net/http's client
// hands each exchange between three goroutines and allocates a request
// and a response, which cost the load generator as much CPU as the rest
// of its work. Safe for concurrent use; each exchange takes a connection
// of its own.
type poster struct {
	addr, host, path string
	timeout          time.Duration
	idle             chan *httpConn // connections free for the next exchange
}

// newPoster returns a poster to rawURL, an http:// URL, keeping up to
// maxIdle connections open.
func newPoster(rawURL string, maxIdle int, timeout time.Duration) (*poster, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("%s: the load runs speak plain http:// to host:port", rawURL)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return &poster{addr: addr, host: u.Host, path: u.RequestURI(), timeout: timeout,
		idle: make(chan *httpConn, maxIdle)}, nil
}

// Close closes the idle connections.
func (p *poster) Close() {
	for {
		select {
		case c := <-p.idle:
			c.conn.Close()
		default:
			return
		}
	}
}

// httpConn is one connection and its buffers.
type httpConn struct {
	conn net.Conn
	r    *bufio.Reader
	req  []byte
	used bool // an exchange has completed on it
}

// post sends body with contentType, reads the whole answer into answer
// and returns its status. Any error of the protocol or of the connection
// is returned, and the connection closed; only when a connection kept
// from an earlier exchange turns out closed before it answered anything
// is the request sent again, once, on a new connection.
func (p *poster) post(contentType string, body []byte, answer *bytes.Buffer) (int, error) {
	var c *httpConn
	select {
	case c = <-p.idle:
	default:
	}
	for {
		if c == nil {
			conn, err := net.DialTimeout("tcp", p.addr, p.timeout)
			if err != nil {
				return 0, err
			}
			c = &httpConn{conn: conn, r: bufio.NewReaderSize(conn, 16<<10)}
		}
		status, keep, answered, err := p.exchange(c, contentType, body, answer)
		if err != nil {
			c.conn.Close()
			if c.used && !answered {
				c = nil
				continue
			}
			return 0, err
		}
		if !keep {
			c.conn.Close()
			return status, nil
		}
		c.used = true
		select {
		case p.idle <- c:
		default:
			c.conn.Close()
		}
		return status, nil
	}
}

// errFraming is the error of an answer that breaks HTTP/1.1's rules.
var errFraming = errors.New("malformed HTTP/1.1 answer")

// exchange writes the request on c and reads the answer. keep says
// whether c may carry another request; answered whether any byte of the
// answer arrived.
func (p *poster) exchange(c *httpConn, contentType string, body []byte,
	answer *bytes.Buffer) (status int, keep, answered bool, err error) {
	if err := c.conn.SetDeadline(time.Now().Add(p.timeout)); err != nil {
		return 0, false, false, err
	}
	c.req = append(c.req[:0], "POST "...)
	c.req = append(c.req, p.path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, p.host...)
	c.req = append(c.req, "\r\nUser-Agent: qapi-bench\r\nContent-Type: "...)
	c.req = append(c.req, contentType...)
	c.req = append(c.req, "\r\nContent-Length: "...)
	c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
	c.req = append(c.req, "\r\n\r\n"...)
	c.req = append(c.req, body...)
	if _, err := c.conn.Write(c.req); err != nil {
		return 0, false, false, err
	}

	// The status line; 1xx answers are interim and skipped.
	var h header
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, false, len(line) > 0, err
		}
		answered = true
		status, h.http10, err = statusLine(line)
		if err != nil {
			return 0, false, true, err
		}
		if err := h.read(c.r); err != nil {
			return 0, false, true, err
		}
		if status >= 200 {
			break
		}
		if status == 101 {
			return 0, false, true, fmt.Errorf("%w: 101 Switching Protocols", errFraming)
		}
		h = header{}
	}

	answer.Reset()
	switch {
	case status == 204 || status == 304:
	case h.chunked:
		err = readChunked(c.r, answer)
	case h.length >= 0:
		answer.Grow(int(h.length))
		_, err = io.CopyN(answer, c.r, h.length)
		if err == io.EOF {
			err = fmt.Errorf("%w: the body ends before its Content-Length",
				io.ErrUnexpectedEOF)
		}
	default:
		// No length: the body runs to the end of the connection.
		_, err = answer.ReadFrom(c.r)
		h.close = true
	}
	if err != nil {
		return 0, false, true, err
	}
	return status, !h.close && !h.http10, true, nil
}

// statusLine parses "HTTP/1.1 200 OK\r\n".
func statusLine(line []byte) (status int, http10 bool, err error) {
	var rest []byte
	switch {
	case bytes.HasPrefix(line, []byte("HTTP/1.1 ")):
		rest = line[9:]
	case bytes.HasPrefix(line, []byte("HTTP/1.0 ")):
		rest, http10 = line[9:], true
	default:
		return 0, false, fmt.Errorf("%w: status line %.40q", errFraming, line)
	}
	if len(rest) < 5 || rest[3] != ' ' && rest[3] != '\r' {
		return 0, false, fmt.Errorf("%w: status line %.40q", errFraming, line)
	}
	for _, c := range rest[:3] {
		if c < '0' || c > '9' {
			return 0, false, fmt.Errorf("%w: status line %.40q", errFraming, line)
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return 0, false, fmt.Errorf("%w: status line %.40q", errFraming, line)
	}
	return status, http10, nil
}

// header is what the framing of an answer depends on.
type header struct {
	length  int64 // -1 when absent
	chunked bool
	close   bool
	http10  bool
}

// read reads header fields up to the empty line.
func (h *header) read(r *bufio.Reader) error {
	h.length = -1
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				err = fmt.Errorf("%w: a header line over 16 KiB", errFraming)
			}
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			return fmt.Errorf("%w: header line %.60q", errFraming, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || value[0] == '+' || h.length >= 0 && h.length != n {
				return fmt.Errorf("%w: Content-Length %.40q", errFraming, value)
			}
			h.length = n
		case asciiEqualFold(name, "Transfer-Encoding"):
			if !asciiEqualFold(value, "chunked") || h.chunked {
				return fmt.Errorf("%w: Transfer-Encoding %.40q", errFraming, value)
			}
			h.chunked = true
		case asciiEqualFold(name, "Connection"):
			for _, t := range bytes.Split(value, []byte(",")) {
				if asciiEqualFold(bytes.TrimSpace(t), "close") {
					h.close = true
				}
			}
		}
	}
	if h.chunked && h.length >= 0 {
		// RFC 9112, 6.3: such an answer may be a smuggling attempt.
		return fmt.Errorf("%w: both Content-Length and chunked", errFraming)
	}
	return nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i]|0x20, s[i]|0x20
		if x != y || b[i] != s[i] && (x < 'a' || x > 'z') {
			return false
		}
	}
	return true
}

// readChunked reads a chunked body (RFC 9112, 7.1) into w, and its
// trailer fields.
func readChunked(r *bufio.Reader, w *bytes.Buffer) error {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return unexpected(err)
		}
		size, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		size = bytes.TrimSpace(size)
		n, err := strconv.ParseUint(string(size), 16, 32)
		if err != nil || len(size) == 0 {
			return fmt.Errorf("%w: chunk size %.20q", errFraming, line)
		}
		if n == 0 {
			var trailer header
			return unexpected(trailer.read(r))
		}
		w.Grow(int(n))
		if _, err := io.CopyN(w, r, int64(n)); err != nil {
			return unexpected(err)
		}
		crlf, err := r.ReadSlice('\n')
		if err != nil {
			return unexpected(err)
		}
		if string(crlf) != "\r\n" && string(crlf) != "\n" {
			return fmt.Errorf("%w: a chunk is longer than its size", errFraming)
		}
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
