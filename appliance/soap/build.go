package soap

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"strings"

	"github.com/qapi-az/qapi/appliance/ident"
)

// envelopeStart opens every envelope this package writes; the prefixes
// are those of the X-Road message protocol's own examples.
const envelopeStart = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
	`<SOAP-ENV:Envelope xmlns:SOAP-ENV="` + NSEnvelope + `"` +
	` xmlns:xrd="` + NSXRoad + `" xmlns:id="` + NSIdentifiers + `">` + "\n"

const envelopeEnd = "</SOAP-ENV:Envelope>\n"

// NewRequest returns a SOAP 1.1 request envelope carrying h's client,
// service, id, userId and issue (the last two when not empty) and the
// protocolVersion (4.0 when h's is empty), with body, the inner XML of
// soap:Body, copied unchanged. h.RequestHash is left out. The caller
// provides a valid h and a body that is well-formed XML whose element
// prefixes it declares itself; then ParseRequest accepts the result.
func NewRequest(h Header, body []byte) []byte {
	h.RequestHash = nil
	return build(h, body)
}

// NewResponse is NewRequest for responses: it also writes h.RequestHash
// when it is set. A provider's response passed on is never rebuilt; this
// is for services written in Go and for tests.
func NewResponse(h Header, body []byte) []byte {
	return build(h, body)
}

// Envelope returns the SOAP 1.1 envelope carrying f, echoing hdr (when not
// nil) as X-Road headers do.
//
// The faultcode is f.Code unqualified, as X-Road writes it. Of hdr, only
// the headers that ParseResponse would accept are echoed (protocolVersion
// only when it is 4.0), so that a fault answering a half-valid request
// still parses; with hdr nil the SOAP Header is empty. An empty Code is
// written as Server.Internal. Detail, when set, is written as the text of
// a faultDetail element.
func (f *Fault) Envelope(hdr *Header) []byte {
	var b bytes.Buffer
	b.WriteString(envelopeStart)
	b.WriteString("<SOAP-ENV:Header>\n")
	if hdr != nil {
		writeHeaders(&b, *hdr, true)
	}
	b.WriteString("</SOAP-ENV:Header>\n<SOAP-ENV:Body>\n<SOAP-ENV:Fault>\n")
	code := strings.TrimSpace(f.Code)
	if code == "" {
		code = CodeInternal
	}
	element(&b, "faultcode", code)
	element(&b, "faultstring", f.String)
	if f.Actor != "" {
		element(&b, "faultactor", f.Actor)
	}
	if d := strings.TrimSpace(f.Detail); d != "" {
		b.WriteString("<detail>")
		element(&b, `faultDetail xmlns=""`, d)
		b.WriteString("</detail>\n")
	}
	b.WriteString("</SOAP-ENV:Fault>\n</SOAP-ENV:Body>\n")
	b.WriteString(envelopeEnd)
	return b.Bytes()
}

func build(h Header, body []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(envelopeStart) + 1024 + len(body))
	b.WriteString(envelopeStart)
	b.WriteString("<SOAP-ENV:Header>\n")
	writeHeaders(&b, h, false)
	b.WriteString("</SOAP-ENV:Header>\n<SOAP-ENV:Body>")
	b.Write(body)
	b.WriteString("</SOAP-ENV:Body>\n")
	b.WriteString(envelopeEnd)
	return b.Bytes()
}

// writeHeaders writes the X-Road headers of h. When lenient, a header the
// parser would refuse is left out instead.
func writeHeaders(b *bytes.Buffer, h Header, lenient bool) {
	if !lenient || validClient(h.Client) {
		typ := h.Client.ObjectType()
		b.WriteString(`<xrd:client id:objectType="` + typ + "\">\n")
		writeClient(b, h.Client)
		b.WriteString("</xrd:client>\n")
	}
	if !lenient || (validClient(h.Service.Client) && h.Service.Validate() == nil &&
		trimmed(h.Service.ServiceCode, h.Service.Version)) {
		b.WriteString(`<xrd:service id:objectType="` + ident.TypeService + "\">\n")
		writeClient(b, h.Service.Client)
		element(b, "id:serviceCode", h.Service.ServiceCode)
		if h.Service.Version != "" {
			element(b, "id:serviceVersion", h.Service.Version)
		}
		b.WriteString("</xrd:service>\n")
	}
	if !lenient || validID(h.ID) {
		element(b, "xrd:id", h.ID)
	}
	if h.UserID != "" && (!lenient || !hasControl(h.UserID)) {
		element(b, "xrd:userId", h.UserID)
	}
	if h.Issue != "" && (!lenient || !hasControl(h.Issue)) {
		element(b, "xrd:issue", h.Issue)
	}
	switch pv := h.ProtocolVersion; {
	case !lenient && pv == "":
		element(b, "xrd:protocolVersion", ProtocolVersion)
	case !lenient || pv == ProtocolVersion:
		element(b, "xrd:protocolVersion", pv)
	}
	if rh := h.RequestHash; rh != nil && (!lenient || (rh.Algorithm != "" && len(rh.Value) > 0)) {
		b.WriteString(`<xrd:requestHash algorithmId="`)
		escape(b, rh.Algorithm)
		b.WriteString(`">`)
		b.WriteString(base64.StdEncoding.EncodeToString(rh.Value))
		b.WriteString("</xrd:requestHash>\n")
	}
}

func writeClient(b *bytes.Buffer, c ident.Client) {
	element(b, "id:xRoadInstance", c.Instance)
	element(b, "id:memberClass", c.MemberClass)
	element(b, "id:memberCode", c.MemberCode)
	if c.SubsystemCode != "" {
		element(b, "id:subsystemCode", c.SubsystemCode)
	}
}

// validClient reports whether the parser accepts c as an identifier.
func validClient(c ident.Client) bool {
	return c.Validate() == nil &&
		trimmed(c.Instance, c.MemberClass, c.MemberCode, c.SubsystemCode)
}

func trimmed(vs ...string) bool {
	for _, v := range vs {
		if v != strings.TrimSpace(v) {
			return false
		}
	}
	return true
}

// validID reports whether the parser accepts id as xroad:id.
func validID(id string) bool {
	return strings.TrimSpace(id) != "" && len(id) <= maxIDBytes && !hasControl(id)
}

// element writes <tag>text</tag>; tag may carry attributes after a space.
func element(b *bytes.Buffer, tag, text string) {
	b.WriteString("<" + tag + ">")
	escape(b, text)
	name, _, _ := strings.Cut(tag, " ")
	b.WriteString("</" + name + ">\n")
}

func escape(b *bytes.Buffer, s string) {
	// Writing to a bytes.Buffer cannot fail.
	_ = xml.EscapeText(b, []byte(s))
}
