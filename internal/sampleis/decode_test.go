package sampleis

import (
	"bytes"
	"encoding/xml"
	"reflect"
	"strings"
	"testing"

	"github.com/qapi-az/qapi/appliance/ident"
)

var testHeader = Header{
	Client: ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2002",
		SubsystemCode: "POLICE"},
	Service: ident.Service{Client: ident.Client{Instance: "AZ", MemberClass: "GOV",
		MemberCode: "1001", SubsystemCode: "EDR"}, ServiceCode: CodeSearchPersons},
	ID: "id-1", UserID: "AZ123", Issue: "a < b & \"c\" 'd' é",
}

// envelope wraps body in a request envelope whose header names op.
func envelope(op, body string) string {
	h := testHeader
	h.Service.ServiceCode = op
	raw := string(GetPersonRequest(h, "X"))
	i := strings.Index(raw, "<soapenv:Body>") + len("<soapenv:Body>")
	return raw[:i] + body + "</soapenv:Body></soapenv:Envelope>"
}

const nsAttr = ` xmlns:pr="` + Namespace + `"`

// decodeCases are requests of many shapes. fast says whether decodeFast
// must take the request; for the others it may decline.
var decodeCases = []struct {
	name string
	raw  string
	fast bool
}{
	{"getPerson", string(GetPersonRequest(func() Header {
		h := testHeader
		h.Service.ServiceCode = CodeGetPerson
		return h
	}(), "ABC1234")), true},
	{"searchPersons", string(SearchPersonsRequest(testHeader, Search{Surname: "Əliyev",
		GivenName: "Anar", BirthYear: "1980", MaxResults: 7, Purpose: "audit"})), true},
	{"searchPersons long purpose", string(SearchPersonsRequest(testHeader, Search{
		Surname: "Əliyev", MaxResults: 1, Purpose: strings.Repeat("a", 9000)})), true},
	{"zeep style", envelope(CodeGetPerson, `<ns0:getPerson xmlns:ns0="`+Namespace+
		`"><ns0:fin>ABC1234</ns0:fin></ns0:getPerson>`), true},
	{"default namespace", envelope(CodeGetPerson, `<getPerson xmlns="`+Namespace+
		`">`+"\n  <fin>ABC1234</fin>\n</getPerson>"), true},
	{"white space", envelope(CodeSearchPersons, "<pr:searchPersons"+nsAttr+
		"  a='>' >\n\t<pr:surname >Quliyev</pr:surname>\r\n<pr:maxResults> 3 </pr:maxResults>"+
		"\n</pr:searchPersons >\n") + "\n\n", true},
	{"empty field", envelope(CodeSearchPersons, "<pr:searchPersons><pr:surname>"+
		"</pr:surname></pr:searchPersons>"), true},
	{"no fields", envelope(CodeSearchPersons, "<pr:searchPersons></pr:searchPersons>"), true},

	// Shapes the fast path declines; decodeSlow must still read them.
	{"reference", envelope(CodeGetPerson, `<pr:getPerson><pr:fin>A&amp;B</pr:fin>`+
		`</pr:getPerson>`), false},
	{"greater-than", envelope(CodeGetPerson, `<pr:getPerson><pr:fin>A>B</pr:fin>`+
		`</pr:getPerson>`), false},
	{"comment hiding a start tag", envelope(CodeGetPerson, `<pr:getPerson><pr:fin>`+
		`<!--<pr:getPerson><pr:fin>-->ABC1234</pr:fin></pr:getPerson>`), false},
	{"comment hiding an end tag", envelope(CodeGetPerson, `<pr:getPerson><pr:fin>`+
		`ABC1234</pr:fin><!--</pr:fin>--></pr:getPerson>`), false},
	{"CDATA", envelope(CodeGetPerson, `<pr:getPerson><pr:fin><![CDATA[<pr:fin>]]>`+
		`</pr:fin></pr:getPerson>`), false},
	{"CDATA hiding a start tag", envelope(CodeGetPerson, `<pr:getPerson><pr:fin>`+
		`<![CDATA[<pr:getPerson a="]]>"</pr:fin></pr:getPerson>`), false},
	{"comment after the Envelope", envelope(CodeGetPerson, `<pr:getPerson><pr:fin>A`+
		`</pr:fin></pr:getPerson>`) + "<!-- x -->", false},
	{"field with attribute", envelope(CodeGetPerson, `<pr:getPerson><pr:fin a="1">A`+
		`</pr:fin></pr:getPerson>`), false},
	{"field redeclaring its prefix", envelope(CodeGetPerson, `<pr:getPerson><pr:fin `+
		`xmlns:pr="urn:other">A</pr:fin></pr:getPerson>`), false},
	{"field in another namespace", envelope(CodeGetPerson, `<pr:getPerson><x:fin `+
		`xmlns:x="urn:other">A</x:fin></pr:getPerson>`), false},
	{"field twice", envelope(CodeGetPerson, `<pr:getPerson><pr:fin>A</pr:fin>`+
		`<pr:fin>B</pr:fin></pr:getPerson>`), false},
	{"empty element", envelope(CodeGetPerson, `<pr:getPerson><pr:fin/></pr:getPerson>`),
		false},
	{"nested field", envelope(CodeGetPerson, `<pr:getPerson><pr:fin><pr:fin>A</pr:fin>`+
		`</pr:fin></pr:getPerson>`), false},
	{"unknown field", envelope(CodeGetPerson, `<pr:getPerson><pr:x>A</pr:x>`+
		`</pr:getPerson>`), false},
	{"text between fields", envelope(CodeSearchPersons, `<pr:searchPersons>x`+
		`<pr:surname>A</pr:surname></pr:searchPersons>`), false},
	{"bad maxResults", envelope(CodeSearchPersons, `<pr:searchPersons><pr:maxResults>`+
		`many</pr:maxResults></pr:searchPersons>`), false},
	{"operation in another namespace", envelope(CodeGetPerson,
		`<x:getPerson xmlns:x="urn:other"><x:fin>A</x:fin></x:getPerson>`), false},
	{"serviceCode mismatch", envelope(CodeSearchPersons, `<pr:getPerson><pr:fin>A`+
		`</pr:fin></pr:getPerson>`), false},
	{"no header", `<e:Envelope xmlns:e="` + nsEnvelope + `"><e:Body><pr:getPerson` +
		nsAttr + `><pr:fin>A</pr:fin></pr:getPerson></e:Body></e:Envelope>`, false},
	{"byte order mark", "\ufeff" + envelope(CodeGetPerson, `<pr:getPerson><pr:fin>A`+
		`</pr:fin></pr:getPerson>`), false},
}

