package soap

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// This file keeps the scanner that package soap used before it had its own
// tokenizer: the same rules on top of encoding/xml's raw tokenizer. It is
// the oracle of the differential tests (FuzzScannerDifferential): whatever
// scanner accepts, xmlScanner must accept with the same result, and the
// faults must carry the same codes.

// xmlFrame is one open element.
type xmlFrame struct {
	raw   xml.Name // the name as written, prefix in Space
	nsLen int      // len(scanner.ns) before the element's declarations
}

// xmlScanner reads a message as a stream of tokens with encoding/xml's raw
// tokenizer in strict mode, and does itself what the raw tokenizer leaves
// out: matching end tags, resolving prefixes (refusing undeclared ones),
// refusing duplicate attributes, DTDs, processing instructions, and
// nesting deeper than maxDepth. It never holds more than the open elements.
type xmlScanner struct {
	raw      []byte // the whole message as given
	base     int    // bytes skipped before the decoder's input (a BOM)
	d        *xml.Decoder
	maxDepth int
	ns       []string            // prefixes declared, innermost last
	bound    map[string][]string // prefix to its namespaces, innermost last
	stack    []xmlFrame
}

func newXMLScanner(raw []byte, maxDepth int) tokenizer {
	s := &xmlScanner{raw: raw, maxDepth: maxDepth}
	in := raw
	if bytes.HasPrefix(in, bom) {
		s.base = len(bom)
		in = in[len(bom):]
	}
	s.d = xml.NewDecoder(bytes.NewReader(in))
	s.d.Strict = true
	return s
}

// offset returns the offset of the byte after the last token.
func (s *xmlScanner) offset() int { return int(s.d.InputOffset()) + s.base }

// depth returns the number of open elements.
func (s *xmlScanner) depth() int { return len(s.stack) }

// line returns the 1-based line number of byte offset off.
func (s *xmlScanner) line(off int) int {
	if off > len(s.raw) {
		off = len(s.raw)
	}
	return bytes.Count(s.raw[:off], []byte{'\n'}) + 1
}

// faultAt returns a fault whose text names the line of offset off.
func (s *xmlScanner) faultAt(code string, off int, format string, args ...any) *Fault {
	return &Fault{
		Code:   code,
		String: fmt.Sprintf("line %d: ", s.line(off)) + fmt.Sprintf(format, args...),
	}
}

// lookup returns the namespace bound to prefix, and whether one is.
func (s *xmlScanner) lookup(prefix string) (string, bool) {
	if prefix == "xml" {
		return nsXML, true
	}
	if uris := s.bound[prefix]; len(uris) > 0 {
		return uris[len(uris)-1], true
	}
	if prefix == "" {
		return "", true
	}
	return "", false
}

// next returns the next token. Comments are skipped; adjacent text is not
// merged. Every error is a *Fault.
func (s *xmlScanner) next() (token, error) {
	for {
		before := int(s.d.InputOffset()) + s.base
		t, err := s.d.RawToken()
		after := int(s.d.InputOffset()) + s.base
		if err == io.EOF {
			if len(s.stack) > 0 {
				return token{}, s.faultAt(CodeMalformed, before,
					"the message ends before <%s> is closed; send the whole message",
					qname(s.stack[len(s.stack)-1].raw))
			}
			return token{kind: tokEOF, start: before, end: before}, nil
		}
		if err != nil {
			return token{}, s.syntaxFault(err, before)
		}
		switch t := t.(type) {
		case xml.Comment:
			continue
		case xml.Directive:
			return token{}, s.faultAt(CodeDTDForbidden, before,
				"a DOCTYPE or other <!...> declaration is not allowed in a SOAP "+
					"message; remove it and use only the five predefined entities")
		case xml.ProcInst:
			if t.Target == "xml" && before == s.base {
				continue // the XML declaration, which the tokenizer checked
			}
			if strings.EqualFold(t.Target, "xml") {
				return token{}, s.faultAt(CodeMalformed, before,
					"the XML declaration is not at the very start; move it to byte 0")
			}
			return token{}, s.faultAt(CodeMalformed, before,
				"processing instruction <?%s?> is not allowed in a SOAP message "+
					"(SOAP 1.1, section 3); remove it", clip(t.Target))
		case xml.CharData:
			return token{kind: tokText, text: t, start: before, end: after}, nil
		case xml.StartElement:
			return s.startElement(t, before, after)
		case xml.EndElement:
			return s.endElement(t, before, after)
		}
	}
}

func (s *xmlScanner) startElement(t xml.StartElement, before, after int) (token, error) {
	if len(s.stack)+1 > s.maxDepth {
		return token{}, s.faultAt(CodeTooDeep, before,
			"elements nest deeper than %d levels; flatten the message", s.maxDepth)
	}
	if n, dup := duplicate(t.Attr, func(a xml.Attr) xml.Name { return a.Name }); dup {
		return token{}, s.faultAt(CodeMalformed, before,
			"attribute %s appears twice on <%s>; keep one", qname(n), qname(t.Name))
	}
	nsLen := len(s.ns)
	s.stack = append(s.stack, xmlFrame{raw: t.Name, nsLen: nsLen})
	for _, a := range t.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			if a.Value == nsXML {
				return token{}, s.faultAt(CodeMalformed, before,
					"the xml namespace cannot be the default namespace")
			}
			s.bind("", a.Value)
		case a.Name.Space == "xmlns":
			if err := s.checkBinding(a.Name.Local, a.Value, before); err != nil {
				return token{}, err
			}
			if a.Name.Local != "xml" {
				s.bind(a.Name.Local, a.Value)
			}
		}
	}

	name, err := s.expand(t.Name, true, before)
	if err != nil {
		return token{}, err
	}
	tok := token{kind: tokStart, name: name, prefix: t.Name.Space, start: before, end: after}
	for _, a := range t.Attr {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		n, err := s.expand(a.Name, false, before)
		if err != nil {
			return token{}, err
		}
		tok.attrs = append(tok.attrs, attribute{name: n, value: []byte(a.Value)})
	}
	if n, dup := duplicate(tok.attrs, func(a attribute) xml.Name { return a.name }); dup {
		return token{}, s.faultAt(CodeMalformed, before,
			"attribute {%s}%s appears twice on <%s>; keep one", clip(n.Space),
			clip(n.Local), qname(t.Name))
	}
	return tok, nil
}

