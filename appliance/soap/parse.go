package soap

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/qapi-az/qapi/appliance/ident"
)

// nsSOAP12 is the SOAP 1.2 envelope namespace, named only to say that it
// is not accepted.
const nsSOAP12 = "http://www.w3.org/2003/05/soap-envelope"

// maxIDBytes bounds the message id, which the replay check stores.
const maxIDBytes = 255

// ParseRequest parses and checks a request: strict and bounded, see the
// fault codes. Its error is always a *Fault.
//
// A request is a SOAP 1.1 envelope in UTF-8 (a leading byte order mark is
// skipped) of at most lim.MaxBytes, without DTD or processing
// instructions, nesting at most lim.MaxDepth elements, with a Header that
// carries each of the X-Road headers client, service, id and
// protocolVersion (4.0) once, and userId and issue at most once, and a
// Body with exactly one element whose local name is the serviceCode.
// Headers in other namespaces are passed over.
func ParseRequest(raw []byte, lim Limits) (*Message, error) {
	return parse(raw, lim, false)
}

// ParseResponse parses and checks a response or a fault from a provider.
// Its error is always a *Fault.
//
// It applies the rules of ParseRequest, except that the body element is
// named after the serviceCode or the serviceCode followed by "Response",
// and that the header may carry a requestHash. A body that is a soap:Fault
// is returned in Message.Fault; such a message may lack the SOAP Header
// and the X-Road headers, but those it carries must be well-formed.
func ParseResponse(raw []byte, lim Limits) (*Message, error) {
	return parse(raw, lim, true)
}

// parser holds the state of one parse.
type parser struct {
	s        tokenizer
	response bool
	m        *Message
	seen     uint16 // X-Road headers read, by headerBit
	env, hdr token  // the Envelope's and the Header's start tags
	// hashAt is where a requestHash header starts and ends, when there is
	// one.
	hashAt [2]int
}

func parse(raw []byte, lim Limits, response bool) (*Message, error) {
	lim = lim.withDefaults()

	// Clause 5.2: a request is at most 10 KB.
	if len(raw) > lim.MaxBytes {
		return nil, &Fault{Code: CodeSizeExceeded, String: fmt.Sprintf(
			"the message is %d bytes, over the limit of %d bytes (clause 5.2); "+
				"send a smaller message", len(raw), lim.MaxBytes)}
	}
	if !utf8.Valid(raw) {
		return nil, &Fault{Code: CodeInvalidUTF8, String: fmt.Sprintf(
			"byte %d is not valid UTF-8; encode the message in UTF-8",
			invalidUTF8At(raw))}
	}

	s := getScanner(raw, lim.MaxDepth)
	// The message holds only strings copied or interned, none of the
	// scanner's buffers: the scanner can go back to the pool.
	m, err := parseWith(s, raw, response)
	s.release()
	return m, err
}

