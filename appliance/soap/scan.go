package soap

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"strconv"
	"sync"
	"unicode/utf8"
)

// nsXML is the namespace the xml prefix is bound to by definition.
const nsXML = "http://www.w3.org/XML/1998/namespace"

// bom is the UTF-8 byte order mark, which a sender may put first (X-Road
// message protocol 4.0, section 2.6).
var bom = []byte{0xef, 0xbb, 0xbf}

// tokKind says what a token is.
type tokKind int

const (
	tokEOF tokKind = iota
	tokStart
	tokEnd
	tokText
)

// token is one item of the scanned document, with namespaces resolved.
// start and end are byte offsets of the token in the message as given
// (before a byte order mark was skipped). A self-closing element yields a
// start token and an end token of zero length.
type token struct {
	kind   tokKind
	name   xml.Name    // expanded name, for tokStart and tokEnd
	prefix string      // the name's prefix as written
	attrs  []attribute // namespace declarations left out; valid until next
	text   []byte      // for tokText; valid until the next call of next
	start  int
	end    int
}

// attribute is an attribute of a start tag, its name expanded and its
// value with references replaced and line ends normalised.
type attribute struct {
	name  xml.Name
	value []byte // valid until the next call of next
}

// tokenizer is what the parser reads a message through: scanner, or in
// tests the encoding/xml-based scanner it replaced, as an oracle.
type tokenizer interface {
	// next returns the next token; every error is a *Fault.
	next() (token, error)
	// depth returns the number of open elements.
	depth() int
	// lookup returns the namespace bound to prefix, and whether one is.
	lookup(prefix string) (string, bool)
	// faultAt returns a fault whose text names the line of offset off.
	faultAt(code string, off int, format string, args ...any) *Fault
	// offset returns the offset of the byte after the last token.
	offset() int
}

// frame is one open element.
type frame struct {
	raw    []byte   // the name as written, prefix included
	name   xml.Name // the name expanded
	prefix string
	nsLen  int // len(scanner.ns) before the element's declarations
}

// rawAttr is an attribute as written, before its name is resolved.
type rawAttr struct {
	name  []byte // as written, prefix included
	value []byte
}

// scanner reads a message as a stream of tokens. It is a tokenizer of its
// own for the XML that SOAP needs, working on the message's bytes in
// place: the names it returns are interned per message, and text without
// references is returned as a slice of the message, so that a message
// costs few allocations however many elements it has.
//
// It accepts what encoding/xml's decoder in strict mode accepts, with the
// same tokens, and on top of that matches end tags, resolves prefixes
// (refusing undeclared ones), refuses duplicate attributes, DTDs,
// processing instructions other than the XML declaration at the start,
// and nesting deeper than maxDepth. It never holds more than the open
// elements. Its input must be valid UTF-8.
type scanner struct {
	raw      []byte // the whole message as given
	base     int    // bytes skipped before the document (a BOM)
	pos      int    // offset of the next byte to read
	maxDepth int
	ns       []binding           // declarations in scope, innermost last
	bound    map[string][]string // ns by prefix, once ns grew past fewBindings
	stack    []frame
	closing  bool              // a self-closing element's end token is due
	names    map[string]string // interned names and namespaces
	recent   [64]string        // names interned lately, by a hash of their bytes
	checked  map[string]bool   // non-ASCII names already found valid
	rawAttrs []rawAttr         // reused for every start tag
	attrs    []attribute       // reused for every start tag
	buf      []byte            // text with its references replaced

	// lastPrefix was last resolved to lastURI, and no binding has changed
	// since, when lastOK.
	lastPrefix, lastURI string
	lastOK              bool
}

func newScanner(raw []byte, maxDepth int) *scanner {
	s := &scanner{}
	s.reset(raw, maxDepth)
	return s
}

// scanners holds scanners released after a parse, so that the next parse
// reuses their slices and map instead of growing new ones.
var scanners = sync.Pool{New: func() any { return new(scanner) }}

// getScanner is newScanner, reusing a released scanner. The caller calls
// release when it holds nothing the scanner returned.
func getScanner(raw []byte, maxDepth int) *scanner {
	s := scanners.Get().(*scanner)
	s.reset(raw, maxDepth)
	return s
}

// Bounds of what a released scanner keeps; beyond them it drops the
// slice or map, so that one odd message does not pin memory for good.
const (
	keepNames = 128
	keepSlice = 256
	keepBuf   = 16 << 10
)

// release clears s of the message it read and returns it to scanners.
func (s *scanner) release() {
	// Slices past their length still point into the message.
	clear(s.stack[:cap(s.stack)])
	clear(s.rawAttrs[:cap(s.rawAttrs)])
	clear(s.attrs[:cap(s.attrs)])
	clear(s.ns[:cap(s.ns)])
	clear(s.buf[:cap(s.buf)])
	s.raw = nil
	scanners.Put(s)
}

