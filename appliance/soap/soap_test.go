package soap

import (
	"bytes"
	"crypto/sha256"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/qapi-az/qapi/appliance/ident"
)

// testHeader returns the headers of a complete request.
func testHeader() Header {
	return Header{
		Client: ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1400057421",
			SubsystemCode: "emas"},
		Service: ident.Service{
			Client: ident.Client{Instance: "AZ", MemberClass: "GOV",
				MemberCode: "1700038881", SubsystemCode: "registry"},
			ServiceCode: "getPersonByPin",
			Version:     "v2",
		},
		ID:              "0f6a8f4e-3b7c-4a59-9f2d-8c1e5b7a2d10",
		UserID:          "AZ5ZHK3PL",
		Issue:           "ERI-2026/4471",
		ProtocolVersion: ProtocolVersion,
	}
}

const testBody = `<p:getPersonByPin xmlns:p="http://asan.gov.az/producer">` +
	`<pin>5ZHK3PL</pin></p:getPersonByPin>`

const testRespBody = `<p:getPersonByPinResponse xmlns:p="http://asan.gov.az/producer">` +
	`<name>Əliyev</name></p:getPersonByPinResponse>`

// TestParseXRoadSample parses a request written as an X-Road 4.0 client
// writes one, to show that such clients work unchanged.
func TestParseXRoadSample(t *testing.T) {
	raw, err := os.ReadFile("testdata/xroad-request.xml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseRequest(raw, DefaultLimits())
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	if want := testHeader(); !reflect.DeepEqual(m.Header, want) {
		t.Errorf("header\n got %+v\nwant %+v", m.Header, want)
	}
	if m.Body.Space != "http://asan.gov.az/producer" || m.Body.Local != "getPersonByPin" {
		t.Errorf("Body = %v, want {http://asan.gov.az/producer getPersonByPin}", m.Body)
	}
	if !bytes.Equal(m.Raw, raw) {
		t.Error("Raw is not the bytes parsed")
	}
	if m.Fault != nil {
		t.Errorf("Fault = %v, want nil", m.Fault)
	}

	// The same message with a byte order mark, as X-Road allows (2.6).
	withBOM := append([]byte{0xef, 0xbb, 0xbf}, raw...)
	if _, err := ParseRequest(withBOM, DefaultLimits()); err != nil {
		t.Errorf("with a byte order mark: %v", err)
	}
}

func TestRoundTripRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Header)
	}{
		{"complete", func(*Header) {}},
		{"member client, no optional headers", func(h *Header) {
			h.Client.SubsystemCode = ""
			h.UserID, h.Issue = "", ""
		}},
		{"service of a member, no version", func(h *Header) {
			h.Service.SubsystemCode = ""
			h.Service.Version = ""
		}},
		{"escaped values", func(h *Header) {
			h.Client.MemberCode = `<&">'`
			h.UserID = "Ə & ə"
			h.Issue = "a]]>b"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testHeader()
			tc.edit(&h)
			raw := NewRequest(h, []byte(testBody))
			m, err := ParseRequest(raw, DefaultLimits())
			if err != nil {
				t.Fatalf("ParseRequest(NewRequest(...)): %v\n%s", err, raw)
			}
			if !reflect.DeepEqual(m.Header, h) {
				t.Errorf("header\n got %+v\nwant %+v", m.Header, h)
			}
			if m.Body.Local != h.Service.ServiceCode {
				t.Errorf("Body = %v", m.Body)
			}
		})
	}
}

