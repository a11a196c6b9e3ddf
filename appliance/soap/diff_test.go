package soap

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// To fuzz: go test -run '^$' -fuzz FuzzScannerDifferential -fuzztime 120s ./appliance/soap

// oldParse is parse with the encoding/xml-based scanner: the oracle.
func oldParse(raw []byte, lim Limits, response bool) (*Message, error) {
	lim = lim.withDefaults()
	if len(raw) > lim.MaxBytes {
		return nil, &Fault{Code: CodeSizeExceeded, String: "too big"}
	}
	if !utf8.Valid(raw) {
		return nil, &Fault{Code: CodeInvalidUTF8, String: "not UTF-8"}
	}
	return parseWith(newXMLScanner(raw, lim.MaxDepth), raw, response)
}

// FuzzScannerDifferential checks scanner against the encoding/xml-based
// scanner it replaced: both accept or both refuse every input, with the
// same fault code, and what they accept parses to the same message and is
// well-formed XML by encoding/xml's strict decoder. The seeds are the
// corpora of FuzzParseRequest and FuzzParseResponse and the cases below.
func FuzzScannerDifferential(f *testing.F) {
	addSeeds(f)
	for _, dir := range []string{"FuzzParseRequest", "FuzzParseResponse"} {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range files {
			f.Add(readCorpusFile(f, name))
		}
	}
	tmpl := string(NewRequest(testHeader(), []byte(testBody)))
	for _, edit := range [][2]string{
		{xPin, "<pin a='1'b=\"2\">x</pin>"},
		{xPin, "<pin>a\r\nb\rc&#13;&#xD;</pin>"},
		{xPin, "<pin><![CDATA[a]]]]><![CDATA[>\r\n]]></pin>"},
		{xPin, "<pin>]]></pin>"},
		{xPin, "<pin>]]&gt;&#93;]></pin>"},
		{xPin, "<pin>&#xD800;&#0;&#x10FFFF;&#x110000;</pin>"},
		{xPin, "<pin>&lol</pin>"},
		{xPin, "<pin>& </pin>"},
		{xPin, "<pin>&;</pin>"},
		{xPin, "<pin>&1a;</pin>"},
		{xPin, "<pin>&é;</pin>"},
		{xPin, "<pin>\x01&lol;</pin>"},
		{xPin, "<pin>\uFFFE</pin>"},
		{xPin, "<pin>&#xFFFF;</pin>"},
		{xPin, "<pin a=\"&#60;\r\n\t\" />"},
		{xPin, "<pin a=\"<\" />"},
		{xPin, "<pin a=x />"},
		{xPin, "<pin a />"},
		{xPin, "<pin/ >"},
		{xPin, "<pin></pin >"},
		{xPin, "<pin></pin x>"},
		{xPin, "<Əliyev>x</Əliyev>"},
		{xPin, "<a:b:c/>"},
		{xPin, "<:a/>"},
		{xPin, "<a:/>"},
		{xPin, "<1a/>"},
		{xPin, "<a\u00b7/>"},
		{xPin, "<\u00b7a/>"},
		{xPin, "<pin xmlns:q='urn:q' q:a='1' a='2'/>"},
		{xPin, "<pin xmlns='" + nsXML + "'/>"},
		{xPin, "<pin xmlns:xml='" + nsXML + "'/>"},
		{xPin, "<pin xmlns:xmlns='urn:x'/>"},
		{xPin, "<pin xmlns:='urn:x'/>"},
		{xPin, "<pin xml:lang='az'/>"},
		{xPin, "<!-- a -- b -->"},
		{xPin, "<!--->"},
		{xPin, "<!---->"},
		{xPin, "<!-x>"},
		{xPin, "<![CDAT[x]]>"},
		{xPin, "<!DOCTYPE a [<!-- > --> <x>] >"},
		{xPin, "<!X \">\" >"},
		{xPin, "<!>>"},
		{xPin, "<?xml version='1.0'?>"},
		{xPin, "<?xml-stylesheet x?>"},
		{xDecl, "<?xml version='1.0' encoding='utf-8' ?>"},
		{xDecl, "<?xml version=\"1.1\"?>"},
		{xDecl, "<?xml encoding=\"latin1\" version=\"1.0\"?>"},
		{xDecl, "<?xml versionx=\"2\" version=\"1.0\"?>"},
		{xDecl, "<?xml?>"},
		{xDecl, `<?xml version="" encoding=''?>`},
		{xDecl, "<?xml"},
		{xDecl, "\ufeff" + xDecl},
	} {
		f.Add([]byte(strings.Replace(tmpl, edit[0], edit[1], 1)))
	}
	for _, end := range []string{"<", "</", "<a", "<a ", "<a b", "<a b=", "<a b='", "<!",
		"<!-", "<!--", "<![", "<![CDATA[", "<?", "<?x", "&", "&#", "&#x", "&a", "<a/"} {
		f.Add([]byte(tmpl[:strings.Index(tmpl, xPin)] + end))
	}

	f.Fuzz(checkDifferential)
}

