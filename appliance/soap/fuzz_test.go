package soap

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// The seed corpora are in testdata/fuzz; the normal suite runs only them.
// To fuzz: go test -run '^$' -fuzz FuzzParseRequest -fuzztime 60s ./appliance/soap

func FuzzParseRequest(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := ParseRequest(raw, DefaultLimits())
		if err != nil {
			checkFault(t, m, err)
			return
		}
		checkAccepted(t, raw, m)

		again := NewRequest(m.Header, bodyElement(m.Body))
		m2, err := ParseRequest(again, Limits{MaxBytes: 1 << 20})
		if err != nil {
			t.Fatalf("the rebuilt request is refused: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(m2.Header, m.Header) {
			t.Fatalf("header changed on the round trip:\n got %+v\nwant %+v",
				m2.Header, m.Header)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := ParseResponse(raw, DefaultLimits())
		if err != nil {
			checkFault(t, m, err)
			return
		}
		checkAccepted(t, raw, m)

		var again []byte
		if m.Fault != nil {
			again = m.Fault.Envelope(&m.Header)
		} else {
			again = NewResponse(m.Header, bodyElement(m.Body))
		}
		m2, err := ParseResponse(again, Limits{MaxBytes: 1 << 20})
		if err != nil {
			t.Fatalf("the rebuilt response is refused: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(m2.Header, m.Header) {
			t.Fatalf("header changed on the round trip:\n got %+v\nwant %+v",
				m2.Header, m.Header)
		}
		if (m.Fault == nil) != (m2.Fault == nil) {
			t.Fatalf("fault %v became %v", m.Fault, m2.Fault)
		}
		if m.Fault != nil {
			want := *m.Fault
			// A prefixed faultcode is kept as written unless its prefix is
			// bound to the envelope namespace, and the rebuilt envelope
			// binds SOAP-ENV: such a code may lose its prefix.
			if strings.Contains(want.Code, ":") {
				want.Code = m2.Fault.Code
			}
			if *m2.Fault != want {
				t.Fatalf("fault changed on the round trip:\n got %+v\nwant %+v",
					m2.Fault, want)
			}
		}

		// WithRequestHash takes every accepted response.
		out, err := WithRequestHash(raw, []byte("request"))
		if err != nil {
			t.Fatalf("WithRequestHash refused an accepted response: %v", err)
		}
		if got, err := m.WithRequestHash([]byte("request")); err != nil ||
			!bytes.Equal(got, out) {
			t.Fatalf("the Message method gives %v and\n%s\nthe function gives\n%s",
				err, got, out)
		}
		el := requestHashElement(HashRequest([]byte("request")))
		if m.Header.RequestHash == nil && !bytes.Equal(bytes.Replace(out, el, nil, 1), raw) &&
			!bytes.Equal(bytes.Replace(out, el, nil, 1), openedHeader(raw)) {
			t.Fatalf("WithRequestHash changed other bytes:\n%s\n%s", raw, out)
		}
		if m.Fault == nil {
			m3, err := ParseResponse(out, Limits{MaxBytes: 1 << 20})
			if err != nil {
				t.Fatalf("the response with its requestHash is refused: %v\n%s", err, out)
			}
			if err := CheckRequestHash(m3, []byte("request")); err != nil {
				t.Fatalf("CheckRequestHash: %v", err)
			}
		}
	})
}

// addSeeds adds the messages of the other tests to the corpus in
// testdata/fuzz.
func addSeeds(f *testing.F) {
	raw, err := os.ReadFile("testdata/xroad-request.xml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add(NewRequest(testHeader(), []byte(testBody)))
	h := testHeader()
	h.RequestHash = &RequestHash{Algorithm: AlgSHA256, Value: []byte("0123456789")}
	f.Add(NewResponse(h, []byte(testRespBody)))
	f.Add((&Fault{Code: CodeReplay, String: "seen", Detail: "d"}).Envelope(&h))
	f.Add((&Fault{Code: CodeInternal, String: "x"}).Envelope(nil))
}

// checkFault fails t unless err is a *Fault with a known code and a text.
func checkFault(t *testing.T, m *Message, err error) {
	t.Helper()
	var f *Fault
	if !errors.As(err, &f) {
		t.Fatalf("error %v (%T) is not a *Fault", err, err)
	}
	if !slices.Contains(Codes(), f.Code) {
		t.Fatalf("fault code %q is not a known code", f.Code)
	}
	if f.String == "" {
		t.Fatalf("fault %s has no text", f.Code)
	}
	if m != nil {
		t.Fatalf("a message came back with fault %v", f)
	}
}

// checkAccepted fails t when an accepted message is not what was given or
// is not well-formed XML by encoding/xml's own strict decoder.
func checkAccepted(t *testing.T, raw []byte, m *Message) {
	t.Helper()
	if !bytes.Equal(m.Raw, raw) {
		t.Fatal("Raw is not the bytes parsed")
	}
	d := xml.NewDecoder(bytes.NewReader(bytes.TrimPrefix(raw, bom)))
	d.Strict = true
	for {
		_, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("accepted, but encoding/xml refuses it: %v", err)
		}
	}
}

// openedHeader returns raw with its self-closing SOAP Header opened, or
// with a Header added when it has none, as WithRequestHash does.
func openedHeader(raw []byte) []byte {
	s := newScanner(raw, 64)
	var env token
	for {
		t, err := s.next()
		if err != nil || t.kind == tokEOF {
			return nil
		}
		if t.kind != tokStart {
			continue
		}
		if s.depth() == 1 {
			env = t
			continue
		}
		if t.name.Local != "Header" {
			closing := "</" + env.prefix + ":Header>"
			open := "<" + env.prefix + ":Header>"
			if env.prefix == "" {
				open, closing = "<Header>", "</Header>"
			}
			return slices.Concat(raw[:env.end], []byte(open+closing), raw[env.end:])
		}
		closing := "</" + t.prefix + ":Header>"
		if t.prefix == "" {
			closing = "</Header>"
		}
		return slices.Concat(raw[:t.end-2], []byte(">"+closing), raw[t.end:])
	}
}

// bodyElement returns an empty element of the given name.
func bodyElement(n xml.Name) []byte {
	var b bytes.Buffer
	if n.Space == nsXML {
		b.WriteString("<xml:" + n.Local + "/>")
		return b.Bytes()
	}
	b.WriteString("<" + n.Local + ` xmlns="`)
	escape(&b, n.Space)
	b.WriteString(`"/>`)
	return b.Bytes()
}

// BenchmarkParseRequest10KB parses a request of exactly 10 KB, the
// largest clause 5.2 allows.
func BenchmarkParseRequest10KB(b *testing.B) {
	raw := request10KB(b)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequest(raw, DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}

// request10KB returns a request of exactly 10240 bytes whose body is a
// list of records, as a service would carry.
func request10KB(tb testing.TB) []byte {
	const rec = "<record><pin>5ZHK3PL</pin><name>Əliyev Həsən</name>" +
		"<born>1980-01-01</born></record>\n"
	build := func(records int, pad int) []byte {
		body := `<p:getPersonByPin xmlns:p="http://asan.gov.az/producer">` + "\n" +
			strings.Repeat(rec, records) + "<pad>" + strings.Repeat("x", pad) + "</pad>" +
			"</p:getPersonByPin>"
		return NewRequest(testHeader(), []byte(body))
	}
	n := 0
	for len(build(n+1, 0)) <= 10<<10 {
		n++
	}
	raw := build(n, 10<<10-len(build(n, 0)))
	if len(raw) != 10<<10 {
		tb.Fatalf("the request is %d bytes, want %d", len(raw), 10<<10)
	}
	return raw
}

// FuzzFaultEnvelope checks that every fault this package writes parses
// back to itself, whatever its texts hold.
func FuzzFaultEnvelope(f *testing.F) {
	f.Add(CodeAccessDenied, "no access; ask", "", "")
	f.Add("", "a\r\nb\tc", "http://ss.example.az/", "  ref 7  ")
	f.Add(CodeReplay, "\x00\xff\ufffe <&>]]>", "\x01", "\x7f")
	f.Fuzz(func(t *testing.T, code, str, actor, detail string) {
		in := &Fault{Code: code, String: str, Actor: actor, Detail: detail}
		h := testHeader()
		m, err := ParseResponse(in.Envelope(&h), Limits{MaxBytes: 1 << 20})
		if err != nil {
			t.Fatalf("the fault envelope is refused: %v", err)
		}
		// Envelope trims the code before it writes it, and so removes
		// what TrimSpace counts as space but XML text cannot carry (\f).
		wcode := strings.TrimSpace(code)
		if wcode == "" {
			wcode = CodeInternal
		}
		want := Fault{
			Code:   strings.TrimSpace(xmlText(wcode)),
			String: xmlText(str),
			Actor:  xmlText(actor),
			Detail: strings.TrimSpace(xmlText(strings.TrimSpace(detail))),
		}
		if c, ok := strings.CutPrefix(want.Code, "SOAP-ENV:"); ok {
			want.Code = c
		}
		if want.Code == "" {
			want.Code = CodeInternal
		}
		if m.Fault == nil || *m.Fault != want {
			t.Fatalf("fault\n got %+v\nwant %+v", m.Fault, want)
		}
		if !reflect.DeepEqual(m.Header, h) {
			t.Fatalf("header\n got %+v\nwant %+v", m.Header, h)
		}
	})
}

// xmlText returns s as XML text can carry it: invalid UTF-8 and characters
// XML 1.0 forbids become U+FFFD, as xml.EscapeText writes them.
func xmlText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || !isXMLChar(r) {
			r = '\uFFFD'
		}
		b.WriteRune(r)
		i += n
	}
	return b.String()
}

func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}