// duplicate returns a name that two attributes share. A map is used past
// a few attributes, so that a message of many attributes costs linear time.
func duplicate[A any](attrs []A, name func(A) xml.Name) (xml.Name, bool) {
	if len(attrs) <= 8 {
		for i := range attrs {
			for j := i + 1; j < len(attrs); j++ {
				if name(attrs[i]) == name(attrs[j]) {
					return name(attrs[i]), true
				}
			}
		}
		return xml.Name{}, false
	}
	seen := make(map[xml.Name]bool, len(attrs))
	for _, a := range attrs {
		if seen[name(a)] {
			return name(a), true
		}
		seen[name(a)] = true
	}
	return xml.Name{}, false
}

// bind declares prefix for the element opened last.
func (s *xmlScanner) bind(prefix, uri string) {
	if s.bound == nil {
		s.bound = map[string][]string{}
	}
	s.bound[prefix] = append(s.bound[prefix], uri)
	s.ns = append(s.ns, prefix)
}

// unbind drops the declarations made after the first n.
func (s *xmlScanner) unbind(n int) {
	for len(s.ns) > n {
		p := s.ns[len(s.ns)-1]
		s.bound[p] = s.bound[p][:len(s.bound[p])-1]
		s.ns = s.ns[:len(s.ns)-1]
	}
}

func (s *xmlScanner) checkBinding(prefix, uri string, off int) error {
	switch {
	case prefix == "xmlns":
		return s.faultAt(CodeMalformed, off, "the xmlns prefix cannot be declared")
	case prefix == "xml" && uri != nsXML:
		return s.faultAt(CodeMalformed, off, "the xml prefix cannot be rebound")
	case prefix != "xml" && uri == nsXML:
		return s.faultAt(CodeMalformed, off,
			"the xml namespace cannot be bound to prefix %s", clip(prefix))
	case uri == "":
		return s.faultAt(CodeMalformed, off,
			"prefix %s is declared with an empty namespace, which XML 1.0 namespaces "+
				"forbid; declare a namespace name", clip(prefix))
	case strings.Contains(prefix, ":"):
		return s.faultAt(CodeMalformed, off, "prefix %q contains a colon", clip(prefix))
	}
	return nil
}

// expand resolves a raw name. Unprefixed attributes are in no namespace.
func (s *xmlScanner) expand(n xml.Name, element bool, off int) (xml.Name, error) {
	if n.Local == "" || strings.Contains(n.Local, ":") || (n.Space == "" &&
		strings.HasPrefix(n.Local, ":")) {
		return xml.Name{}, s.faultAt(CodeMalformed, off,
			"%q is not a valid qualified name", qname(n))
	}
	if n.Space == "" && !element {
		return xml.Name{Local: n.Local}, nil
	}
	uri, ok := s.lookup(n.Space)
	if !ok {
		return xml.Name{}, s.faultAt(CodeMalformed, off,
			"prefix %s of <%s> is not declared; declare it with xmlns:%s",
			clip(n.Space), qname(n), clip(n.Space))
	}
	return xml.Name{Space: uri, Local: n.Local}, nil
}

func (s *xmlScanner) endElement(t xml.EndElement, before, after int) (token, error) {
	if len(s.stack) == 0 {
		return token{}, s.faultAt(CodeMalformed, before,
			"end tag </%s> closes nothing; remove it", qname(t.Name))
	}
	top := s.stack[len(s.stack)-1]
	if top.raw != t.Name {
		return token{}, s.faultAt(CodeMalformed, before,
			"<%s> is closed by </%s>; close elements in order",
			qname(top.raw), qname(t.Name))
	}
	name, err := s.expand(t.Name, true, before)
	if err != nil {
		return token{}, err
	}
	s.stack = s.stack[:len(s.stack)-1]
	s.unbind(top.nsLen)
	return token{kind: tokEnd, name: name, prefix: t.Name.Space, start: before, end: after}, nil
}

// syntaxFault turns an error of the tokenizer into a fault. An unknown
// entity reference is a DTD matter: only the five predefined entities and
// character references are accepted, as no DTD may declare others.
func (s *xmlScanner) syntaxFault(err error, off int) *Fault {
	var se *xml.SyntaxError
	if !errors.As(err, &se) {
		return s.faultAt(CodeMalformed, off, "the XML cannot be read (%v); "+
			"send well-formed XML 1.0 in UTF-8", err)
	}
	const entity = "invalid character entity &"
	if rest, ok := strings.CutPrefix(se.Msg, entity); ok && rest != "" &&
		isNameStart(rest[0]) {
		return &Fault{Code: CodeDTDForbidden, String: fmt.Sprintf(
			"line %d: an entity reference other than &amp; &lt; &gt; &apos; &quot; "+
				"or a character reference; DTD entities are not allowed, write the "+
				"character itself", se.Line)}
	}
	return &Fault{Code: CodeMalformed, String: fmt.Sprintf(
		"line %d: the XML is not well-formed (%s); send well-formed XML 1.0 in UTF-8",
		se.Line, clip(se.Msg))}
}