// parseWith parses raw, already checked for size and UTF-8, read through
// s.
func parseWith(s tokenizer, raw []byte, response bool) (*Message, error) {
	p := &parser{
		s:        s,
		response: response,
		m:        &Message{Raw: raw},
	}
	if err := p.document(); err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return p.m, nil
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// document reads the prolog, the Envelope and what follows it.
func (p *parser) document() error {
	t, err := p.skipSpace("before the Envelope")
	if err != nil {
		return err
	}
	if t.kind != tokStart {
		return p.s.faultAt(CodeMalformed, t.start,
			"the message is empty; send a SOAP 1.1 Envelope")
	}
	if t.name != (xml.Name{Space: NSEnvelope, Local: "Envelope"}) {
		if t.name.Space == nsSOAP12 {
			return p.s.faultAt(CodeMalformed, t.start,
				"this is a SOAP 1.2 envelope; send SOAP 1.1 (namespace %s)", NSEnvelope)
		}
		return p.s.faultAt(CodeMalformed, t.start,
			"the root element is not a SOAP 1.1 Envelope; send an Envelope in "+
				"namespace %s", NSEnvelope)
	}
	p.env = t
	if err := p.envelope(); err != nil {
		return err
	}

	t, err = p.skipSpace("after the Envelope")
	if err != nil {
		return err
	}
	if t.kind != tokEOF {
		return p.s.faultAt(CodeMalformed, t.start,
			"an element follows the Envelope; send the Envelope alone")
	}
	return nil
}

// skipSpace returns the next token that is not white space. Text that is
// not white space is refused: where is says where it was.
func (p *parser) skipSpace(where string) (token, error) {
	for {
		t, err := p.s.next()
		if err != nil {
			return t, err
		}
		if t.kind != tokText {
			return t, nil
		}
		if !isSpace(t.text) {
			return t, p.s.faultAt(CodeMalformed, t.start,
				"text appears %s; SOAP allows only elements there", where)
		}
	}
}

// envelope reads the Envelope's content up to and including its end tag.
func (p *parser) envelope() error {
	t, err := p.skipSpace("in the Envelope")
	if err != nil {
		return err
	}
	header := false
	if t.kind == tokStart && t.name == (xml.Name{Space: NSEnvelope, Local: "Header"}) {
		header = true
		p.hdr = t
		if err := p.header(); err != nil {
			return err
		}
		if t, err = p.skipSpace("in the Envelope"); err != nil {
			return err
		}
	}
	if t.kind != tokStart || t.name != (xml.Name{Space: NSEnvelope, Local: "Body"}) {
		return p.s.faultAt(CodeMalformed, t.start,
			"the Envelope must hold a Header and then a Body, and nothing else; "+
				"send Header and Body in that order")
	}
	if err := p.body(); err != nil {
		return err
	}
	if !header && p.m.Fault == nil {
		return p.s.faultAt(CodeMalformed, t.start,
			"the Envelope has no Header; put the X-Road headers in a SOAP Header")
	}
	if !header && p.response {
		// A Header made with the Envelope's own prefix, in scope right
		// after the Envelope's start tag.
		open := "<Header>"
		if p.env.prefix != "" {
			open = "<" + p.env.prefix + ":Header>"
		}
		p.m.hashEdit = &headerEdit{from: p.env.end, to: p.env.end, before: []byte(open),
			after: []byte(closeTag(p.env.prefix, "Header"))}
	}

	t, err = p.skipSpace("after the Body")
	if err != nil {
		return err
	}
	if t.kind != tokEnd {
		return p.s.faultAt(CodeMalformed, t.start,
			"an element follows the Body; nothing may follow the Body in the Envelope")
	}
	return nil
}

// header reads the SOAP Header's content up to and including its end tag.
func (p *parser) header() error {
	for {
		t, err := p.skipSpace("in the SOAP Header")
		if err != nil {
			return err
		}
		if t.kind == tokEnd {
			p.noteHeaderEnd(t)
			return nil
		}
		switch t.name.Space {
		case NSXRoad:
			err = p.xroadHeader(t)
			if err == nil && t.name.Local == "requestHash" {
				p.hashAt = [2]int{t.start, p.s.offset()}
			}
		case NSEnvelope:
			err = p.s.faultAt(CodeMalformed, t.start,
				"a SOAP envelope element <%s> is inside the Header; remove it",
				clip(t.name.Local))
		case NSIdentifiers:
			err = p.s.faultAt(CodeBadHeader, t.start,
				"identifier element %s stands outside xroad:client and xroad:service; "+
					"move it into one of them", clip(t.name.Local))
		default:
			// A header of another protocol: not ours to judge.
			err = p.skip()
		}
		if err != nil {
			return err
		}
	}
}

// noteHeaderEnd records, for a response, where WithRequestHash puts the
// requestHash: in place of the one there, or before the Header's end tag
// end, opening a self-closing Header.
func (p *parser) noteHeaderEnd(end token) {
	if !p.response {
		return
	}
	raw := p.m.Raw
	switch {
	case p.hashAt[1] != 0:
		p.m.hashEdit = &headerEdit{from: p.hashAt[0], to: p.hashAt[1]}
	case end.start != end.end:
		p.m.hashEdit = &headerEdit{from: end.start, to: end.start}
	case bytes.HasSuffix(raw[p.hdr.start:p.hdr.end], []byte("/>")):
		p.m.hashEdit = &headerEdit{from: p.hdr.end - 2, to: p.hdr.end, before: []byte(">"),
			after: []byte(closeTag(p.hdr.prefix, "Header"))}
	}
}

// closeTag returns the end tag of the element local written with prefix.
func closeTag(prefix, local string) string {
	if prefix == "" {
		return "</" + local + ">"
	}
	return "</" + prefix + ":" + local + ">"
}

// xroadHeader reads one header element of the X-Road namespace.
func (p *parser) xroadHeader(t token) error {
	name := t.name.Local
	switch name {
	case "client", "service", "id", "userId", "issue", "protocolVersion",
		"requestHash", "securityServer":
	case "centralService":
		// TODO: resolve centralService to a concrete service once the global
		// configuration lists central services; until then it is refused.
		return p.s.faultAt(CodeBadHeader, t.start,
			"central services are not supported; name the concrete service in "+
				"xroad:service")
	default:
		return p.s.faultAt(CodeBadHeader, t.start,
			"xroad:%s is not a header of the X-Road message protocol 4.0; remove it",
			clip(name))
	}
	if p.seen&headerBit(name) != 0 {
		return p.s.faultAt(CodeDuplicateHeader, t.start,
			"xroad:%s appears twice; send each X-Road header once", name)
	}
	p.seen |= headerBit(name)

	h := &p.m.Header
	switch name {
	case "client":
		c, err := p.identifier(t, false)
		h.Client = c.Client
		return err
	case "service":
		s, err := p.identifier(t, true)
		h.Service = s
		return err
	case "securityServer":
		// The targeting extension of X-Road; routing here is by service.
		return p.skip()
	case "requestHash":
		return p.requestHash(t)
	}

	v, err := p.text(t, "xroad:", name)
	if err != nil {
		return err
	}
	switch name {
	case "id":
		if strings.TrimSpace(v) == "" {
			return p.s.faultAt(CodeBadHeader, t.start,
				"xroad:id is empty; give every message a unique id, such as a UUID")
		}
		if len(v) > maxIDBytes {
			return p.s.faultAt(CodeBadHeader, t.start,
				"xroad:id is %d bytes, longer than %d; use a shorter id, such as a UUID",
				len(v), maxIDBytes)
		}
		h.ID = v
	case "userId":
		h.UserID = v
	case "issue":
		h.Issue = v
	case "protocolVersion":
		if v != ProtocolVersion {
			return p.s.faultAt(CodeProtocolVersion, t.start,
				"xroad:protocolVersion is %q; this server speaks X-Road message "+
					"protocol %s only, send %s", clip(v), ProtocolVersion, ProtocolVersion)
		}
		h.ProtocolVersion = v
	}
	if hasControl(v) {
		return p.s.faultAt(CodeBadHeader, t.start,
			"xroad:%s contains a control character; remove it", name)
	}
	return nil
}

// headerBit returns the bit of an X-Road header in parser.seen, or 0 for
// a name that is not one.
func headerBit(name string) uint16 {
	switch name {
	case "client":
		return 1 << 0
	case "service":
		return 1 << 1
	case "id":
		return 1 << 2
	case "userId":
		return 1 << 3
	case "issue":
		return 1 << 4
	case "protocolVersion":
		return 1 << 5
	case "requestHash":
		return 1 << 6
	case "securityServer":
		return 1 << 7
	}
	return 0
}

// requestHash reads the requestHash header of a response.
func (p *parser) requestHash(t token) error {
	if !p.response {
		return p.s.faultAt(CodeBadHeader, t.start,
			"xroad:requestHash belongs in responses only; remove it from the request")
	}
	alg, ok := attr(t, xml.Name{Local: "algorithmId"})
	if !ok || alg == "" {
		return p.s.faultAt(CodeBadHeader, t.start,
			"xroad:requestHash has no algorithmId; name the digest algorithm URI")
	}
	v, err := p.text(t, "xroad:", "requestHash")
	if err != nil {
		return err
	}
	// The value may be wrapped over lines, as the protocol's examples show.
	v = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, v)
	sum, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(sum) == 0 {
		return p.s.faultAt(CodeBadHeader, t.start,
			"xroad:requestHash is not a Base64 digest; send the Base64 of the digest")
	}
	p.m.Header.RequestHash = &RequestHash{Algorithm: alg, Value: sum}
	return nil
}

