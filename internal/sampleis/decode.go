package sampleis

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/qapi-az/qapi/appliance/soap"
)

// decode reads a request. It tries decodeFast first and falls back on
// decodeSlow for whatever the fast path does not take, so that the
// register answers every request exactly as decodeSlow alone would.
func decode(raw []byte) (*requestEnvelope, error) {
	if env, ok := decodeFast(raw); ok {
		return env, nil
	}
	return decodeSlow(raw)
}

// decodeSlow reads a request with encoding/xml. It defines what the
// register accepts and how it reads it; decodeFast must agree with it.
func decodeSlow(raw []byte) (*requestEnvelope, error) {
	if err := checkDocument(raw); err != nil {
		return nil, notSOAP(err)
	}
	var env requestEnvelope
	if err := xml.Unmarshal(raw, &env); err != nil {
		return nil, notSOAP(err)
	}
	return &env, nil
}

// checkDocument reads the whole of raw with encoding/xml's strict
// tokenizer, and refuses besides what SOAP 1.1 (section 3) forbids and
// xml.Unmarshal lets through: a DTD, processing instructions, and text
// or elements outside the Envelope.
func checkDocument(raw []byte) error {
	d := xml.NewDecoder(bytes.NewReader(raw))
	depth, roots := 0, 0
	for {
		t, err := d.Token()
		if err == io.EOF && roots > 0 {
			return nil
		}
		if err != nil {
			return err
		}
		switch t := t.(type) {
		case xml.StartElement:
			if depth == 0 {
				if roots++; roots > 1 {
					return errors.New("an element follows the Envelope; " +
						"send the Envelope alone")
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.Directive:
			return errors.New("the request holds a DTD or another declaration; " +
				"SOAP 1.1 forbids them, remove it")
		case xml.ProcInst:
			if t.Target != "xml" {
				return errors.New("the request holds a processing instruction; " +
					"SOAP 1.1 forbids them, remove it")
			}
		case xml.CharData:
			if depth > 0 {
				continue
			}
			if d.InputOffset() == int64(len(t)) && bytes.HasPrefix(t, []byte(bom)) {
				t = t[len(bom):] // first in the message
			}
			if len(bytes.TrimLeft(t, " \t\r\n")) > 0 {
				return errors.New("text stands outside the Envelope; " +
					"send the Envelope alone")
			}
		}
	}
}

// bom is the UTF-8 byte order mark, which a sender may put first.
const bom = "\ufeff"

func notSOAP(err error) error {
	return fmt.Errorf("the request is not a SOAP 1.1 envelope: %w", err)
}

// decodeFast reads the requests that clients send in practice at a small
// fraction of decodeSlow's cost, and declines (false) the rest.
//
// soap.ParseRequest, the security server's strict parser, checks that the
// whole message is well-formed SOAP 1.1 with complete X-Road headers and
// gives the headers and the operation's name. The operation's fields are
// then read backwards from the end of the message, which well-formedness
// makes safe: the Envelope's end tag is the last markup, the Body's comes
// right before it, and the operation's right before that. Only the plain
// shape is taken: fields without attributes, with the operation's prefix,
// each once, holding text without references, '>' or CR. A '>' in a
// field's text is refused because it is what a comment, CDATA section or
// second tag would leave there; anything else is declined, never guessed.
func decodeFast(raw []byte) (*requestEnvelope, bool) {
	if bytes.HasPrefix(raw, []byte(bom)) {
		return nil, false // rare; decodeSlow's to read
	}
	m, err := soap.ParseRequest(raw, soap.Limits{MaxBytes: maxRequest})
	if err != nil || m.Body.Space != Namespace {
		return nil, false
	}
	var fields []string
	switch m.Body.Local {
	case CodeGetPerson:
		fields = []string{"fin"}
	case CodeSearchPersons:
		fields = []string{"surname", "givenName", "birthYear", "maxResults", "purpose"}
	default:
		return nil, false
	}
	vals, ok := operationFields(raw, m.Body.Local, fields)
	if !ok {
		return nil, false
	}

	env := &requestEnvelope{XMLName: xml.Name{Space: nsEnvelope, Local: "Envelope"},
		Header: fromSOAP(&m.Header)}
	if m.Body.Local == CodeGetPerson {
		env.Body.GetPerson = &getPersonRequest{XMLName: m.Body, FIN: string(vals[0])}
		return env, true
	}
	q := &searchPersonsRequest{XMLName: m.Body, Surname: string(vals[0]),
		GivenName: string(vals[1]), BirthYear: string(vals[2])}
	if v := string(vals[3]); v != "" {
		// As encoding/xml reads an int; its error is decodeSlow's to report.
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, strconv.IntSize)
		if err != nil {
			return nil, false
		}
		q.MaxResults = int(n)
	}
	env.Body.SearchPersons = q
	return env, true
}

// fromSOAP returns the header as decodeSlow reads it. soap.ParseRequest
// has checked what makes the two agree: the object types match the
// identifiers, and an empty serviceVersion element is refused.
func fromSOAP(h *soap.Header) header {
	c, s := h.Client, h.Service
	return header{
		Client: identifier{ObjectType: c.ObjectType(), Instance: c.Instance,
			MemberClass: c.MemberClass, MemberCode: c.MemberCode,
			SubsystemCode: c.SubsystemCode},
		Service: identifier{ObjectType: "SERVICE", Instance: s.Instance,
			MemberClass: s.MemberClass, MemberCode: s.MemberCode,
			SubsystemCode: s.SubsystemCode, ServiceCode: s.ServiceCode,
			Version: s.Version},
		ID: h.ID, UserID: h.UserID, Issue: h.Issue, ProtocolVersion: h.ProtocolVersion,
	}
}

// operationFields returns the text of the operation's fields, in the
// order of names (nil for one absent), reading raw, a well-formed
// envelope, backwards from its end. It returns false for any shape but
// the plain one decodeFast describes.
func operationFields(raw []byte, op string, names []string) ([][]byte, bool) {
	e := trimSpaceEnd(raw, len(raw))
	i, name, ok := endTag(raw, e)
	if !ok || local(name) != "Envelope" {
		return nil, false
	}
	e = trimSpaceEnd(raw, i)
	i, name, ok = endTag(raw, e)
	if !ok || local(name) != "Body" {
		return nil, false
	}
	e = trimSpaceEnd(raw, i)
	i, opName, ok := endTag(raw, e)
	if !ok || local(opName) != op {
		return nil, false
	}
	prefix := opName[:len(opName)-len(op)] // "p:" or ""

	vals := make([][]byte, len(names))
	seen := make([]bool, len(names))
	for e = trimSpaceEnd(raw, i); ; e = trimSpaceEnd(raw, i) {
		if e == 0 || raw[e-1] != '>' {
			return nil, false
		}
		i = bytes.LastIndexByte(raw[:e-1], '<')
		if i < 0 {
			return nil, false
		}
		if raw[i+1] != '/' {
			// The operation's start tag, or a shape not taken.
			return vals, startTag(raw[i:e], opName)
		}
		_, name, ok := endTag(raw, e)
		if !ok || !strings.HasPrefix(name, prefix) {
			return nil, false
		}
		k := indexOf(names, name[len(prefix):])
		if k < 0 || seen[k] {
			return nil, false
		}
		seen[k] = true

		// The field's start tag is the last '<' before its end tag, given
		// that the text between holds no '>' (see decodeFast).
		j := lastLess(raw[:i])
		if j < 0 {
			return nil, false
		}
		gt := bytes.IndexByte(raw[j:i], '>')
		if gt < 0 || !plainStartTag(raw[j+1:j+gt], name) {
			return nil, false
		}
		text := raw[j+gt+1 : i]
		if bytes.IndexByte(text, '&') >= 0 || bytes.IndexByte(text, '>') >= 0 ||
			bytes.IndexByte(text, '\r') >= 0 { // not ContainsAny: 10 KB texts
			return nil, false
		}
		vals[k] = text
		i = j
	}
}

// lastLess returns the index of the last '<' in b, or -1. It reads eight
// bytes at a time, since a field's text may be most of a 10 KB request
// and bytes.LastIndexByte reads one at a time.
func lastLess(b []byte) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := len(b)
	for ; i >= 8; i -= 8 {
		// A byte of x is zero where b has '<'; the expression is non-zero
		// exactly when one is.
		x := binary.LittleEndian.Uint64(b[i-8:i]) ^ ('<' * ones)
		if (x-ones)&^x&highs != 0 {
			break
		}
	}
	return bytes.LastIndexByte(b[:i], '<')
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// isSpace reports XML white space (production S).
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// isNameByte reports the ASCII bytes of an XML name; names with other
// characters are declined.
func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '-' || c == '.' || c == ':'
}