// reset makes s a new scanner of raw, keeping only the capacity of its
// slices and of its names map, emptied.
func (s *scanner) reset(raw []byte, maxDepth int) {
	names := s.names
	if len(names) > keepNames {
		names = nil
	}
	clear(names)
	*s = scanner{
		raw:      raw,
		maxDepth: maxDepth,
		ns:       keep(s.ns),
		stack:    keep(s.stack),
		names:    names,
		rawAttrs: keep(s.rawAttrs),
		attrs:    keep(s.attrs),
		buf:      keep(s.buf),
	}
	if cap(s.buf) > keepBuf {
		s.buf = nil
	}
	if bytes.HasPrefix(raw, bom) {
		s.base = len(bom)
	}
	s.pos = s.base
}

// keep returns x emptied, or nil when it grew past keepSlice.
func keep[T any](x []T) []T {
	if cap(x) > keepSlice {
		return nil
	}
	return x[:0]
}

// depth returns the number of open elements.
func (s *scanner) depth() int { return len(s.stack) }

// offset returns the offset of the byte after the last token.
func (s *scanner) offset() int { return s.pos }

// line returns the 1-based line number of byte offset off.
func (s *scanner) line(off int) int {
	if off > len(s.raw) {
		off = len(s.raw)
	}
	return bytes.Count(s.raw[:off], []byte{'\n'}) + 1
}

// faultAt returns a fault whose text names the line of offset off.
func (s *scanner) faultAt(code string, off int, format string, args ...any) *Fault {
	return &Fault{
		Code:   code,
		String: fmt.Sprintf("line %d: ", s.line(off)) + fmt.Sprintf(format, args...),
	}
}

// syntax returns the fault for XML that is not well-formed at off.
func (s *scanner) syntax(off int, format string, args ...any) *Fault {
	return &Fault{Code: CodeMalformed, String: fmt.Sprintf(
		"line %d: the XML is not well-formed (%s); send well-formed XML 1.0 in UTF-8",
		s.line(off), fmt.Sprintf(format, args...))}
}

// eof returns the fault for a message that ends inside markup.
func (s *scanner) eof() *Fault {
	return s.syntax(len(s.raw), "unexpected end of the message")
}

// lookup returns the namespace bound to prefix, and whether one is.
func (s *scanner) lookup(prefix string) (string, bool) {
	if s.lastOK && prefix == s.lastPrefix {
		return s.lastURI, true
	}
	uri, ok := s.resolve(prefix)
	if ok {
		s.lastPrefix, s.lastURI, s.lastOK = prefix, uri, true
	}
	return uri, ok
}

// resolve is lookup without its one-entry cache.
func (s *scanner) resolve(prefix string) (string, bool) {
	if prefix == "xml" {
		return nsXML, true
	}
	if s.bound != nil {
		if uris := s.bound[prefix]; len(uris) > 0 {
			return uris[len(uris)-1], true
		}
	} else {
		for i := len(s.ns) - 1; i >= 0; i-- {
			if s.ns[i].prefix == prefix {
				return s.ns[i].uri, true
			}
		}
	}
	if prefix == "" {
		return "", true
	}
	return "", false
}

// intern returns b as a string, allocating once per distinct value in a
// message.
func (s *scanner) intern(b []byte) string {
	h := 0
	if len(b) > 0 {
		h = (len(b)*7 + int(b[0])*3 + int(b[len(b)-1])) & (len(s.recent) - 1)
	}
	if s.recent[h] == string(b) {
		return s.recent[h]
	}
	if v, ok := s.names[string(b)]; ok {
		s.recent[h] = v
		return v
	}
	if v, ok := commonNames[string(b)]; ok {
		s.recent[h] = v
		return v
	}
	if s.names == nil {
		s.names = make(map[string]string)
	}
	v := string(b)
	s.names[v] = v
	s.recent[h] = v
	return v
}

// commonNames are the names, prefixes and namespaces most messages hold,
// interned once for all of them: a message made of them costs no
// allocation for its names. The map is never written after init.
var commonNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{
		NSEnvelope, NSXRoad, NSIdentifiers, nsXML,
		"Envelope", "Header", "Body", "Fault", "faultcode", "faultstring", "detail",
		"client", "service", "id", "userId", "issue", "protocolVersion", "requestHash",
		"centralService", "objectType", "xRoadInstance", "memberClass", "memberCode",
		"subsystemCode", "serviceCode", "serviceVersion", "algorithmId",
		"soapenv", "soap", "SOAP-ENV", "env", "xrd", "xroad", "iden", "ident",
		"xmlns", "xsi", "xsd",
	} {
		m[n] = n
	}
	return m
}()

