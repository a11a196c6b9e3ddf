package soap

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"unicode/utf8"
)

// HashRequest returns the requestHash of a request's exact bytes.
func HashRequest(request []byte) RequestHash {
	sum := sha256.Sum256(request)
	return RequestHash{Algorithm: AlgSHA256, Value: sum[:]}
}

// CheckRequestHash reports whether the response m carries the requestHash
// of request. It accepts SHA-256 and SHA-512 (the X-Road default), and
// returns a *Fault with CodeRequestHash when the header is absent, names
// another algorithm, or does not match.
func CheckRequestHash(m *Message, request []byte) error {
	rh := m.Header.RequestHash
	if rh == nil {
		return &Fault{Code: CodeRequestHash, String: "the response has no " +
			"xroad:requestHash; the provider's security server must add one"}
	}
	var want []byte
	switch rh.Algorithm {
	case AlgSHA256:
		s := sha256.Sum256(request)
		want = s[:]
	case AlgSHA512:
		s := sha512.Sum512(request)
		want = s[:]
	default:
		return &Fault{Code: CodeRequestHash, String: fmt.Sprintf(
			"the response's requestHash uses algorithm %q; use %s", clip(rh.Algorithm),
			AlgSHA256)}
	}
	if subtle.ConstantTimeCompare(want, rh.Value) != 1 {
		return &Fault{Code: CodeRequestHash, String: "the response's requestHash " +
			"does not match the request sent; the response answers another request"}
	}
	return nil
}

// WithRequestHash returns resp with a requestHash header (the SHA-256 of
// request) added to its X-Road header block.
//
// The element is inserted before the end tag of the SOAP Header, every
// other byte of resp kept. A self-closing Header is opened to take it; a
// response without a Header gets one, right after the Envelope's start
// tag. A requestHash the provider put in resp itself is replaced, as the
// X-Road message protocol 4.0 (section 2.2) requires; that is the only
// case where bytes of resp are dropped. The error is a *Fault with
// CodeProviderFault when resp is not a SOAP 1.1 envelope or has two
// requestHash headers. resp is not otherwise checked: ParseResponse does.
func WithRequestHash(resp, request []byte) ([]byte, error) {
	el := requestHashElement(HashRequest(request))
	edit, err := findHeaderEnd(resp)
	if err != nil {
		why := err.Error()
		if f := AsFault(err); f != nil {
			why = f.String
		}
		return nil, &Fault{Code: CodeProviderFault, String: "the provider's response " +
			"cannot take a requestHash: " + why +
			"; the provider's information system must answer with a SOAP 1.1 envelope"}
	}

	return edit.apply(resp, el), nil
}

// WithRequestHash is the function WithRequestHash for a response that
// ParseResponse returned, which learnt where the element goes while it
// read the response: m.Raw is not read again. m must not have changed
// since.
func (m *Message) WithRequestHash(request []byte) ([]byte, error) {
	if m.hashEdit == nil {
		return WithRequestHash(m.Raw, request)
	}
	return m.hashEdit.apply(m.Raw, requestHashElement(HashRequest(request))), nil
}

// apply returns resp with the edit made, el the element put in.
func (e *headerEdit) apply(resp, el []byte) []byte {
	out := make([]byte, 0, len(resp)+len(e.before)+len(el)+len(e.after))
	out = append(out, resp[:e.from]...)
	out = append(out, e.before...)
	out = append(out, el...)
	out = append(out, e.after...)
	return append(out, resp[e.to:]...)
}

// requestHashElement declares its own prefix, so it is right whatever
// prefixes the response uses.
func requestHashElement(rh RequestHash) []byte {
	var b bytes.Buffer
	b.WriteString(`<xrd:requestHash xmlns:xrd="` + NSXRoad + `" algorithmId="`)
	escape(&b, rh.Algorithm)
	b.WriteString(`">`)
	b.WriteString(base64.StdEncoding.EncodeToString(rh.Value))
	b.WriteString(`</xrd:requestHash>`)
	return b.Bytes()
}

// headerEdit says how to put the element in: resp[from:to] is replaced by
// before, the element, and after.
type headerEdit struct {
	from, to      int
	before, after []byte
}

// findHeaderEnd scans resp up to the end of its SOAP Header and returns
// where the requestHash goes.
func findHeaderEnd(resp []byte) (headerEdit, error) {
	if !utf8.Valid(resp) {
		return headerEdit{}, &Fault{Code: CodeInvalidUTF8, String: "it is not UTF-8"}
	}
	return findHeaderEndWith(newScanner(resp, DefaultLimits().MaxDepth), resp)
}

// findHeaderEndWith is findHeaderEnd reading resp, valid UTF-8, through s.
func findHeaderEndWith(s tokenizer, resp []byte) (headerEdit, error) {
	p := &parser{s: s}

	env, err := p.skipSpace("before the Envelope")
	if err != nil {
		return headerEdit{}, err
	}
	if env.kind != tokStart || env.name != (xml.Name{Space: NSEnvelope, Local: "Envelope"}) {
		return headerEdit{}, s.faultAt(CodeMalformed, env.start,
			"the root element is not a SOAP 1.1 Envelope")
	}
	hdr, err := p.skipSpace("in the Envelope")
	if err != nil {
		return headerEdit{}, err
	}
	if hdr.kind != tokStart {
		return headerEdit{}, s.faultAt(CodeMalformed, hdr.start, "its Envelope is empty")
	}
	if hdr.name != (xml.Name{Space: NSEnvelope, Local: "Header"}) {
		// No Header: make one with the Envelope's own prefix, which is in
		// scope right after the Envelope's start tag.
		open, closing := "<Header>", "</Header>"
		if env.prefix != "" {
			open, closing = "<"+env.prefix+":Header>", "</"+env.prefix+":Header>"
		}
		return headerEdit{from: env.end, to: env.end, before: []byte(open),
			after: []byte(closing)}, nil
	}

	var found *headerEdit
	for {
		t, err := p.skipSpace("in the SOAP Header")
		if err != nil {
			return headerEdit{}, err
		}
		if t.kind == tokEnd {
			if found != nil {
				return *found, nil
			}
			if t.start == t.end {
				// A self-closing <P:Header .../>: open it.
				if !bytes.HasSuffix(resp[hdr.start:hdr.end], []byte("/>")) {
					return headerEdit{}, s.faultAt(CodeMalformed, hdr.start,
						"its Header tag cannot be opened")
				}
				closing := "</" + hdr.prefix + ":Header>"
				if hdr.prefix == "" {
					closing = "</Header>"
				}
				return headerEdit{from: hdr.end - 2, to: hdr.end, before: []byte(">"),
					after: []byte(closing)}, nil
			}
			return headerEdit{from: t.start, to: t.start}, nil
		}
		if t.name == (xml.Name{Space: NSXRoad, Local: "requestHash"}) {
			if found != nil {
				return headerEdit{}, s.faultAt(CodeDuplicateHeader, t.start,
					"it has two xroad:requestHash headers")
			}
			if err := p.skip(); err != nil {
				return headerEdit{}, err
			}
			found = &headerEdit{from: t.start, to: s.offset()}
			continue
		}
		if err := p.skip(); err != nil {
			return headerEdit{}, err
		}
	}
}
