package soap

import (
	"fmt"
	"strings"
	"testing"
)

// Pieces of the envelope NewRequest writes for testHeader, which the cases
// below edit.
const (
	xClient = `<xrd:client id:objectType="SUBSYSTEM">
<id:xRoadInstance>AZ</id:xRoadInstance>
<id:memberClass>GOV</id:memberClass>
<id:memberCode>1400057421</id:memberCode>
<id:subsystemCode>emas</id:subsystemCode>
</xrd:client>
`
	xSvcOpen    = `<xrd:service id:objectType="SERVICE">`
	xSvcCode    = "<id:serviceCode>getPersonByPin</id:serviceCode>\n"
	xID         = "<xrd:id>0f6a8f4e-3b7c-4a59-9f2d-8c1e5b7a2d10</xrd:id>\n"
	xUser       = "<xrd:userId>AZ5ZHK3PL</xrd:userId>\n"
	xIssue      = "<xrd:issue>ERI-2026/4471</xrd:issue>\n"
	xPV         = "<xrd:protocolVersion>4.0</xrd:protocolVersion>\n"
	xHdrEnd     = "</SOAP-ENV:Header>"
	xHdrOpen    = "<SOAP-ENV:Header>"
	xBodyOpen   = "<SOAP-ENV:Body>"
	xBodyEnd    = "</SOAP-ENV:Body>"
	xEnvEnd     = "</SOAP-ENV:Envelope>"
	xDecl       = `<?xml version="1.0" encoding="UTF-8"?>`
	xPin        = "<pin>5ZHK3PL</pin>"
	xMemberCode = "<id:memberCode>1400057421</id:memberCode>"
	xSubsystem  = "<id:subsystemCode>emas</id:subsystemCode>\n"
	xRootOpen   = `<SOAP-ENV:Envelope xmlns:SOAP-ENV="` + NSEnvelope + `"`
	xRHash      = `<xrd:requestHash algorithmId="` + AlgSHA256 + `">AAAA</xrd:requestHash>`
)

// refusal is a request made by editing the template: each pair of edits
// replaces the first occurrence of one string with another.
type refusal struct {
	name  string
	edits []string
	lim   Limits
	want  string
}

// apply returns the edited template, failing t when an edit does not
// apply, so that no case passes by testing the template unchanged.
func (r refusal) apply(t *testing.T, tmpl string) []byte {
	t.Helper()
	s := tmpl
	for i := 0; i+1 < len(r.edits); i += 2 {
		if !strings.Contains(s, r.edits[i]) {
			t.Fatalf("edit %q does not apply", r.edits[i])
		}
		s = strings.Replace(s, r.edits[i], r.edits[i+1], 1)
	}
	return []byte(s)
}

func manyAttrs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, ` a%d="%d"`, i, i)
	}
	return b.String()
}

func deep(n int) string {
	return strings.Repeat("<d>", n) + strings.Repeat("</d>", n)
}