// idFields are the child elements of an identifier, in schema order.
var idFields = [...]string{
	"xRoadInstance", "memberClass", "memberCode", "subsystemCode",
	"serviceCode", "serviceVersion",
}

// identifier reads xroad:client (service false) or xroad:service.
func (p *parser) identifier(t token, service bool) (ident.Service, error) {
	var s ident.Service
	el, in := "xroad:client", "in xroad:client"
	want := "MEMBER or SUBSYSTEM"
	if service {
		el, in, want = "xroad:service", "in xroad:service", "SERVICE"
	}
	typ, ok := attr(t, xml.Name{Space: NSIdentifiers, Local: "objectType"})
	switch {
	case !ok:
		return s, p.s.faultAt(CodeBadHeader, t.start,
			"%s has no id:objectType attribute; set it to %s", el, want)
	case service && typ != ident.TypeService,
		!service && typ != ident.TypeMember && typ != ident.TypeSubsystem:
		return s, p.s.faultAt(CodeBadHeader, t.start,
			"%s has id:objectType %q; set it to %s", el, clip(typ), want)
	}

	fields := idFields[:4]
	if service {
		fields = idFields[:]
	}
	// The values by their index in idFields, and which were given.
	var vals [len(idFields)]string
	var given [len(idFields)]bool
	next := 0
	for {
		c, err := p.skipSpace(in)
		if err != nil {
			return s, err
		}
		if c.kind == tokEnd {
			break
		}
		i := indexOf(fields, c.name.Local)
		if c.name.Space != NSIdentifiers || i < 0 {
			return s, p.s.faultAt(CodeBadHeader, c.start,
				"%s holds an unexpected element %s; it may hold only id:%s",
				el, clip(c.name.Local), strings.Join(fields, ", id:"))
		}
		if i < next {
			return s, p.s.faultAt(CodeBadHeader, c.start,
				"in %s, id:%s is repeated or out of order; the order is id:%s",
				el, c.name.Local, strings.Join(fields, ", id:"))
		}
		next = i + 1
		v, err := p.text(c, "id:", c.name.Local)
		if err != nil {
			return s, err
		}
		if v != strings.TrimSpace(v) {
			return s, p.s.faultAt(CodeBadHeader, c.start,
				"in %s, id:%s has leading or trailing white space; remove it",
				el, c.name.Local)
		}
		vals[i], given[i] = v, true
	}

	s = ident.Service{
		Client: ident.Client{
			Instance:      vals[0],
			MemberClass:   vals[1],
			MemberCode:    vals[2],
			SubsystemCode: vals[3],
		},
		ServiceCode: vals[4],
		Version:     vals[5],
	}
	hasSub := given[3]
	switch {
	case typ == ident.TypeMember && hasSub:
		return s, p.s.faultAt(CodeBadHeader, t.start,
			"%s has id:objectType MEMBER but an id:subsystemCode; use SUBSYSTEM or "+
				"drop the subsystem", el)
	case typ == ident.TypeSubsystem && !hasSub:
		return s, p.s.faultAt(CodeBadHeader, t.start,
			"%s has id:objectType SUBSYSTEM but no id:subsystemCode; add it or use MEMBER",
			el)
	}
	var err error
	if service {
		err = s.Validate()
		if given[5] && s.Version == "" && err == nil {
			err = fmt.Errorf("serviceVersion is empty")
		}
	} else {
		err = s.Client.Validate()
	}
	if hasSub && s.SubsystemCode == "" && err == nil {
		err = fmt.Errorf("subsystemCode is empty")
	}
	if err != nil {
		return s, p.s.faultAt(CodeBadHeader, t.start, "%s: %v; send a complete identifier",
			el, err)
	}
	return s, nil
}