// TestDecodeFastAgrees holds decodeFast to decodeSlow: what it takes, it
// reads exactly as decodeSlow does, and it takes the common shapes.
func TestDecodeFastAgrees(t *testing.T) {
	for _, tt := range decodeCases {
		t.Run(tt.name, func(t *testing.T) {
			fast, ok := decodeFast([]byte(tt.raw))
			if ok != tt.fast {
				t.Errorf("decodeFast took it: %v, want %v", ok, tt.fast)
			}
			slow, err := decodeSlow([]byte(tt.raw))
			if err != nil {
				if ok {
					t.Fatalf("decodeFast took what decodeSlow refuses: %v", err)
				}
				return
			}
			if ok && !reflect.DeepEqual(fast, slow) {
				t.Errorf("decodeFast read\n%+v\ndecodeSlow read\n%+v", fast, slow)
			}
		})
	}
}

// FuzzDecode: whatever decodeFast takes, decodeSlow reads the same way.
func FuzzDecode(f *testing.F) {
	for _, tt := range decodeCases {
		f.Add([]byte(tt.raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fast, ok := decodeFast(raw)
		if !ok {
			return
		}
		slow, err := decodeSlow(raw)
		if err != nil {
			t.Fatalf("decodeFast took what decodeSlow refuses (%v): %q", err, raw)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("decodeFast read %+v, decodeSlow %+v: %q", fast, slow, raw)
		}
	})
}

// TestEscape holds escape's shortcut to xml.EscapeText.
func TestEscape(t *testing.T) {
	for _, v := range []string{"", "plain", "Əliyev ş.", "a<b", "a>b", "a&b", `"`, "'",
		"tab\there", "line\nbreak", "cr\r", "nul\x00", "\x1f", "bad \xff utf-8",
		"\ufffd", "\ufffe", "\uffff", "\U0001F600", "\u2028"} {
		var want, got bytes.Buffer
		xml.EscapeText(&want, []byte(v))
		escape(&got, v)
		if got.String() != want.String() {
			t.Errorf("escape(%q) = %q, xml.EscapeText writes %q", v, got.String(),
				want.String())
		}
	}
}

func FuzzEscape(f *testing.F) {
	f.Add("a<b\t\xff\ufffe")
	f.Fuzz(func(t *testing.T, v string) {
		var want, got bytes.Buffer
		xml.EscapeText(&want, []byte(v))
		escape(&got, v)
		if got.String() != want.String() {
			t.Fatalf("escape(%q) = %q, xml.EscapeText writes %q", v, got.String(),
				want.String())
		}
	})
}

func TestLastLess(t *testing.T) {
	for n := range 40 {
		b := bytes.Repeat([]byte("a"), n)
		if got := lastLess(b); got != -1 {
			t.Errorf("lastLess of %d bytes without '<' = %d", n, got)
		}
		for i := range n {
			for _, j := range []int{-1, 0, i / 2} {
				b := bytes.Repeat([]byte("\xbc"), n) // '<' | 0x80
				b[i] = '<'
				if j >= 0 {
					b[j] = '<'
				}
				if got := lastLess(b); got != i {
					t.Errorf("lastLess(%q) = %d, want %d", b, got, i)
				}
			}
		}
	}
}