// TestParseRequestRefuses has one case per refusal, each asserting the
// exact fault code.
func TestParseRequestRefuses(t *testing.T) {
	big := strings.Repeat("x", 10<<10)
	cases := []refusal{
		// Clause 5.2: a request is at most 10 KB.
		{"over 10 KB", []string{xPin, "<pin>" + big + "</pin>"}, Limits{}, CodeSizeExceeded},
		{"over a set limit", nil, Limits{MaxBytes: 512}, CodeSizeExceeded},

		{"invalid UTF-8 in the body", []string{"5ZHK3PL", "5ZH\xc3\x28"}, Limits{},
			CodeInvalidUTF8},
		{"overlong UTF-8", []string{"5ZHK3PL", "\xc0\xaf"}, Limits{}, CodeInvalidUTF8},

		{"DOCTYPE", []string{xDecl, xDecl + "<!DOCTYPE x>"}, Limits{}, CodeDTDForbidden},
		{"internal subset with an entity", []string{xDecl, xDecl +
			`<!DOCTYPE e [<!ENTITY a "aaaa">]>`}, Limits{}, CodeDTDForbidden},
		{"external entity", []string{xDecl, xDecl +
			`<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>`, "5ZHK3PL", "&x;"},
			Limits{}, CodeDTDForbidden},
		{"undeclared entity in text", []string{"5ZHK3PL", "&lol;"}, Limits{},
			CodeDTDForbidden},
		{"undeclared entity in an attribute", []string{"<pin>", `<pin a="&lol;">`},
			Limits{}, CodeDTDForbidden},
		{"declaration inside the body", []string{xPin, `<!ENTITY a "b">`}, Limits{},
			CodeDTDForbidden},

		{"nesting past 64", []string{xPin, deep(64)}, Limits{}, CodeTooDeep},
		{"nesting past a set depth", nil, Limits{MaxDepth: 3}, CodeTooDeep},

		{"not XML", []string{xDecl, "hello"}, Limits{}, CodeMalformed},
		{"root is not an Envelope", []string{"SOAP-ENV:Envelope ", "SOAP-ENV:Envelopex ",
			xEnvEnd, "</SOAP-ENV:Envelopex>"}, Limits{}, CodeMalformed},
		{"SOAP 1.2 envelope", []string{NSEnvelope, nsSOAP12}, Limits{}, CodeMalformed},
		{"no Header", []string{xHdrOpen, "", xHdrEnd, "",
			xClient, "", xID, "", xUser, "", xIssue, "", xPV, ""}, Limits{}, CodeMalformed},
		{"no Body", []string{xBodyOpen, "", xBodyEnd, ""}, Limits{}, CodeMalformed},
		{"Body before Header", []string{xHdrOpen, xBodyOpen + "<getPersonByPin/>" +
			xBodyEnd + xHdrOpen}, Limits{}, CodeMalformed},
		{"empty Body", []string{xBodyOpen, xBodyOpen + "<!--x--> " + xBodyEnd + "<x>"},
			Limits{}, CodeMalformed},
		{"two Body elements", []string{xBodyEnd, "<getPersonByPin/>" + xBodyEnd},
			Limits{}, CodeMalformed},
		{"text in the Body", []string{xBodyEnd, "tail" + xBodyEnd}, Limits{}, CodeMalformed},
		{"element after the Body", []string{xBodyEnd, xBodyEnd + "<x/>"}, Limits{},
			CodeMalformed},
		{"second Body", []string{xBodyEnd, xBodyEnd + xBodyOpen + "<a/>" + xBodyEnd},
			Limits{}, CodeMalformed},
		{"text after the Body", []string{xBodyEnd, xBodyEnd + "tail"}, Limits{},
			CodeMalformed},
		{"element after the Envelope", []string{xEnvEnd, xEnvEnd + "<x/>"}, Limits{},
			CodeMalformed},
		{"text after the Envelope", []string{xEnvEnd, xEnvEnd + "x"}, Limits{},
			CodeMalformed},
		{"text before the Envelope", []string{xDecl, xDecl + "x"}, Limits{}, CodeMalformed},
		{"text in the Header", []string{xHdrEnd, "x" + xHdrEnd}, Limits{}, CodeMalformed},
		{"text in the Envelope", []string{xBodyOpen, "x" + xBodyOpen}, Limits{},
			CodeMalformed},
		{"processing instruction", []string{xBodyOpen, xBodyOpen + "<?php x?>"}, Limits{},
			CodeMalformed},
		{"XML declaration not first", []string{xDecl, "\n" + xDecl}, Limits{},
			CodeMalformed},
		{"XML declaration in capitals", []string{"<?xml ", "<?XML "}, Limits{},
			CodeMalformed},
		{"encoding other than UTF-8", []string{"UTF-8", "ISO-8859-1"}, Limits{},
			CodeMalformed},
		{"undeclared prefix", []string{xPin, "<q:pin/>"}, Limits{}, CodeMalformed},
		{"undeclared attribute prefix", []string{xPin, `<pin q:a="1"/>`}, Limits{},
			CodeMalformed},
		{"duplicate attribute", []string{xPin, `<pin a="1" a="2"/>`}, Limits{},
			CodeMalformed},
		{"duplicate attribute by namespace", []string{xPin,
			`<pin xmlns:a="urn:x" xmlns:b="urn:x" a:c="1" b:c="2"/>`}, Limits{},
			CodeMalformed},
		{"duplicate among many attributes", []string{xPin, "<pin" + manyAttrs(40) +
			` a7="x"/>`}, Limits{}, CodeMalformed},
		{"prefix declared twice", []string{xPin, `<pin xmlns:a="urn:x" xmlns:a="urn:y"/>`},
			Limits{}, CodeMalformed},
		{"empty prefixed namespace", []string{xPin, `<pin xmlns:a=""/>`}, Limits{},
			CodeMalformed},
		{"mismatched end tag", []string{"</pin>", "</nip>"}, Limits{}, CodeMalformed},
		{"unclosed element", []string{xEnvEnd, ""}, Limits{}, CodeMalformed},
		{"stray end tag", []string{xEnvEnd, xEnvEnd + "</x>"}, Limits{}, CodeMalformed},
		{"bad character reference", []string{"5ZHK3PL", "&#xZZ;"}, Limits{},
			CodeMalformed},
		{"character NUL", []string{"5ZHK3PL", "\x00"}, Limits{}, CodeMalformed},
		{"envelope element in the Header", []string{xHdrEnd,
			"<SOAP-ENV:Body/>" + xHdrEnd}, Limits{}, CodeMalformed},

		{"no client", []string{xClient, ""}, Limits{}, CodeMissingHeader},
		{"no service", []string{xSvcOpen, "<!--", "</xrd:service>", "-->"}, Limits{},
			CodeMissingHeader},
		{"no id", []string{xID, ""}, Limits{}, CodeMissingHeader},
		{"no protocolVersion", []string{xPV, ""}, Limits{}, CodeMissingHeader},

		{"client twice", []string{xClient, xClient + xClient}, Limits{},
			CodeDuplicateHeader},
		{"id twice", []string{xID, xID + xID}, Limits{}, CodeDuplicateHeader},
		{"userId twice", []string{xUser, xUser + xUser}, Limits{}, CodeDuplicateHeader},
		{"issue twice", []string{xIssue, xIssue + xIssue}, Limits{}, CodeDuplicateHeader},
		{"protocolVersion twice", []string{xPV, xPV + xPV}, Limits{},
			CodeDuplicateHeader},

		{"client without objectType", []string{`client id:objectType="SUBSYSTEM"`,
			"client"}, Limits{}, CodeBadHeader},
		{"objectType without namespace", []string{`client id:objectType`,
			"client objectType"}, Limits{}, CodeBadHeader},
		{"client of objectType SERVICE", []string{`"SUBSYSTEM"`, `"SERVICE"`}, Limits{},
			CodeBadHeader},
		{"service of objectType MEMBER", []string{`id:objectType="SERVICE"`,
			`id:objectType="MEMBER"`}, Limits{}, CodeBadHeader},
		{"MEMBER with a subsystem", []string{`"SUBSYSTEM"`, `"MEMBER"`}, Limits{},
			CodeBadHeader},
		{"SUBSYSTEM without a subsystem", []string{xSubsystem, ""}, Limits{},
			CodeBadHeader},
		{"empty subsystemCode", []string{xSubsystem,
			"<id:subsystemCode></id:subsystemCode>"}, Limits{}, CodeBadHeader},
		{"identifier part in the wrong namespace", []string{xMemberCode,
			"<xrd:memberCode>1</xrd:memberCode>"}, Limits{}, CodeBadHeader},
		{"identifier parts out of order", []string{xMemberCode + "\n" + xSubsystem,
			xSubsystem + xMemberCode}, Limits{}, CodeBadHeader},
		{"identifier part repeated", []string{xMemberCode, xMemberCode + xMemberCode},
			Limits{}, CodeBadHeader},
		{"unknown identifier part", []string{xMemberCode, xMemberCode +
			"<id:groupCode>g</id:groupCode>"}, Limits{}, CodeBadHeader},
		{"serviceCode in the client", []string{"</xrd:client>",
			"<id:serviceCode>s</id:serviceCode></xrd:client>"}, Limits{}, CodeBadHeader},
		{"empty memberCode", []string{"1400057421", ""}, Limits{}, CodeBadHeader},
		{"no memberCode", []string{xMemberCode, ""}, Limits{}, CodeBadHeader},
		{"no serviceCode", []string{xSvcCode, ""}, Limits{}, CodeBadHeader},
		{"white space around memberCode", []string{"1400057421", " 1400057421"},
			Limits{}, CodeBadHeader},
		{"slash in memberCode", []string{"1400057421", "1400/057421"}, Limits{},
			CodeBadHeader},
		{"element inside id", []string{"</xrd:id>", "<b/></xrd:id>"}, Limits{},
			CodeBadHeader},
		{"element inside memberCode", []string{"1400057421", "<b/>"}, Limits{},
			CodeBadHeader},
		{"empty id", []string{xID, "<xrd:id> </xrd:id>"}, Limits{}, CodeBadHeader},
		{"id over 255 bytes", []string{"0f6a8f4e", strings.Repeat("a", 256)}, Limits{},
			CodeBadHeader},
		{"control character in userId", []string{"AZ5ZHK3PL", "AZ5&#9;ZHK3PL"}, Limits{},
			CodeBadHeader},
		{"requestHash in a request", []string{xHdrEnd, xRHash + xHdrEnd}, Limits{},
			CodeBadHeader},
		{"centralService", []string{xHdrEnd, "<xrd:centralService/>" + xHdrEnd}, Limits{},
			CodeBadHeader},
		{"unknown X-Road header", []string{xHdrEnd, "<xrd:colour>red</xrd:colour>" +
			xHdrEnd}, Limits{}, CodeBadHeader},
		{"identifier part outside an identifier", []string{xHdrEnd,
			"<id:memberCode>1</id:memberCode>" + xHdrEnd}, Limits{}, CodeBadHeader},

		{"protocolVersion 3.1", []string{">4.0<", ">3.1<"}, Limits{}, CodeProtocolVersion},
		{"protocolVersion 4.1", []string{">4.0<", ">4.1<"}, Limits{}, CodeProtocolVersion},
		{"protocolVersion with spaces", []string{">4.0<", "> 4.0 <"}, Limits{},
			CodeProtocolVersion},

		{"body element is not the serviceCode", []string{xBodyOpen + "<p:getPersonByPin",
			xBodyOpen + "<p:getPersonByPan", "</p:getPersonByPin>", "</p:getPersonByPan>"},
			Limits{}, CodeServiceMismatch},
		{"request named as a response", []string{xBodyOpen + "<p:getPersonByPin",
			xBodyOpen + "<p:getPersonByPinResponse", "</p:getPersonByPin>",
			"</p:getPersonByPinResponse>"}, Limits{}, CodeServiceMismatch},
		{"fault in a request", []string{xBodyOpen + "<p:getPersonByPin",
			xBodyOpen + "<SOAP-ENV:Fault", "</p:getPersonByPin>", "</SOAP-ENV:Fault>"},
			Limits{}, CodeServiceMismatch},
	}

	tmpl := string(NewRequest(testHeader(), []byte(testBody)))
	if _, err := ParseRequest([]byte(tmpl), DefaultLimits()); err != nil {
		t.Fatalf("the template itself is refused: %v", err)
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.apply(t, tmpl)
			m, err := ParseRequest(raw, tc.lim)
			f := AsFault(err)
			if f == nil {
				t.Fatalf("ParseRequest = %+v, %v; want a %s fault\n%s", m, err, tc.want, raw)
			}
			if m != nil {
				t.Errorf("ParseRequest returned a message with its fault")
			}
			if f.Code != tc.want {
				t.Errorf("code %s (%s), want %s", f.Code, f.String, tc.want)
			}
			if !strings.Contains(f.String, ";") {
				t.Errorf("fault text %q does not say what to do", f.String)
			}
			seen[f.Code] = true
			t.Logf("%s: %s", f.Code, f.String)
		})
	}
	for _, c := range []string{CodeSizeExceeded, CodeInvalidUTF8, CodeDTDForbidden,
		CodeTooDeep, CodeMalformed, CodeMissingHeader, CodeDuplicateHeader,
		CodeBadHeader, CodeProtocolVersion, CodeServiceMismatch} {
		if !seen[c] {
			t.Errorf("no case raised %s", c)
		}
	}
}