func TestNewRequestDefaultsProtocolVersion(t *testing.T) {
	h := testHeader()
	h.ProtocolVersion = ""
	h.RequestHash = &RequestHash{Algorithm: AlgSHA256, Value: []byte{1}}
	m, err := ParseRequest(NewRequest(h, []byte(testBody)), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.ProtocolVersion != ProtocolVersion || m.Header.RequestHash != nil {
		t.Errorf("ProtocolVersion %q, RequestHash %v; want %q and none",
			m.Header.ProtocolVersion, m.Header.RequestHash, ProtocolVersion)
	}
}

func TestRoundTripResponse(t *testing.T) {
	h := testHeader()
	h.RequestHash = &RequestHash{Algorithm: AlgSHA256, Value: bytes.Repeat([]byte{7}, 32)}
	for _, body := range []string{testRespBody, testBody} {
		m, err := ParseResponse(NewResponse(h, []byte(body)), DefaultLimits())
		if err != nil {
			t.Fatalf("ParseResponse: %v", err)
		}
		if !reflect.DeepEqual(m.Header, h) {
			t.Errorf("header\n got %+v\nwant %+v", m.Header, h)
		}
	}
}

func TestFaultEnvelope(t *testing.T) {
	full := testHeader()
	partial := testHeader()
	partial.Service.ServiceCode = "" // the parser would refuse it: left out
	partial.ID = "bad\x01id"
	for _, tc := range []struct {
		name string
		hdr  *Header
		want Header
	}{
		{"no header", nil, Header{}},
		{"echoed header", &full, full},
		{"partial header", &partial, Header{Client: full.Client, UserID: full.UserID,
			Issue: full.Issue, ProtocolVersion: ProtocolVersion}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &Fault{Code: CodeAccessDenied, String: "no right <to> use & that",
				Actor: "http://ss1.example.az/", Detail: "rule 7"}
			raw := f.Envelope(tc.hdr)
			m, err := ParseResponse(raw, DefaultLimits())
			if err != nil {
				t.Fatalf("ParseResponse(Envelope): %v\n%s", err, raw)
			}
			if m.Fault == nil || *m.Fault != *f {
				t.Errorf("Fault = %+v, want %+v", m.Fault, f)
			}
			if !reflect.DeepEqual(m.Header, tc.want) {
				t.Errorf("header\n got %+v\nwant %+v", m.Header, tc.want)
			}
			if _, err := ParseRequest(raw, DefaultLimits()); err == nil {
				t.Error("ParseRequest accepted a fault")
			}
		})
	}
}

// TestParseFaultForms parses faults as other SOAP stacks write them.
func TestParseFaultForms(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      Fault
	}{
		{"X-Road technical fault", `<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">
  <SOAP-ENV:Body>
    <SOAP-ENV:Fault>
      <faultcode>Server.ClientProxy.ServiceFailed</faultcode>
      <faultstring>Service failed</faultstring>
      <faultactor></faultactor>
      <detail>
        <faultDetail xmlns="">8b1c1d7e</faultDetail>
      </detail>
    </SOAP-ENV:Fault>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>`, Fault{Code: "Server.ClientProxy.ServiceFailed",
			String: "Service failed", Detail: "8b1c1d7e"}},
		{"qualified faultcode", `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">` +
			`<s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>x</faultstring>` +
			`</s:Fault></s:Body></s:Envelope>`, Fault{Code: "Client", String: "x"}},
		{"foreign faultcode prefix", `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"` +
			` xmlns:e="urn:e"><s:Body><s:Fault><faultcode>e:Oops</faultcode>` +
			`<faultstring/></s:Fault></s:Body></s:Envelope>`, Fault{Code: "e:Oops"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseResponse([]byte(tc.raw), DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			if m.Fault == nil || *m.Fault != tc.want {
				t.Errorf("Fault = %+v, want %+v", m.Fault, tc.want)
			}
		})
	}
}

func TestHashRequest(t *testing.T) {
	req := NewRequest(testHeader(), []byte(testBody))
	rh := HashRequest(req)
	want := sha256.Sum256(req)
	if rh.Algorithm != "http://www.w3.org/2001/04/xmlenc#sha256" ||
		!bytes.Equal(rh.Value, want[:]) {
		t.Errorf("HashRequest = %+v", rh)
	}
}

