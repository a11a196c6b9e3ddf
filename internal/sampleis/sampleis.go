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
//
// A request that is not well-formed XML, holds a DTD or a processing
// instruction, or is not a SOAP 1.1 Envelope and nothing else, is answered
// with a Client fault.
package sampleis

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
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
	persons   []Person
	personXML [][]byte // each person's element, written once
	byFIN     map[string]int
	hits      atomic.Int64
}

// New returns a register over Persons().
func New() *Service {
	s := &Service{persons: Persons(), byFIN: map[string]int{}}
	for i := range s.persons {
		s.byFIN[s.persons[i].FIN] = i
	}
	var err error
	if s.personXML, err = personXML(s.persons); err != nil {
		// The persons are generated here, of strings only: encoding them
		// cannot fail unless the code is wrong.
		panic(err)
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
	// The purpose element, the legal basis the caller states for the
	// search, is not read: the register does not interpret it.
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
	b := getBuffer()
	defer putBuffer(b)
	if r.ContentLength > 0 && r.ContentLength <= maxRequest {
		b.Grow(int(r.ContentLength) + 1) // one more, for ReadFrom to see the end
	}
	_, err := b.ReadFrom(io.LimitReader(r.Body, maxRequest+1))
	if err != nil || b.Len() > maxRequest {
		writeFault(w, nil, "Client", "the request could not be read or is over 64 KiB")
		return
	}
	env, err := decode(b.Bytes())
	if err != nil {
		writeFault(w, nil, "Client", err.Error())
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
		i, ok := s.byFIN[strings.ToUpper(strings.TrimSpace(env.Body.GetPerson.FIN))]
		if !ok {
			writeFault(w, h, "Client.NotFound", "no person with that FIN is registered")
			return
		}
		s.writeResponse(w, h, CodeGetPerson, []int{i})
	case env.Body.SearchPersons != nil:
		q := env.Body.SearchPersons
		limit := q.MaxResults
		if limit <= 0 || limit > MaxResults {
			limit = MaxResults
		}
		year := q.BirthYear + "-"
		found := make([]int, 0, MaxResults)
		for i, p := range s.persons {
			if len(found) == limit {
				break
			}
			if q.Surname != "" && !strings.EqualFold(p.Surname, q.Surname) ||
				q.GivenName != "" && !strings.EqualFold(p.GivenName, q.GivenName) ||
				q.BirthYear != "" && !strings.HasPrefix(p.BirthDate, year) {
				continue
			}
			found = append(found, i)
		}
		s.writeResponse(w, h, CodeSearchPersons, found)
	default:
		writeFault(w, h, "Client.UnknownOperation",
			"the body holds no operation of the population register; "+
				"see the WSDL for getPerson and searchPersons")
	}
}

// buffers holds the buffers of requests and answers, which are about as
// large for every request.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer() *bytes.Buffer { return buffers.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > 4*maxRequest {
		return // let an unusual answer's buffer go
	}
	b.Reset()
	buffers.Put(b)
}

// writeHeader writes the X-Road header block echoing h, as the protocol
// asks an information system to do.
func writeHeader(b *bytes.Buffer, h *header) {
	b.WriteString(`<soapenv:Header>`)
	writeID(b, "client", &h.Client)
	writeID(b, "service", &h.Service)
	element(b, "xrd:id", h.ID)
	element(b, "xrd:userId", h.UserID)
	element(b, "xrd:issue", h.Issue)
	element(b, "xrd:protocolVersion", h.ProtocolVersion)
	b.WriteString(`</soapenv:Header>`)
}

func writeID(b *bytes.Buffer, name string, id *identifier) {
	b.WriteString("<xrd:")
	b.WriteString(name)
	b.WriteString(` id:objectType="`)
	escape(b, id.ObjectType)
	b.WriteString(`">`)
	element(b, "id:xRoadInstance", id.Instance)
	element(b, "id:memberClass", id.MemberClass)
	element(b, "id:memberCode", id.MemberCode)
	element(b, "id:subsystemCode", id.SubsystemCode)
	element(b, "id:serviceCode", id.ServiceCode)
	element(b, "id:serviceVersion", id.Version)
	b.WriteString("</xrd:")
	b.WriteString(name)
	b.WriteString(">")
}

// element writes <tag>v</tag>, escaped, unless v is empty.
func element(b *bytes.Buffer, tag, v string) {
	if v == "" {
		return
	}
	b.WriteByte('<')
	b.WriteString(tag)
	b.WriteByte('>')
	escape(b, v)
	b.WriteString("</")
	b.WriteString(tag)
	b.WriteByte('>')
}

// escape writes v as xml.EscapeText does, copying it whole when that
// would change nothing.
func escape(b *bytes.Buffer, v string) {
	if plain(v) {
		b.WriteString(v)
		return
	}
	xml.EscapeText(b, []byte(v))
}

// plain reports whether xml.EscapeText would leave v as it is: no
// character it escapes, and none it replaces (invalid UTF-8, or outside
// XML's Char production).
func plain(v string) bool {
	for _, r := range v {
		switch {
		case r == '<' || r == '>' || r == '&' || r == '\'' || r == '"':
			return false
		case r < 0x20, r == utf8.RuneError, r >= 0xFFFE && r <= 0xFFFF:
			return false
		}
	}
	return true
}

const envelopeStart = `<?xml version="1.0" encoding="UTF-8"?>` +
	`<soapenv:Envelope xmlns:soapenv="` + nsEnvelope + `" xmlns:xrd="` + nsXRoad +
	`" xmlns:id="` + nsIdentifiers + `" xmlns:pr="` + Namespace + `">`

// personXML returns each person's element as the register answers it:
// elementFormDefault is qualified, so the person element declares the
// register's namespace as default and its children inherit it.
func personXML(persons []Person) ([][]byte, error) {
	out := make([][]byte, len(persons))
	for i := range persons {
		var b bytes.Buffer
		enc := xml.NewEncoder(&b)
		err := enc.EncodeElement(&persons[i], xml.StartElement{
			Name: xml.Name{Space: Namespace, Local: "person"}})
		if err == nil {
			err = enc.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("encode person %s: %w", persons[i].FIN, err)
		}
		out[i] = b.Bytes()
	}
	return out, nil
}

// writeResponse answers with the persons of the given indexes.
func (s *Service) writeResponse(w http.ResponseWriter, h *header, op string, found []int) {
	b := getBuffer()
	defer putBuffer(b)
	b.WriteString(envelopeStart)
	writeHeader(b, h)
	b.WriteString("<soapenv:Body><pr:")
	b.WriteString(op)
	b.WriteString("Response>")
	for _, i := range found {
		b.Write(s.personXML[i])
	}
	b.WriteString("</pr:")
	b.WriteString(op)
	b.WriteString("Response></soapenv:Body></soapenv:Envelope>")
	hd := w.Header()
	hd["Content-Type"] = contentType
	hd["Content-Length"] = []string{strconv.Itoa(b.Len())}
	w.Write(b.Bytes())
}

// contentType is the Content-Type header of every SOAP answer; net/http
// only reads it.
var contentType = []string{"text/xml; charset=utf-8"}

func writeFault(w http.ResponseWriter, h *header, code, msg string) {
	var b bytes.Buffer
	b.WriteString(envelopeStart)
	if h != nil {
		writeHeader(&b, h)
	}
	b.WriteString(`<soapenv:Body><soapenv:Fault><faultcode>`)
	escape(&b, code)
	b.WriteString(`</faultcode><faultstring>`)
	escape(&b, msg)
	b.WriteString(`</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>`)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	w.Write(b.Bytes())
}