// TestParseRequestAccepts shows where the parser is lenient on purpose.
func TestParseRequestAccepts(t *testing.T) {
	cases := []refusal{
		{"predefined and character references", []string{"5ZHK3PL",
			"&amp;&lt;&gt;&apos;&quot;&#65;&#x42;"}, Limits{}, ""},
		{"CDATA and comments", []string{xPin, "<![CDATA[<&>]]><!-- & -->"}, Limits{}, ""},
		{"no userId and issue", []string{xUser, "", xIssue, ""}, Limits{}, ""},
		{"headers in another order", []string{xPV, "", xClient, xPV + xClient}, Limits{},
			""},
		{"foreign header", []string{xHdrEnd, `<w:Security xmlns:w="urn:wsse" ` +
			`SOAP-ENV:mustUnderstand="1"><w:T>x</w:T></w:Security>` + xHdrEnd}, Limits{}, ""},
		{"securityServer extension", []string{xHdrEnd, `<xrd:securityServer ` +
			`id:objectType="SERVER"><id:xRoadInstance>AZ</id:xRoadInstance>` +
			`</xrd:securityServer>` + xHdrEnd}, Limits{}, ""},
		{"nesting of exactly 64", []string{xPin, deep(64 - 4)}, Limits{}, ""},
		{"exactly 10 KB", nil, Limits{}, ""},
		{"default namespace envelope", []string{xRootOpen, `<SOAP-ENV:Envelope ` +
			`xmlns="` + NSEnvelope + `" xmlns:SOAP-ENV="` + NSEnvelope + `"`,
			xBodyOpen, "<Body>", xBodyEnd, "</Body>"}, Limits{}, ""},
		{"many attributes", []string{xPin, "<pin" + manyAttrs(40) + "/>"}, Limits{}, ""},
		{"prefixes rebound in a foreign header", []string{xClient, `<f:h xmlns:f="urn:f" ` +
			`xmlns:xrd="urn:other" xmlns:id="urn:other"><xrd:client/><xrd:id/></f:h>` +
			xClient}, Limits{}, ""},
		{"empty optional headers", []string{xUser, "<xrd:userId/>"}, Limits{}, ""},
	}
	tmpl := string(NewRequest(testHeader(), []byte(testBody)))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.apply(t, tmpl)
			if tc.name == "exactly 10 KB" {
				pad := 10<<10 - len(raw)
				raw = []byte(strings.Replace(string(raw), xPin,
					"<pin>"+strings.Repeat("x", pad+len(xPin)-len("<pin></pin>"))+"</pin>",
					1))
				if len(raw) != 10<<10 {
					t.Fatalf("padded to %d bytes", len(raw))
				}
			}
			if _, err := ParseRequest(raw, tc.lim); err != nil {
				t.Errorf("ParseRequest: %v\n%s", err, raw)
			}
		})
	}
}