func TestWithRequestHash(t *testing.T) {
	req := NewRequest(testHeader(), []byte(testBody))
	resp := NewResponse(testHeader(), []byte(testRespBody))
	const env = `xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"`
	const hdrs = `<x:client xmlns:x="http://x-road.eu/xsd/xroad.xsd" ` +
		`xmlns:i="http://x-road.eu/xsd/identifiers" i:objectType="MEMBER">` +
		`<i:xRoadInstance>AZ</i:xRoadInstance><i:memberClass>GOV</i:memberClass>` +
		`<i:memberCode>1</i:memberCode></x:client>`
	for _, tc := range []struct {
		name string
		resp string
		// keep says which bytes of resp must survive: the part before and
		// the part after the inserted element.
		before, after string
	}{
		{"ordinary header", string(resp), "", ""},
		{"byte order mark", "\xef\xbb\xbf" + string(resp), "", ""},
		{"no header", `<S:Envelope ` + env + `><S:Body><a/></S:Body></S:Envelope>`,
			`<S:Envelope ` + env + `>`, `<S:Body><a/></S:Body></S:Envelope>`},
		{"default-namespace envelope, no header",
			`<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body><a xmlns=""/>` +
				`</Body></Envelope>`, "", ""},
		{"self-closing header", `<S:Envelope ` + env + `> <S:Header a="1"/> <S:Body><a/></S:Body>` +
			`</S:Envelope>`, `<S:Envelope ` + env + `> <S:Header a="1"`,
			` <S:Body><a/></S:Body></S:Envelope>`},
		{"provider's own requestHash is replaced", `<S:Envelope ` + env + `><S:Header>` +
			hdrs + `<r:requestHash xmlns:r="http://x-road.eu/xsd/xroad.xsd" ` +
			`algorithmId="http://www.w3.org/2001/04/xmlenc#sha512">AAAA</r:requestHash>` +
			`<o:other xmlns:o="urn:o"/></S:Header><S:Body><a/></S:Body></S:Envelope>`,
			`<S:Envelope ` + env + `><S:Header>` + hdrs,
			`<o:other xmlns:o="urn:o"/></S:Header><S:Body><a/></S:Body></S:Envelope>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := WithRequestHash([]byte(tc.resp), req)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(out), tc.before) ||
				!strings.HasSuffix(string(out), tc.after) {
				t.Errorf("bytes of the response changed:\n%s", out)
			}
			if strings.Contains(string(out), "AAAA") {
				t.Errorf("the provider's requestHash survived:\n%s", out)
			}
			if tc.name == "ordinary header" || tc.name == "byte order mark" {
				// Everything but the insertion is the response's bytes.
				i := strings.Index(tc.resp, "</SOAP-ENV:Header>")
				el := requestHashElement(HashRequest(req))
				want := tc.resp[:i] + string(el) + tc.resp[i:]
				if string(out) != want {
					t.Errorf("got\n%s\nwant\n%s", out, want)
				}
			}
			rh, err := readRequestHash(out)
			if err != nil {
				t.Fatalf("reading the result back: %v\n%s", err, out)
			}
			if want := HashRequest(req); !reflect.DeepEqual(*rh, want) {
				t.Errorf("requestHash = %+v, want %+v", rh, want)
			}
		})
	}
}

// readRequestHash parses the requestHash of a response, which may lack
// other X-Road headers.
func readRequestHash(resp []byte) (*RequestHash, error) {
	m, err := ParseResponse(resp, Limits{MaxBytes: 1 << 20})
	if err == nil {
		return m.Header.RequestHash, nil
	}
	if f := AsFault(err); f == nil || f.Code != CodeMissingHeader &&
		f.Code != CodeServiceMismatch {
		return nil, err
	}
	// The skeleton responses of the test lack client or service: read the
	// header alone.
	p := &parser{s: newScanner(resp, 64), response: true, m: &Message{}}
	if _, err := p.skipSpace(""); err != nil {
		return nil, err
	}
	t, err := p.skipSpace("")
	if err != nil {
		return nil, err
	}
	if t.name.Local == "Header" {
		if err := p.header(); err != nil {
			return nil, err
		}
	}
	return p.m.Header.RequestHash, nil
}

func TestWithRequestHashParsesAndChecks(t *testing.T) {
	req := NewRequest(testHeader(), []byte(testBody))
	out, err := WithRequestHash(NewResponse(testHeader(), []byte(testRespBody)), req)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseResponse(out, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckRequestHash(m, req); err != nil {
		t.Errorf("CheckRequestHash: %v", err)
	}
	other := append(bytes.Clone(req), ' ')
	if f := AsFault(CheckRequestHash(m, other)); f == nil || f.Code != CodeRequestHash {
		t.Errorf("CheckRequestHash of another request = %v, want %s", f, CodeRequestHash)
	}
	m.Header.RequestHash = nil
	if f := AsFault(CheckRequestHash(m, req)); f == nil || f.Code != CodeRequestHash {
		t.Errorf("CheckRequestHash without a hash = %v, want %s", f, CodeRequestHash)
	}
}

func TestWithRequestHashRefuses(t *testing.T) {
	const env = `xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"`
	const rh = `<r:requestHash xmlns:r="http://x-road.eu/xsd/xroad.xsd" algorithmId="a">` +
		`AA==</r:requestHash>`
	for _, resp := range []string{
		``,
		`<html>502 Bad Gateway</html>`,
		`<S:Envelope ` + env + `><S:Header>` + rh + rh + `</S:Header><S:Body/></S:Envelope>`,
		`<!DOCTYPE x><S:Envelope ` + env + `><S:Header/><S:Body/></S:Envelope>`,
		`<S:Envelope ` + env + `><S:Header><a></S:Header></S:Envelope>`,
		`<S:Envelope ` + env + `/>`,
		`<S:Envelope ` + env + `>  </S:Envelope>`,
		"<S:Envelope " + env + "><S:Header>\xff</S:Header></S:Envelope>",
	} {
		_, err := WithRequestHash([]byte(resp), []byte("req"))
		if f := AsFault(err); f == nil || f.Code != CodeProviderFault {
			t.Errorf("WithRequestHash(%q) = %v, want a %s fault", resp, err, CodeProviderFault)
		}
	}
}