// checkDifferential fails t unless scanner and the oracle agree on raw.
func checkDifferential(t *testing.T, raw []byte) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\ninput %q", append(args, raw)...)
	}
	for _, response := range []bool{false, true} {
		m, err := parse(raw, DefaultLimits(), response)
		om, oerr := oldParse(raw, DefaultLimits(), response)
		switch {
		case err == nil && oerr != nil:
			fail("response %v: accepted, but the oracle refuses: %v", response, oerr)
		case err != nil && oerr == nil:
			fail("response %v: refused (%v), but the oracle accepts", response, err)
		case err != nil:
			if c, oc := AsFault(err).Code, AsFault(oerr).Code; c != oc {
				fail("response %v: fault %s (%v), the oracle's %s (%v)",
					response, c, err, oc, oerr)
			}
		default:
			checkAccepted(t, raw, m)
			if !reflect.DeepEqual(m, om) {
				fail("response %v: message\n got %+v\nwant %+v", response, m, om)
			}
		}
	}

	if !utf8.Valid(raw) {
		return
	}
	e, err := findHeaderEndWith(newScanner(raw, DefaultLimits().MaxDepth), raw)
	oe, oerr := findHeaderEndWith(newXMLScanner(raw, DefaultLimits().MaxDepth), raw)
	switch {
	case (err == nil) != (oerr == nil):
		fail("findHeaderEnd: %v, the oracle's %v", err, oerr)
	case err != nil:
		if c, oc := AsFault(err).Code, AsFault(oerr).Code; c != oc {
			fail("findHeaderEnd: fault %s (%v), the oracle's %s (%v)", c, err, oc, oerr)
		}
	case !reflect.DeepEqual(e, oe):
		fail("findHeaderEnd: %+v, the oracle's %+v", e, oe)
	}
}

// fragments are pieces of XML, well-formed or not, that the random
// differential test splices into a request.
var fragments = []string{
	"<", ">", "/>", "</", "<a>", "</a>", "<a/>", "<p:a>", "</p:a>", "<b:c/>", " ",
	"\r", "\n", "\r\n", "\t", "&", ";", "&amp;", "&lt;", "&#65;", "&#x41;", "&#0;",
	"&#xD800;", "&#xFFFE;", "&lol;", "&#", "]]>", "]", "]]", "<![CDATA[", "<!--", "-->",
	"--", "<!DOCTYPE x>", "<!", "<?", "?>", "<?xml version='1.0'?>", "=", "'", "\"",
	` a="1"`, ` a='&amp;'`, ` xmlns="urn:d"`, ` xmlns:p="urn:p"`, ` xmlns:p=""`,
	` p:a="2"`, ` xml:lang="az"`, ":", "::", "Ə", "\u00b7", "1", "x", "\x01", "\uFFFF",
}

// TestScannerDifferentialRandom splices random fragments into a request
// and holds scanner to the oracle on each result: a cheap, repeatable
// complement to FuzzScannerDifferential that reaches deeper into the
// combinations of markup.
func TestScannerDifferentialRandom(t *testing.T) {
	tmpl := NewRequest(testHeader(), []byte(testBody))
	rnd := rand.New(rand.NewPCG(1, 2))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for range n {
		raw := bytes.Clone(tmpl)
		for range 1 + rnd.IntN(4) {
			at := rnd.IntN(len(raw) + 1)
			frag := fragments[rnd.IntN(len(fragments))]
			if rnd.IntN(4) == 0 {
				// Cut instead of inserting.
				end := min(len(raw), at+rnd.IntN(8))
				raw = append(raw[:at], raw[end:]...)
				continue
			}
			raw = slices.Insert(raw, at, []byte(frag)...)
		}
		checkDifferential(t, raw)
	}
}

// readCorpusFile returns the []byte value of a one-value corpus file of
// the "go test fuzz v1" format.
func readCorpusFile(tb testing.TB, name string) []byte {
	tb.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	_, v, ok := bytes.Cut(data, []byte("\n[]byte("))
	v = bytes.TrimSpace(v)
	if !ok || !bytes.HasSuffix(v, []byte(")")) {
		tb.Fatalf("%s is not a corpus file of one []byte", name)
	}
	s, err := strconv.Unquote(string(v[:len(v)-1]))
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return []byte(s)
}

// The scanner's tokens carry the same offsets as the oracle's: hash.go
// and the tests edit messages at them.
func TestScannerOffsets(t *testing.T) {
	raw := []byte("\ufeff<?xml version=\"1.0\"?>\n<a xmlns='urn:a'><b c='&amp;'/>t&lt;" +
		"<![CDATA[x]]><!--c--><d>\r\n</d></a>\n")
	n, o := newScanner(raw, 64), newXMLScanner(raw, 64)
	for {
		got, err := n.next()
		want, oerr := o.next()
		if err != nil || oerr != nil {
			t.Fatalf("next: %v, the oracle's %v", err, oerr)
		}
		if got.kind != want.kind || got.name != want.name || got.prefix != want.prefix ||
			got.start != want.start || got.end != want.end ||
			!bytes.Equal(got.text, want.text) || n.offset() != o.offset() ||
			n.depth() != o.depth() || !attrsEqual(got.attrs, want.attrs) {
			t.Fatalf("token\n got %+v (offset %d)\nwant %+v (offset %d)", got, n.offset(),
				want, o.offset())
		}
		if got.kind == tokEOF {
			return
		}
	}
}

func attrsEqual(a, b []attribute) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].name != b[i].name || !bytes.Equal(a[i].value, b[i].value) {
			return false
		}
	}
	return true
}