// body reads the Body's content up to and including its end tag.
func (p *parser) body() error {
	first := true
	for {
		t, err := p.skipSpace("in the Body")
		if err != nil {
			return err
		}
		if t.kind == tokEnd {
			if first {
				return p.s.faultAt(CodeMalformed, t.start,
					"the Body is empty; put the service's request element in it")
			}
			return nil
		}
		if !first {
			return p.s.faultAt(CodeMalformed, t.start,
				"the Body holds more than one element; wrap the content in one "+
					"element named after the service (document/literal wrapped)")
		}
		first = false
		p.m.Body = t.name
		if p.response && t.name == (xml.Name{Space: NSEnvelope, Local: "Fault"}) {
			err = p.fault(t)
		} else {
			err = p.skip()
		}
		if err != nil {
			return err
		}
	}
}

// fault reads a SOAP 1.1 Fault: faultcode and faultstring, then an
// optional faultactor and detail, each once.
func (p *parser) fault(t token) error {
	f := &Fault{}
	seen := map[string]bool{}
	for {
		c, err := p.skipSpace("in the Fault")
		if err != nil {
			return err
		}
		if c.kind == tokEnd {
			break
		}
		n := c.name.Local
		known := n == "faultcode" || n == "faultstring" || n == "faultactor" || n == "detail"
		if c.name.Space != "" || !known {
			return p.s.faultAt(CodeMalformed, c.start,
				"the Fault holds %s; SOAP 1.1 allows faultcode, faultstring, "+
					"faultactor and detail, unqualified", clip(n))
		}
		if seen[n] {
			return p.s.faultAt(CodeMalformed, c.start, "the Fault holds %s twice", n)
		}
		seen[n] = true
		switch n {
		case "faultcode":
			v, err := p.text(c, "", n)
			if err != nil {
				return err
			}
			f.Code = p.faultCode(strings.TrimSpace(v))
		case "faultstring":
			if f.String, err = p.text(c, "", n); err != nil {
				return err
			}
		case "faultactor":
			if f.Actor, err = p.text(c, "", n); err != nil {
				return err
			}
		case "detail":
			if f.Detail, err = p.allText(); err != nil {
				return err
			}
			f.Detail = strings.TrimSpace(f.Detail)
		}
	}
	if f.Code == "" || !seen["faultstring"] {
		return p.s.faultAt(CodeMalformed, t.start,
			"the Fault lacks a faultcode or a faultstring; SOAP 1.1 requires both")
	}
	p.m.Fault = f
	return nil
}