// next returns the next token. Comments are skipped; adjacent text is not
// merged. Every error is a *Fault.
func (s *scanner) next() (token, error) {
	for {
		before := s.pos
		if s.closing {
			s.closing = false
			top := s.stack[len(s.stack)-1]
			return s.endElement(top.raw, before, before)
		}
		if before >= len(s.raw) {
			if len(s.stack) > 0 {
				return token{}, s.faultAt(CodeMalformed, before,
					"the message ends before <%s> is closed; send the whole message",
					clip(string(s.stack[len(s.stack)-1].raw)))
			}
			return token{kind: tokEOF, start: before, end: before}, nil
		}
		if s.raw[before] != '<' {
			text, err := s.text(0, false)
			if err != nil {
				return token{}, err
			}
			return token{kind: tokText, text: text, start: before, end: s.pos}, nil
		}
		if before+1 >= len(s.raw) {
			return token{}, s.eof()
		}
		s.pos = before + 2
		switch s.raw[before+1] {
		case '/':
			return s.endTag(before)
		case '?':
			if err := s.procInst(before); err != nil {
				return token{}, err
			}
			continue // the XML declaration
		case '!':
			text, isText, err := s.bang(before)
			if err != nil {
				return token{}, err
			}
			if isText {
				return token{kind: tokText, text: text, start: before, end: s.pos}, nil
			}
			continue // a comment
		}
		s.pos = before + 1
		return s.startTag(before)
	}
}

// isNameByte reports whether c may be part of a name; every byte of a
// multi-byte character may, subject to validName.
func isNameByte(c byte) bool { return nameByte[c] }

var nameByte = func() (t [256]bool) {
	for c := range t {
		t[c] = 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '_' || c == ':' || c == '.' || c == '-' || c >= utf8.RuneSelf
	}
	return t
}()

