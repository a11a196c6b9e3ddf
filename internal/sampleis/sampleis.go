// Package sampleis is a sample information system: a small population
// register ("Əhalinin Dövlət Reyestri") that answers SOAP 1.1 requests with
// the X-Road message protocol 4.0 headers, over synthetic data.
//
// It stands where an agency's own system would stand behind its security
// server, in tests, the benchmark and the sandbox. Service mounts on any
// HTTP server: POST carries the SOAP operations getPerson and
// searchPersons; GET with a "wsdl" query (or the path /wsdl) returns the
// document/literal WSDL, whose header parts let generated clients (zeep,
// for one) send the X-Road headers.
package sampleis

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
)

// Namespace is the target namespace of the register's operations.
const Namespace = "http://qapi.az/xsd/population-register"

// Service codes the register provides.
const (
	CodeGetPerson     = "getPerson"
	CodeSearchPersons = "searchPersons"
)

// MaxResults caps a searchPersons answer.
const MaxResults = 20

const (
	nsEnvelope    = "http://schemas.xmlsoap.org/soap/envelope/"
	nsXRoad       = "http://x-road.eu/xsd/xroad.xsd"
	nsIdentifiers = "http://x-road.eu/xsd/identifiers"
	maxRequest    = 64 << 10
)

// Service is the register. Safe for concurrent use.
type Service struct {
	persons []Person
	byFIN   map[string]*Person
	hits    atomic.Int64
}

// New returns a register over Persons().
func New() *Service {
	s := &Service{persons: Persons(), byFIN: map[string]*Person{}}
	for i := range s.persons {
		s.byFIN[s.persons[i].FIN] = &s.persons[i]
	}
	return s
}

// Persons returns the register's population (the caller must not modify
// it).
func (s *Service) Persons() []Person { return s.persons }

// Hits returns how many requests of any kind reached the register. Tests
// use it to prove that a refused request never got here.
func (s *Service) Hits() int64 { return s.hits.Load() }

// ResetHits sets the count of Hits back to zero.
func (s *Service) ResetHits() { s.hits.Store(0) }

// ServeHTTP answers SOAP requests (POST) and WSDL requests (GET ?wsdl or
// GET /wsdl).
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	switch {
	case r.Method == http.MethodGet && (r.URL.Query().Has("wsdl") ||
		strings.HasSuffix(r.URL.Path, "/wsdl")):
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		w.Write(WSDL(scheme + "://" + r.Host + "/"))
	case r.Method == http.MethodPost:
		s.serveSOAP(w, r)
	default:
		http.Error(w, "POST a SOAP request, or GET ?wsdl", http.StatusMethodNotAllowed)
	}
}

// identifier is an X-Road client or service identifier as carried in a
// header.
type identifier struct {
	ObjectType    string `xml:"http://x-road.eu/xsd/identifiers objectType,attr"`
	Instance      string `xml:"http://x-road.eu/xsd/identifiers xRoadInstance"`
	MemberClass   string `xml:"http://x-road.eu/xsd/identifiers memberClass"`
	MemberCode    string `xml:"http://x-road.eu/xsd/identifiers memberCode"`
	SubsystemCode string `xml:"http://x-road.eu/xsd/identifiers subsystemCode,omitempty"`
	ServiceCode   string `xml:"http://x-road.eu/xsd/identifiers serviceCode,omitempty"`
	Version       string `xml:"http://x-road.eu/xsd/identifiers serviceVersion,omitempty"`
}

type header struct {
	Client          identifier `xml:"http://x-road.eu/xsd/xroad.xsd client"`
	Service         identifier `xml:"http://x-road.eu/xsd/xroad.xsd service"`
	ID              string     `xml:"http://x-road.eu/xsd/xroad.xsd id"`
	UserID          string     `xml:"http://x-road.eu/xsd/xroad.xsd userId"`
	Issue           string     `xml:"http://x-road.eu/xsd/xroad.xsd issue"`
	ProtocolVersion string     `xml:"http://x-road.eu/xsd/xroad.xsd protocolVersion"`
}

type getPersonRequest struct {
	XMLName xml.Name
	FIN     string `xml:"http://qapi.az/xsd/population-register fin"`
}

type searchPersonsRequest struct {
	XMLName    xml.Name
	Surname    string `xml:"http://qapi.az/xsd/population-register surname"`
	GivenName  string `xml:"http://qapi.az/xsd/population-register givenName"`
	BirthYear  string `xml:"http://qapi.az/xsd/population-register birthYear"`
	MaxResults int    `xml:"http://qapi.az/xsd/population-register maxResults"`
	// Purpose is the legal basis the caller states for the search; the
	// register does not interpret it.
	Purpose string `xml:"http://qapi.az/xsd/population-register purpose"`
}

type requestEnvelope struct {
	XMLName xml.Name    `xml:"http://schemas.xmlsoap.org/soap/envelope/ Envelope"`
	Header  header      `xml:"http://schemas.xmlsoap.org/soap/envelope/ Header"`
	Body    requestBody `xml:"http://schemas.xmlsoap.org/soap/envelope/ Body"`
}

// requestBody holds one of the operations; serveSOAP checks that its
// namespace is the register's.
type requestBody struct {
	GetPerson     *getPersonRequest     `xml:"getPerson"`
	SearchPersons *searchPersonsRequest `xml:"searchPersons"`
}

