package sign

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/qapi-az/qapi/appliance/soap"
)

// Bounds on the MIME framing that parseMultipart accepts.
const (
	maxHeaderBytes = 2 << 10 // a part's header block
	maxHeaders     = 8       // header fields in a part
	maxBoundary    = 70      // RFC 2046, 5.1.1
)

// fault returns a *soap.Fault with code and a message for a person; the
// cause, when there is one, goes into the detail. Neither ever holds
// message content.
func fault(code, msg string, cause error) *soap.Fault {
	f := &soap.Fault{Code: code, String: msg}
	if cause != nil {
		f.Detail = cause.Error()
	}
	return f
}

// multipart is a parsed multipart/signed body.
type multipart struct {
	signedEntity []byte // the first part as signed: headers, blank line, body
	soapBody     []byte // the first part's body, still transfer-encoded
	soapEncoding string // "base64", or "binary", "8bit" or "7bit"
	signature    []byte // DER CMS SignedData
}

// soap returns the SOAP bytes of the first part: decoded into a new slice
// when base64-encoded, else the part's own bytes in the body, clipped so
// that an append copies them.
func (m *multipart) soap() ([]byte, error) {
	if m.soapEncoding != "base64" {
		return m.soapBody[:len(m.soapBody):len(m.soapBody)], nil
	}
	return decodeBase64(m.soapBody)
}

// parseMultipart splits a multipart/signed body strictly: the boundary from
// contentType, CRLF framing, exactly two parts, no preamble, nothing after
// the closing delimiter but one CRLF.
func parseMultipart(body []byte, contentType string) (*multipart, error) {
	boundary, err := parseContentType(contentType)
	if err != nil {
		return nil, err
	}
	delim := []byte("--" + boundary)
	rest, ok := bytes.CutPrefix(body, append(bytes.Clone(delim), '\r', '\n'))
	if !ok {
		return nil, errors.New("body does not begin with the boundary delimiter line")
	}
	// RFC 2046, 5.1.1: the CRLF before a delimiter belongs to the delimiter.
	inner := append([]byte("\r\n"), delim...)
	i := bytes.Index(rest, inner)
	if i < 0 {
		return nil, errors.New("the first part is not terminated by a delimiter")
	}
	first := rest[:i]
	rest = rest[i+len(inner):]
	rest, ok = bytes.CutPrefix(rest, []byte("\r\n"))
	if !ok {
		return nil, errors.New("the delimiter after the first part is not followed by a " +
			"second part")
	}
	i = bytes.Index(rest, inner)
	if i < 0 {
		return nil, errors.New("the second part is not terminated by the closing delimiter")
	}
	second := rest[:i]
	rest = rest[i+len(inner):]
	if !bytes.Equal(rest, []byte("--")) && !bytes.Equal(rest, []byte("--\r\n")) {
		return nil, errors.New("more than two parts, or data after the closing delimiter")
	}

	m := &multipart{signedEntity: first}
	hdr, soapBody, err := splitPart(first)
	if err != nil {
		return nil, fmt.Errorf("first part: %w", err)
	}
	if err := checkSOAPHeader(hdr); err != nil {
		return nil, fmt.Errorf("first part: %w", err)
	}
	m.soapBody = soapBody
	m.soapEncoding = hdr["content-transfer-encoding"]
	if m.soapEncoding == "" {
		m.soapEncoding = "7bit"
	}

	hdr, sigBody, err := splitPart(second)
	if err != nil {
		return nil, fmt.Errorf("signature part: %w", err)
	}
	mt, _, err := mime.ParseMediaType(hdr["content-type"])
	if err != nil || (mt != SignatureType && mt != "application/x-pkcs7-signature") {
		return nil, fmt.Errorf("signature part: Content-Type is %q, want %s",
			hdr["content-type"], SignatureType)
	}
	if hdr["content-transfer-encoding"] != "base64" {
		return nil, errors.New("signature part: Content-Transfer-Encoding is not base64")
	}
	if m.signature, err = decodeBase64(sigBody); err != nil {
		return nil, fmt.Errorf("signature part: %w", err)
	}
	return m, nil
}