// isSpaceByte reports whether c is XML white space.
func isSpaceByte(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// space skips white space.
func (s *scanner) space() {
	for s.pos < len(s.raw) && isSpaceByte(s.raw[s.pos]) {
		s.pos++
	}
}

// name reads a name at s.pos. It returns nil without an error when the
// byte there cannot begin a name, and the caller says what was expected.
// A name must be followed by a byte: a message never ends in one.
func (s *scanner) name() ([]byte, error) {
	start := s.pos
	i := start
	for i < len(s.raw) && isNameByte(s.raw[i]) {
		i++
	}
	if i == len(s.raw) {
		return nil, s.eof()
	}
	if i == start {
		return nil, nil
	}
	n := s.raw[start:i]
	if !s.validName(n) {
		return nil, s.syntax(start, "invalid XML name %s", clip(string(n)))
	}
	s.pos = i
	return n, nil
}

// validName reports whether n is an XML name: it starts with a letter, an
// underscore or a colon, or a character XML allows there.
func (s *scanner) validName(n []byte) bool {
	ascii := true
	for _, c := range n {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		c := n[0]
		return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || c == '_' || c == ':'
	}
	// Which characters beyond ASCII a name may hold is encoding/xml's
	// table; ask it, once per distinct name. The colon, which it would
	// treat as a prefix separator, is a name character like the
	// underscore.
	if ok, seen := s.checked[string(n)]; seen {
		return ok
	}
	probe := make([]byte, 0, len(n)+3)
	probe = append(probe, '<')
	for _, c := range n {
		if c == ':' {
			c = '_'
		}
		probe = append(probe, c)
	}
	probe = append(probe, '/', '>')
	_, err := xml.NewDecoder(bytes.NewReader(probe)).RawToken()
	if s.checked == nil {
		s.checked = make(map[string]bool)
	}
	s.checked[string(n)] = err == nil
	return err == nil
}

// splitName splits a name as written into its prefix and local part. A
// name with more than one colon is not a qualified name (ok false); one
// that starts or ends with its colon has no prefix.
func splitName(n []byte) (prefix, local []byte, ok bool) {
	i := bytes.IndexByte(n, ':')
	if i < 0 {
		return nil, n, true
	}
	if bytes.IndexByte(n[i+1:], ':') >= 0 {
		return nil, nil, false
	}
	if i == 0 || i == len(n)-1 {
		return nil, n, true
	}
	return n[:i], n[i+1:], true
}

// qualifiedName reads a name that may carry a prefix; what names the
// markup for a fault when there is none.
func (s *scanner) qualifiedName(what string) ([]byte, error) {
	at := s.pos
	n, err := s.name()
	if err != nil {
		return nil, err
	}
	if n != nil {
		if _, _, ok := splitName(n); ok {
			return n, nil
		}
	}
	return nil, s.syntax(at, "expected %s", what)
}

// endTag reads </name> after its "</".
func (s *scanner) endTag(before int) (token, error) {
	if len(s.stack) > 0 {
		// The usual case: the end tag names the open element, whose name
		// was read and checked at its start tag.
		top := s.stack[len(s.stack)-1].raw
		if e := s.pos + len(top); e < len(s.raw) && !nameByte[s.raw[e]] &&
			bytes.Equal(s.raw[s.pos:e], top) {
			s.pos = e
			return s.endTagClose(top, before)
		}
	}
	n, err := s.qualifiedName("an element name after </")
	if err != nil {
		return token{}, err
	}
	return s.endTagClose(n, before)
}

// endTagClose reads the rest of an end tag after its name n.
func (s *scanner) endTagClose(n []byte, before int) (token, error) {
	s.space()
	if s.pos >= len(s.raw) {
		return token{}, s.eof()
	}
	if s.raw[s.pos] != '>' {
		return token{}, s.syntax(s.pos, "invalid characters between </%s and >",
			clip(string(n)))
	}
	s.pos++
	return s.endElement(n, before, s.pos)
}

// startTag reads a start tag or an empty-element tag after its "<".
func (s *scanner) startTag(before int) (token, error) {
	n, err := s.qualifiedName("an element name after <")
	if err != nil {
		return token{}, err
	}
	s.rawAttrs = s.rawAttrs[:0]
	for {
		s.space()
		if s.pos >= len(s.raw) {
			return token{}, s.eof()
		}
		switch s.raw[s.pos] {
		case '/':
			s.pos++
			if s.pos >= len(s.raw) {
				return token{}, s.eof()
			}
			if s.raw[s.pos] != '>' {
				return token{}, s.syntax(s.pos, "expected /> in element")
			}
			s.pos++
			t, err := s.startElement(n, before, s.pos)
			s.closing = err == nil
			return t, err
		case '>':
			s.pos++
			return s.startElement(n, before, s.pos)
		}
		a, err := s.qualifiedName("an attribute name in element")
		if err != nil {
			return token{}, err
		}
		s.space()
		if s.pos >= len(s.raw) {
			return token{}, s.eof()
		}
		if s.raw[s.pos] != '=' {
			return token{}, s.syntax(s.pos, "attribute name without = in element")
		}
		s.pos++
		s.space()
		if s.pos >= len(s.raw) {
			return token{}, s.eof()
		}
		q := s.raw[s.pos]
		if q != '"' && q != '\'' {
			return token{}, s.syntax(s.pos, "unquoted or missing attribute value in element")
		}
		s.pos++
		v, err := s.text(q, false)
		if err != nil {
			return token{}, err
		}
		if len(s.buf) > 0 && len(v) > 0 && &v[0] == &s.buf[0] {
			// The value keeps the buffer: the next text gets another.
			s.buf = nil
		}
		s.rawAttrs = append(s.rawAttrs, rawAttr{name: a, value: v})
	}
}

// text reads character data from s.pos: up to the next '<' or the end of
// the message (quote 0, not cdata), up to and including quote (an
// attribute value), or up to and including "]]>" (cdata). It replaces
// references (not in CDATA) and turns CRLF and CR into LF. The result is a
// slice of the message when nothing was replaced, else of s.buf.
//
// As in encoding/xml, a character XML 1.0 does not allow is reported only
// once the whole text is read, so that an error found while reading it
// (a bad reference, "]]>") is the one reported.
func (s *scanner) text(quote byte, cdata bool) ([]byte, error) {
	raw := s.raw
	start := s.pos
	i := start
	var out []byte // nil while the text is raw[start:i] unchanged
	// floor is where the last reference ended: "]]>" and CRLF are
	// recognised in the bytes written since, as encoding/xml does.
	floor := start
	bad := -1 // offset of the first character XML does not allow
	end := -1 // where the text ends, before its closing quote or "]]>"
	for end < 0 {
		j := plainRun(raw, i)
		if out != nil {
			out = append(out, raw[i:j]...)
		}
		i = j
		if i >= len(raw) {
			if cdata || quote != 0 {
				return nil, s.eof()
			}
			end = i
			break
		}
		switch b := raw[i]; {
		case b == '>' && quote == 0 && i-2 >= floor && raw[i-1] == ']' && raw[i-2] == ']':
			if !cdata {
				return nil, s.syntax(i, "unescaped ]]> not in CDATA section")
			}
			end = i - 2
			i++
			if out != nil {
				out = out[:len(out)-2]
			}
		case b == '<' && !cdata:
			if quote != 0 {
				return nil, s.syntax(i, "unescaped < inside quoted string")
			}
			end = i
		case b == quote && quote != 0:
			end = i
			i++
		case b == '&' && !cdata:
			if out == nil {
				out = append(s.buf[:0], raw[start:i]...)
			}
			at := i
			var ok bool
			var err error
			if out, i, ok, err = s.reference(out, i); err != nil {
				return nil, err
			}
			if !ok && bad < 0 {
				bad = at
			}
			floor = i
		case b == '\r':
			if out == nil {
				out = append(s.buf[:0], raw[start:i]...)
			}
			out = append(out, '\n')
			i++
			if i < len(raw) && raw[i] == '\n' {
				i++
			}
		default:
			if b < 0x20 && b != '\t' && b != '\n' && bad < 0 ||
				b == 0xEF && i+2 < len(raw) && raw[i+1] == 0xBF && raw[i+2] >= 0xBE &&
					bad < 0 {
				bad = i // a control character, U+FFFE or U+FFFF
			}
			if out != nil {
				out = append(out, b)
			}
			i++
		}
	}
	s.pos = i

	data := raw[start:end]
	if out != nil {
		s.buf = out
		data = out
	}
	if bad >= 0 {
		return nil, s.syntax(bad, "a character XML 1.0 does not allow")
	}
	return data, nil
}

// plainText is true for the bytes text passes over without a look: not
// markup, not a line end to normalise, not the start of a character XML
// forbids. The scanner's input is valid UTF-8, whose only forbidden
// characters are the controls and U+FFFE and U+FFFF (EF BF BE, EF BF BF).
var plainText = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= 0x20 || c == '\t' || c == '\n'
	}
	for _, c := range []byte("<>&\"'\xef") {
		t[c] = false
	}
	return t
}()