func (s *Service) serveSOAP(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxRequest+1))
	if err != nil || len(raw) > maxRequest {
		writeFault(w, nil, "Client", "the request could not be read or is over 64 KiB")
		return
	}
	var env requestEnvelope
	if err := xml.Unmarshal(raw, &env); err != nil {
		writeFault(w, nil, "Client", "the request is not a SOAP 1.1 envelope: "+err.Error())
		return
	}
	h := &env.Header
	if g, q := env.Body.GetPerson, env.Body.SearchPersons; g != nil &&
		g.XMLName.Space != Namespace || q != nil && q.XMLName.Space != Namespace {
		writeFault(w, h, "Client.UnknownOperation", "the operation is not in the "+
			"namespace "+Namespace)
		return
	}
	switch {
	case env.Body.GetPerson != nil:
		p := s.byFIN[strings.ToUpper(strings.TrimSpace(env.Body.GetPerson.FIN))]
		if p == nil {
			writeFault(w, h, "Client.NotFound", "no person with that FIN is registered")
			return
		}
		writeResponse(w, h, CodeGetPerson, []Person{*p})
	case env.Body.SearchPersons != nil:
		q := env.Body.SearchPersons
		limit := q.MaxResults
		if limit <= 0 || limit > MaxResults {
			limit = MaxResults
		}
		var found []Person
		for _, p := range s.persons {
			if len(found) == limit {
				break
			}
			if q.Surname != "" && !strings.EqualFold(p.Surname, q.Surname) ||
				q.GivenName != "" && !strings.EqualFold(p.GivenName, q.GivenName) ||
				q.BirthYear != "" && !strings.HasPrefix(p.BirthDate, q.BirthYear+"-") {
				continue
			}
			found = append(found, p)
		}
		writeResponse(w, h, CodeSearchPersons, found)
	default:
		writeFault(w, h, "Client.UnknownOperation",
			"the body holds no operation of the population register; "+
				"see the WSDL for getPerson and searchPersons")
	}
}

// writeHeader writes the X-Road header block echoing h, as the protocol
// asks an information system to do.
func writeHeader(b *bytes.Buffer, h *header) {
	b.WriteString(`<soapenv:Header>`)
	writeID(b, "client", h.Client)
	writeID(b, "service", h.Service)
	for _, f := range []struct{ name, v string }{{"id", h.ID}, {"userId", h.UserID},
		{"issue", h.Issue}, {"protocolVersion", h.ProtocolVersion}} {
		if f.v != "" {
			fmt.Fprintf(b, "<xrd:%s>", f.name)
			xml.EscapeText(b, []byte(f.v))
			fmt.Fprintf(b, "</xrd:%s>", f.name)
		}
	}
	b.WriteString(`</soapenv:Header>`)
}

func writeID(b *bytes.Buffer, name string, id identifier) {
	fmt.Fprintf(b, `<xrd:%s id:objectType="`, name)
	xml.EscapeText(b, []byte(id.ObjectType))
	b.WriteString(`">`)
	for _, f := range []struct{ name, v string }{{"xRoadInstance", id.Instance},
		{"memberClass", id.MemberClass}, {"memberCode", id.MemberCode},
		{"subsystemCode", id.SubsystemCode}, {"serviceCode", id.ServiceCode},
		{"serviceVersion", id.Version}} {
		if f.v != "" {
			fmt.Fprintf(b, "<id:%s>", f.name)
			xml.EscapeText(b, []byte(f.v))
			fmt.Fprintf(b, "</id:%s>", f.name)
		}
	}
	fmt.Fprintf(b, "</xrd:%s>", name)
}

const envelopeStart = `<?xml version="1.0" encoding="UTF-8"?>` +
	`<soapenv:Envelope xmlns:soapenv="` + nsEnvelope + `" xmlns:xrd="` + nsXRoad +
	`" xmlns:id="` + nsIdentifiers + `" xmlns:pr="` + Namespace + `">`

func writeResponse(w http.ResponseWriter, h *header, op string, persons []Person) {
	var b bytes.Buffer
	b.WriteString(envelopeStart)
	writeHeader(&b, h)
	fmt.Fprintf(&b, "<soapenv:Body><pr:%sResponse>", op)
	enc := xml.NewEncoder(&b)
	for i := range persons {
		// elementFormDefault is qualified: the person element declares the
		// register's namespace as default, and its children inherit it.
		err := enc.EncodeElement(&persons[i], xml.StartElement{
			Name: xml.Name{Space: Namespace, Local: "person"}})
		if err != nil {
			writeFault(w, h, "Server", "the register could not encode its answer")
			return
		}
	}
	enc.Flush()
	fmt.Fprintf(&b, "</pr:%sResponse></soapenv:Body></soapenv:Envelope>", op)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.Write(b.Bytes())
}

func writeFault(w http.ResponseWriter, h *header, code, msg string) {
	var b bytes.Buffer
	b.WriteString(envelopeStart)
	if h != nil {
		writeHeader(&b, h)
	}
	b.WriteString(`<soapenv:Body><soapenv:Fault><faultcode>`)
	xml.EscapeText(&b, []byte(code))
	b.WriteString(`</faultcode><faultstring>`)
	xml.EscapeText(&b, []byte(msg))
	b.WriteString(`</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>`)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	w.Write(b.Bytes())
}