// faultCode strips the prefix of a faultcode QName when it is bound to the
// SOAP envelope namespace, so that SOAP-ENV:Client.X and Client.X are one.
func (p *parser) faultCode(v string) string {
	prefix, local, ok := strings.Cut(v, ":")
	if !ok {
		return v
	}
	if uri, bound := p.s.lookup(prefix); bound && uri == NSEnvelope {
		return local
	}
	return v
}

// check applies the rules that need the whole message.
func (p *parser) check() error {
	h := &p.m.Header
	if p.m.Fault != nil {
		return nil
	}
	for _, name := range []string{"client", "service", "id", "protocolVersion"} {
		if p.seen&headerBit(name) == 0 {
			return &Fault{Code: CodeMissingHeader, String: fmt.Sprintf(
				"the X-Road header xroad:%s is missing; the headers client, service, "+
					"id and protocolVersion are required", name)}
		}
	}

	code := h.Service.ServiceCode
	body := p.m.Body.Local
	if body == code || (p.response && body == code+"Response") {
		return nil
	}
	want := fmt.Sprintf("%q", code)
	if p.response {
		want = fmt.Sprintf("%q or %q", code, code+"Response")
	}
	return &Fault{Code: CodeServiceMismatch, String: fmt.Sprintf(
		"the Body element is %q but the serviceCode is %q; name the Body element %s",
		clip(body), code, want)}
}

// text reads the content of a text-only element up to its end tag. The
// element is prefix and local, as a fault names it.
func (p *parser) text(t token, prefix, local string) (string, error) {
	var b strings.Builder
	for {
		c, err := p.s.next()
		if err != nil {
			return "", err
		}
		switch c.kind {
		case tokText:
			b.Write(c.text)
		case tokEnd:
			return b.String(), nil
		default:
			return "", p.s.faultAt(CodeBadHeader, c.start,
				"%s%s must hold text only, not elements; remove the element",
				prefix, local)
		}
	}
}

// allText returns the text of the current element and its descendants and
// consumes its end tag.
func (p *parser) allText() (string, error) {
	var b strings.Builder
	d := p.s.depth()
	for {
		c, err := p.s.next()
		if err != nil {
			return "", err
		}
		if c.kind == tokText {
			b.Write(c.text)
		}
		if p.s.depth() < d {
			return b.String(), nil
		}
	}
}

// skip consumes the current element's content and end tag.
func (p *parser) skip() error {
	d := p.s.depth()
	for {
		if _, err := p.s.next(); err != nil {
			return err
		}
		if p.s.depth() < d {
			return nil
		}
	}
}

func attr(t token, n xml.Name) (string, bool) {
	for _, a := range t.attrs {
		if a.name == n {
			return string(a.value), true
		}
	}
	return "", false
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

// clip shortens a value quoted back in a fault, so that a fault never
// carries much of what the sender sent.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}