// plainRun returns the offset of the first byte at or after i that is not
// plainText, or len(raw). It reads eight bytes at a time while none of
// them can be such a byte (SWAR, see mayStop); a word in doubt, which
// includes every word holding a tab, a line feed or a byte of a
// multi-byte character, is read byte by byte.
func plainRun(raw []byte, i int) int {
	for {
		for i+8 <= len(raw) && !mayStop(binary.LittleEndian.Uint64(raw[i:i+8])) {
			i += 8
		}
		end := min(i+8, len(raw))
		for i < end && plainText[raw[i]] {
			i++
		}
		if i < end || i == len(raw) {
			return i
		}
	}
}

// Byte-wise constants of mayStop.
const (
	lows  = 0x0101010101010101
	highs = 0x8080808080808080
)

// mayStop reports whether any byte of the word w might not be plainText:
// it is below 0x20 or above 0x7f, or one of "#&'<> ('#' for speed). It
// never misses such a byte.
func mayStop(w uint64) bool {
	// A byte below 0x20 or above 0x7f sets its high bit in w or, the
	// lowest such one at least, in w minus 0x20 in each byte.
	t := w | (w - 0x20*lows)
	q := (w ^ 0x22*lows) &^ (0x05 * lows) // a zero byte for "#&'
	m := (w ^ 0x3c*lows) &^ (0x02 * lows) // a zero byte for <>
	t |= (q - lows) &^ q                  // the high bit of a zero byte, at least
	t |= (m - lows) &^ m
	return t&highs != 0
}

// xmlChar reports whether XML 1.0 allows r.
func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D || r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}

// predefined are the five entities XML defines without a DTD.
var predefined = map[string]byte{"lt": '<', "gt": '>', "amp": '&', "apos": '\'', "quot": '"'}