// parseContentType checks the multipart/signed Content-Type and returns
// its boundary.
func parseContentType(contentType string) (string, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", fmt.Errorf("Content-Type: %w", err)
	}
	if mt != "multipart/signed" {
		return "", fmt.Errorf("Content-Type is %s, want multipart/signed", mt)
	}
	if p := params["protocol"]; !strings.EqualFold(p, SignatureType) &&
		!strings.EqualFold(p, "application/x-pkcs7-signature") {
		return "", fmt.Errorf("protocol is %q, want %s", p, SignatureType)
	}
	if a := params["micalg"]; !strings.EqualFold(a, MICAlg) {
		return "", fmt.Errorf("micalg is %q, want %s", a, MICAlg)
	}
	b := params["boundary"]
	if len(b) == 0 || len(b) > maxBoundary || strings.HasSuffix(b, " ") {
		return "", fmt.Errorf("boundary is empty, longer than %d or ends in a space",
			maxBoundary)
	}
	for _, r := range b {
		// RFC 2046, 5.1.1: bchars.
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
			strings.ContainsRune("'()+_,-./:=? ", r)) {
			return "", fmt.Errorf("boundary contains %q, not allowed by RFC 2046", r)
		}
	}
	return b, nil
}

// splitPart splits a body part into its header fields, with lower-case
// names and unfolded values, and its body. A part must have headers.
func splitPart(part []byte) (map[string]string, []byte, error) {
	head, body, ok := bytes.Cut(part, []byte("\r\n\r\n"))
	if !ok || len(head) == 0 {
		return nil, nil, errors.New("no header block ended by an empty line")
	}
	if len(head) > maxHeaderBytes {
		return nil, nil, fmt.Errorf("header block is over %d bytes", maxHeaderBytes)
	}
	hdr := make(map[string]string)
	var last string
	for line := range strings.SplitSeq(string(head), "\r\n") {
		if strings.ContainsAny(line, "\r\n\x00") {
			return nil, nil, errors.New("a header line has a bare CR, LF or NUL")
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last == "" {
				return nil, nil, errors.New("the header block begins with a continuation line")
			}
			hdr[last] += " " + strings.TrimSpace(line)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, nil, fmt.Errorf("header line %q is not Name: value", line)
		}
		last = strings.ToLower(name)
		if _, dup := hdr[last]; dup {
			return nil, nil, fmt.Errorf("header %s appears twice", name)
		}
		if len(hdr) == maxHeaders {
			return nil, nil, fmt.Errorf("more than %d header fields", maxHeaders)
		}
		hdr[last] = strings.TrimSpace(value)
	}
	if cte, ok := hdr["content-transfer-encoding"]; ok {
		hdr["content-transfer-encoding"] = strings.ToLower(cte)
	}
	return hdr, body, nil
}

// checkSOAPHeader checks the first part's header: SOAP 1.1's text/xml in
// UTF-8, and a transfer encoding that carries the bytes unchanged.
func checkSOAPHeader(hdr map[string]string) error {
	mt, params, err := mime.ParseMediaType(hdr["content-type"])
	if err != nil || mt != "text/xml" {
		return fmt.Errorf("Content-Type is %q, want %s", hdr["content-type"], SOAPPartType)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return fmt.Errorf("charset is %q, want UTF-8", cs)
	}
	switch hdr["content-transfer-encoding"] {
	case "", "base64", "binary", "8bit", "7bit":
		return nil
	}
	return fmt.Errorf("Content-Transfer-Encoding %q is not accepted; use base64",
		hdr["content-transfer-encoding"])
}

// decodeBase64 decodes base64 in CRLF-separated lines, strictly: only the
// base64 alphabet, canonical padding.
func decodeBase64(b []byte) ([]byte, error) {
	out := make([]byte, base64.StdEncoding.DecodedLen(len(b)))
	n, err := base64.StdEncoding.Strict().Decode(out, b)
	if err != nil {
		return nil, fmt.Errorf("base64: %w", err)
	}
	return out[:n], nil
}
