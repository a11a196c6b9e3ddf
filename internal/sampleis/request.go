package sampleis

import (
	"bytes"
	"encoding/xml"
	"fmt"

	"github.com/qapi-az/qapi/appliance/ident"
)

// Header is the X-Road header block an information system sends.
type Header struct {
	Client  ident.Client
	Service ident.Service
	ID      string
	UserID  string
	Issue   string
}

// Search is a searchPersons query; empty fields match everything.
type Search struct {
	Surname    string
	GivenName  string
	BirthYear  string
	MaxResults int
	Purpose    string
}

// GetPersonRequest returns a getPerson request for fin, as a client
// information system sends it to its security server.
func GetPersonRequest(h Header, fin string) []byte {
	return request(h, CodeGetPerson, []field{{"fin", fin}})
}

// SearchPersonsRequest returns a searchPersons request.
func SearchPersonsRequest(h Header, q Search) []byte {
	f := []field{{"surname", q.Surname}, {"givenName", q.GivenName},
		{"birthYear", q.BirthYear}}
	if q.MaxResults > 0 {
		f = append(f, field{"maxResults", fmt.Sprint(q.MaxResults)})
	}
	f = append(f, field{"purpose", q.Purpose})
	return request(h, CodeSearchPersons, f)
}

type field struct{ name, v string }

func request(h Header, op string, fields []field) []byte {
	var b bytes.Buffer
	b.WriteString(envelopeStart)
	writeHeader(&b, &header{
		Client: identifier{ObjectType: h.Client.ObjectType(), Instance: h.Client.Instance,
			MemberClass: h.Client.MemberClass, MemberCode: h.Client.MemberCode,
			SubsystemCode: h.Client.SubsystemCode},
		Service: identifier{ObjectType: ident.TypeService, Instance: h.Service.Instance,
			MemberClass: h.Service.MemberClass, MemberCode: h.Service.MemberCode,
			SubsystemCode: h.Service.SubsystemCode, ServiceCode: h.Service.ServiceCode,
			Version: h.Service.Version},
		ID: h.ID, UserID: h.UserID, Issue: h.Issue, ProtocolVersion: "4.0",
	})
	fmt.Fprintf(&b, "<soapenv:Body><pr:%s>", op)
	for _, f := range fields {
		if f.v == "" {
			continue
		}
		fmt.Fprintf(&b, "<pr:%s>", f.name)
		xml.EscapeText(&b, []byte(f.v))
		fmt.Fprintf(&b, "</pr:%s>", f.name)
	}
	fmt.Fprintf(&b, "</pr:%s></soapenv:Body></soapenv:Envelope>", op)
	return b.Bytes()
}