// reference reads the reference at raw[i] (an '&'), appends what it
// stands for to out, and returns the offset after it, and whether XML
// allows the character it stands for. Only character
// references and the five predefined entities are accepted: no DTD may
// declare others. A reference that names anything else is a DTD matter
// (CodeDTDForbidden); one that is not a reference at all is malformed.
func (s *scanner) reference(out []byte, i int) ([]byte, int, bool, error) {
	raw := s.raw
	at := i
	i++
	if i >= len(raw) {
		return nil, 0, false, s.eof()
	}
	if raw[i] == '#' {
		i++
		if i >= len(raw) {
			return nil, 0, false, s.eof()
		}
		base := 10
		if raw[i] == 'x' {
			base = 16
			i++
		}
		digits := i
		for i < len(raw) && isDigit(raw[i], base) {
			i++
		}
		if i >= len(raw) {
			return nil, 0, false, s.eof()
		}
		if raw[i] == ';' {
			n, err := strconv.ParseUint(string(raw[digits:i]), base, 64)
			if err == nil && n <= utf8.MaxRune {
				// A surrogate becomes U+FFFD, as in encoding/xml.
				r := rune(n)
				if !utf8.ValidRune(r) {
					r = utf8.RuneError
				}
				return utf8.AppendRune(out, r), i + 1, xmlChar(r), nil
			}
		}
		return nil, 0, false, s.syntax(at, "invalid character reference")
	}

	first := raw[i]
	for i < len(raw) && isNameByte(raw[i]) {
		i++
	}
	if i >= len(raw) {
		return nil, 0, false, s.eof()
	}
	if raw[i] == ';' {
		if c, ok := predefined[string(raw[at+1:i])]; ok {
			return append(out, c), i + 1, true, nil
		}
	}
	if isNameStart(first) {
		return nil, 0, false, &Fault{Code: CodeDTDForbidden, String: fmt.Sprintf(
			"line %d: an entity reference other than &amp; &lt; &gt; &apos; &quot; "+
				"or a character reference; DTD entities are not allowed, write the "+
				"character itself", s.line(at))}
	}
	return nil, 0, false, s.syntax(at, "invalid entity reference")
}

func isDigit(c byte, base int) bool {
	return '0' <= c && c <= '9' ||
		base == 16 && ('a' <= c && c <= 'f' || 'A' <= c && c <= 'F')
}

func isNameStart(c byte) bool {
	return c == '_' || c == ':' || c >= 0x80 || ('a' <= c && c <= 'z') ||
		('A' <= c && c <= 'Z')
}

// procInst reads a processing instruction after its "<?". Only the XML
// declaration at the very start is accepted (SOAP 1.1, section 3), with
// version 1.0 if any and encoding UTF-8 if any.
func (s *scanner) procInst(before int) error {
	at := s.pos
	target, err := s.name()
	if err != nil {
		return err
	}
	if target == nil {
		return s.syntax(at, "expected a target name after <?")
	}
	s.space()
	end := bytes.Index(s.raw[s.pos:], []byte("?>"))
	if end < 0 {
		return s.eof()
	}
	content := s.raw[s.pos : s.pos+end]
	s.pos += end + 2
	if string(target) == "xml" {
		// An empty value counts as none, as in encoding/xml.
		if v := declParam(content, "version"); len(v) > 0 && string(v) != "1.0" {
			return s.faultAt(CodeMalformed, before, "the XML declaration says version "+
				"%q; send XML 1.0", clip(string(v)))
		}
		if e := declParam(content, "encoding"); len(e) > 0 &&
			!bytes.EqualFold(e, []byte("utf-8")) {
			return s.faultAt(CodeMalformed, before, "the XML declaration says encoding "+
				"%q; send the message in UTF-8", clip(string(e)))
		}
		if before == s.base {
			return nil
		}
		return s.faultAt(CodeMalformed, before,
			"the XML declaration is not at the very start; move it to byte 0")
	}
	if bytes.EqualFold(target, []byte("xml")) {
		return s.faultAt(CodeMalformed, before,
			"the XML declaration is not at the very start; move it to byte 0")
	}
	return s.faultAt(CodeMalformed, before,
		"processing instruction <?%s?> is not allowed in a SOAP message "+
			"(SOAP 1.1, section 3); remove it", clip(string(target)))
}

// declParam returns the quoted value of param= in the content of an XML
// declaration, or nil. It reads the declaration as loosely as
// encoding/xml does, so that the two accept the same declarations: the
// first param= followed by a quote counts, wherever it stands.
func declParam(content []byte, param string) []byte {
	for i := 0; i < len(content); {
		k := bytes.Index(content[i:], []byte(param+"="))
		if k < 0 {
			return nil
		}
		q := i + k + len(param) + 1 // the byte after "="
		if q >= len(content) {
			return nil
		}
		i = q + 1
		if c := content[q]; c == '"' || c == '\'' {
			j := bytes.IndexByte(content[i:], c)
			if j < 0 {
				return nil
			}
			return content[i : i+j]
		}
	}
	return nil
}