func TestParseResponseRefuses(t *testing.T) {
	h := testHeader()
	tmpl := string(NewResponse(h, []byte(testRespBody)))
	for _, tc := range []refusal{
		{"body named after another service", []string{"getPersonByPinResponse",
			"getCarByPlateResponse", "getPersonByPinResponse", "getCarByPlateResponse"},
			Limits{}, CodeServiceMismatch},
		{"requestHash without algorithmId", []string{xHdrEnd,
			"<xrd:requestHash>AAAA</xrd:requestHash>" + xHdrEnd}, Limits{}, CodeBadHeader},
		{"requestHash not Base64", []string{xHdrEnd, `<xrd:requestHash algorithmId="a">` +
			`@@</xrd:requestHash>` + xHdrEnd}, Limits{}, CodeBadHeader},
		{"requestHash twice", []string{xHdrEnd, xRHash + xRHash + xHdrEnd}, Limits{},
			CodeDuplicateHeader},
		{"no id", []string{xID, ""}, Limits{}, CodeMissingHeader},
		{"fault without faultstring", []string{"<p:getPersonByPinResponse",
			"<SOAP-ENV:Fault><faultcode>x</faultcode></SOAP-ENV:Fault><!--",
			"</p:getPersonByPinResponse>", "-->"}, Limits{}, CodeMalformed},
		{"fault with an unknown child", []string{"<p:getPersonByPinResponse",
			"<SOAP-ENV:Fault><faultcode>x</faultcode><faultstring/><why/></SOAP-ENV:Fault>" +
				"<!--", "</p:getPersonByPinResponse>", "-->"}, Limits{}, CodeMalformed},
		{"fault with a malformed header", []string{"<p:getPersonByPinResponse",
			"<SOAP-ENV:Fault><faultcode>x</faultcode><faultstring/></SOAP-ENV:Fault><!--",
			"</p:getPersonByPinResponse>", "-->", ">4.0<", ">5.0<"}, Limits{},
			CodeProtocolVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.apply(t, tmpl)
			_, err := ParseResponse(raw, tc.lim)
			if f := AsFault(err); f == nil || f.Code != tc.want {
				t.Errorf("ParseResponse = %v, want a %s fault\n%s", err, tc.want, raw)
			}
		})
	}
}