func trimSpaceEnd(raw []byte, e int) int {
	for e > 0 && isSpace(raw[e-1]) {
		e--
	}
	return e
}

// local returns the local part of a qualified name.
func local(qname string) string {
	if i := strings.IndexByte(qname, ':'); i >= 0 {
		return qname[i+1:]
	}
	return qname
}

// endTag reads the end tag "</name S?>" that ends at raw[e-1], and
// returns where it starts and its name. A comment, CDATA section or
// processing instruction ending there is refused: "-->" would make the
// name end in '-', which no name this package looks for does, and ']' and
// '?' are not name bytes.
func endTag(raw []byte, e int) (start int, name string, ok bool) {
	if e < 4 || raw[e-1] != '>' {
		return 0, "", false
	}
	start = bytes.LastIndexByte(raw[:e-1], '<')
	if start < 0 || raw[start+1] != '/' {
		return 0, "", false
	}
	n := raw[start+2 : trimSpaceEnd(raw, e-1)]
	if len(n) == 0 || n[len(n)-1] == '-' {
		return 0, "", false
	}
	for _, c := range n {
		if !isNameByte(c) {
			return 0, "", false
		}
	}
	return start, string(n), true
}

// plainStartTag reports whether tag, the bytes between '<' and '>', is
// name with no attributes.
func plainStartTag(tag []byte, name string) bool {
	return bytes.HasPrefix(tag, []byte(name)) &&
		trimSpaceEnd(tag, len(tag)) == len(name)
}

// startTag reports whether tag, from its '<' to its '>', is exactly a
// start tag named name, with any attributes. Reading it forwards with
// quoted values, so that its end must be the last byte, tells it apart
// from a comment or CDATA section that ends there and from text after a
// tag.
func startTag(tag []byte, name string) bool {
	end := len(tag) - 1
	if !bytes.HasPrefix(tag[1:], []byte(name)) {
		return false
	}
	i := 1 + len(name)
	for {
		sp := i
		for i < end && isSpace(tag[i]) {
			i++
		}
		if i == end {
			return true
		}
		if i == sp { // attributes are separated by white space
			return false
		}
		a := i
		for i < end && isNameByte(tag[i]) {
			i++
		}
		if i == a {
			return false
		}
		for i < end && isSpace(tag[i]) {
			i++
		}
		if i == end || tag[i] != '=' {
			return false
		}
		i++
		for i < end && isSpace(tag[i]) {
			i++
		}
		if i == end || tag[i] != '"' && tag[i] != '\'' {
			return false
		}
		q := bytes.IndexByte(tag[i+1:end], tag[i])
		if q < 0 {
			return false
		}
		i += q + 2
	}
}