// bang reads what follows "<!": a comment (skipped), a CDATA section
// (returned as text) or a declaration (refused).
func (s *scanner) bang(before int) (text []byte, isText bool, err error) {
	raw := s.raw
	if s.pos >= len(raw) {
		return nil, false, s.eof()
	}
	switch raw[s.pos] {
	case '-':
		s.pos++
		if s.pos >= len(raw) {
			return nil, false, s.eof()
		}
		if raw[s.pos] != '-' {
			return nil, false, s.syntax(before, "invalid sequence <!- not part of <!--")
		}
		s.pos++
		// The first "--" must close the comment.
		end := bytes.Index(raw[s.pos:], []byte("--"))
		if end < 0 || s.pos+end+2 >= len(raw) {
			return nil, false, s.eof()
		}
		if raw[s.pos+end+2] != '>' {
			return nil, false, s.syntax(s.pos+end, `"--" inside a comment`)
		}
		s.pos += end + 3
		return nil, false, nil
	case '[':
		const cdata = "[CDATA["
		for i := range len(cdata) {
			if s.pos >= len(raw) {
				return nil, false, s.eof()
			}
			if raw[s.pos] != cdata[i] {
				return nil, false, s.syntax(before, "invalid <![ sequence")
			}
			s.pos++
		}
		text, err := s.text(0, true)
		return text, true, err
	}
	if err := s.skipDeclaration(); err != nil {
		return nil, false, err
	}
	return nil, false, s.faultAt(CodeDTDForbidden, before,
		"a DOCTYPE or other <!...> declaration is not allowed in a SOAP "+
			"message; remove it and use only the five predefined entities")
}

// skipDeclaration reads a <!...> declaration to its end the way
// encoding/xml does, so that an unterminated one is malformed and a
// terminated one a DTD: quoted '>' do not end it, nested '<' and '>' pair,
// and <!-- --> comments inside are passed over.
func (s *scanner) skipDeclaration() error {
	raw := s.raw
	var quote byte
	depth := 0
	// The byte after "<!" belongs to the declaration, like all that
	// follow, but cannot end it.
	s.pos++
	for {
		if s.pos >= len(raw) {
			return s.eof()
		}
		b := raw[s.pos]
		s.pos++
		if quote == 0 && b == '>' && depth == 0 {
			return nil
		}
	handle:
		switch {
		case b == quote:
			quote = 0
		case quote != 0:
		case b == '\'' || b == '"':
			quote = b
		case b == '>':
			depth--
		case b == '<':
			const open = "!--"
			for i := range len(open) {
				if s.pos >= len(raw) {
					return s.eof()
				}
				b = raw[s.pos]
				s.pos++
				if b != open[i] {
					depth++
					goto handle
				}
			}
			end := bytes.Index(raw[s.pos:], []byte("-->"))
			if end < 0 {
				return s.eof()
			}
			s.pos += end + 3
		}
	}
}

// startElement checks and resolves a start tag whose attributes are in
// s.rawAttrs.
func (s *scanner) startElement(n []byte, before, after int) (token, error) {
	if len(s.stack)+1 > s.maxDepth {
		return token{}, s.faultAt(CodeTooDeep, before,
			"elements nest deeper than %d levels; flatten the message", s.maxDepth)
	}
	if a, dup := duplicateRaw(s.rawAttrs); dup {
		return token{}, s.faultAt(CodeMalformed, before,
			"attribute %s appears twice on <%s>; keep one", clip(string(a)),
			clip(string(n)))
	}
	s.stack = append(s.stack, frame{raw: n, nsLen: len(s.ns)})
	for _, a := range s.rawAttrs {
		prefix, local, _ := splitName(a.name)
		switch {
		case prefix == nil && string(local) == "xmlns":
			if string(a.value) == nsXML {
				return token{}, s.faultAt(CodeMalformed, before,
					"the xml namespace cannot be the default namespace")
			}
			s.bind("", s.intern(a.value))
		case string(prefix) == "xmlns":
			p, uri := s.intern(local), s.intern(a.value)
			if err := s.checkBinding(p, uri, before); err != nil {
				return token{}, err
			}
			if p != "xml" {
				s.bind(p, uri)
			}
		}
	}

	name, prefix, err := s.expand(n, true, before)
	if err != nil {
		return token{}, err
	}
	top := &s.stack[len(s.stack)-1]
	top.name, top.prefix = name, prefix
	tok := token{kind: tokStart, name: name, prefix: prefix, start: before, end: after}
	s.attrs = s.attrs[:0]
	for _, a := range s.rawAttrs {
		p, local, _ := splitName(a.name)
		if string(p) == "xmlns" || p == nil && string(local) == "xmlns" {
			continue
		}
		an, _, err := s.expand(a.name, false, before)
		if err != nil {
			return token{}, err
		}
		s.attrs = append(s.attrs, attribute{name: an, value: a.value})
	}
	if an, dup := duplicateExpanded(s.attrs); dup {
		return token{}, s.faultAt(CodeMalformed, before,
			"attribute {%s}%s appears twice on <%s>; keep one", clip(an.Space),
			clip(an.Local), clip(string(n)))
	}
	tok.attrs = s.attrs
	return tok, nil
}

