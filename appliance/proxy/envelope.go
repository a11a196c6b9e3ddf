package proxy

import (
	"bytes"
	"encoding/xml"
	"fmt"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/soap"
)

func writeText(b *bytes.Buffer, name, v string) {
	fmt.Fprintf(b, "<%s>", name)
	xml.EscapeText(b, []byte(v))
	fmt.Fprintf(b, "</%s>", name)
}

func writeClient(b *bytes.Buffer, name string, c ident.Client) {
	fmt.Fprintf(b, `<%s id:objectType="%s">`, name, c.ObjectType())
	writeIDParts(b, c)
	fmt.Fprintf(b, "</%s>", name)
}

func writeService(b *bytes.Buffer, name string, s ident.Service) {
	fmt.Fprintf(b, `<%s id:objectType="%s">`, name, ident.TypeService)
	writeIDParts(b, s.Client)
	writeText(b, "id:serviceCode", s.ServiceCode)
	if s.Version != "" {
		writeText(b, "id:serviceVersion", s.Version)
	}
	fmt.Fprintf(b, "</%s>", name)
}

func writeIDParts(b *bytes.Buffer, c ident.Client) {
	writeText(b, "id:xRoadInstance", c.Instance)
	writeText(b, "id:memberClass", c.MemberClass)
	writeText(b, "id:memberCode", c.MemberCode)
	if c.SubsystemCode != "" {
		writeText(b, "id:subsystemCode", c.SubsystemCode)
	}
}

// bodyText returns the text of the first element named (NSXRoad, local) in
// the body of msg, or "" when there is none.
func bodyText(raw []byte, local string) string {
	d := xml.NewDecoder(bytes.NewReader(raw))
	inBody := false
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if se.Name.Space == soap.NSEnvelope && se.Name.Local == "Body" {
			inBody = true
			continue
		}
		if inBody && se.Name.Space == soap.NSXRoad && se.Name.Local == local {
			var s string
			if d.DecodeElement(&s, &se) != nil {
				return ""
			}
			return s
		}
	}
}