// duplicateRaw returns a name as written that two attributes share. A map
// is used past a few attributes, so that many attributes cost linear time.
func duplicateRaw(attrs []rawAttr) ([]byte, bool) {
	if len(attrs) <= 8 {
		for i := range attrs {
			for j := i + 1; j < len(attrs); j++ {
				if bytes.Equal(attrs[i].name, attrs[j].name) {
					return attrs[i].name, true
				}
			}
		}
		return nil, false
	}
	seen := make(map[string]bool, len(attrs))
	for _, a := range attrs {
		if seen[string(a.name)] {
			return a.name, true
		}
		seen[string(a.name)] = true
	}
	return nil, false
}

// duplicateExpanded returns an expanded name that two attributes share.
func duplicateExpanded(attrs []attribute) (xml.Name, bool) {
	if len(attrs) <= 8 {
		for i := range attrs {
			for j := i + 1; j < len(attrs); j++ {
				if attrs[i].name == attrs[j].name {
					return attrs[i].name, true
				}
			}
		}
		return xml.Name{}, false
	}
	seen := make(map[xml.Name]bool, len(attrs))
	for _, a := range attrs {
		if seen[a.name] {
			return a.name, true
		}
		seen[a.name] = true
	}
	return xml.Name{}, false
}

// binding is a namespace declaration.
type binding struct{ prefix, uri string }

// fewBindings is how many declarations in scope resolve searches through
// from the innermost, costing no map; past it, a map keeps resolving
// cheap however many a message declares.
const fewBindings = 16

// bind declares prefix for the element opened last.
func (s *scanner) bind(prefix, uri string) {
	s.ns = append(s.ns, binding{prefix, uri})
	switch {
	case s.bound != nil:
		s.bound[prefix] = append(s.bound[prefix], uri)
	case len(s.ns) > fewBindings:
		s.bound = make(map[string][]string, len(s.ns))
		for _, b := range s.ns {
			s.bound[b.prefix] = append(s.bound[b.prefix], b.uri)
		}
	}
	s.lastOK = false
}

// unbind drops the declarations made after the first n.
func (s *scanner) unbind(n int) {
	for len(s.ns) > n {
		if s.bound != nil {
			p := s.ns[len(s.ns)-1].prefix
			s.bound[p] = s.bound[p][:len(s.bound[p])-1]
		}
		s.ns = s.ns[:len(s.ns)-1]
		s.lastOK = false
	}
}

func (s *scanner) checkBinding(prefix, uri string, off int) error {
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
	}
	return nil
}

// expand resolves a name as written and returns it with its prefix.
// Unprefixed attributes are in no namespace.
func (s *scanner) expand(n []byte, element bool, off int) (xml.Name, string, error) {
	p, l, _ := splitName(n)
	if bytes.IndexByte(l, ':') >= 0 {
		return xml.Name{}, "", s.faultAt(CodeMalformed, off,
			"%q is not a valid qualified name", clip(string(n)))
	}
	local := s.intern(l)
	if p == nil && !element {
		return xml.Name{Local: local}, "", nil
	}
	prefix := ""
	if len(p) > 0 {
		prefix = s.intern(p)
	}
	uri, ok := s.lookup(prefix)
	if !ok {
		return xml.Name{}, "", s.faultAt(CodeMalformed, off,
			"prefix %s of <%s> is not declared; declare it with xmlns:%s",
			clip(prefix), clip(string(n)), clip(prefix))
	}
	return xml.Name{Space: uri, Local: local}, prefix, nil
}

func (s *scanner) endElement(n []byte, before, after int) (token, error) {
	if len(s.stack) == 0 {
		return token{}, s.faultAt(CodeMalformed, before,
			"end tag </%s> closes nothing; remove it", clip(string(n)))
	}
	top := s.stack[len(s.stack)-1]
	if !bytes.Equal(top.raw, n) {
		return token{}, s.faultAt(CodeMalformed, before,
			"<%s> is closed by </%s>; close elements in order",
			clip(string(top.raw)), clip(string(n)))
	}
	// The bindings in scope are those of the start tag, which resolved
	// the same name.
	s.stack = s.stack[:len(s.stack)-1]
	s.unbind(top.nsLen)
	return token{kind: tokEnd, name: top.name, prefix: top.prefix, start: before,
		end: after}, nil
}

// qname returns a raw name as written, clipped for a fault's text.
func qname(n xml.Name) string {
	if n.Space == "" {
		return clip(n.Local)
	}
	return clip(n.Space + ":" + n.Local)
}

// isSpace reports whether b is XML white space only.
func isSpace(b []byte) bool {
	for _, c := range b {
		if !isSpaceByte(c) {
			return false
		}
	}
	return true
}
