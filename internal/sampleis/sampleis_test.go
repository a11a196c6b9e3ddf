package sampleis_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/internal/sampleis"
	"github.com/qapi-az/qapi/internal/testenv"
)

var hdr = sampleis.Header{
	Client: ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2002",
		SubsystemCode: "POLICE"},
	Service: ident.Service{Client: ident.Client{Instance: "AZ", MemberClass: "GOV",
		MemberCode: "1001", SubsystemCode: "EDR"}, ServiceCode: "getPerson"},
	ID: "id-1", UserID: "AZ123",
}

func TestPersonsDeterministic(t *testing.T) {
	a, b := sampleis.Persons(), sampleis.Persons()
	if len(a) != sampleis.PersonCount || !reflect.DeepEqual(a, b) {
		t.Fatalf("Persons is not deterministic or has %d persons", len(a))
	}
	fins := map[string]bool{}
	for _, p := range a {
		if len(p.FIN) != 7 || fins[p.FIN] {
			t.Fatalf("FIN %q is not 7 characters or not unique", p.FIN)
		}
		fins[p.FIN] = true
		wantSuffix := map[string]string{"M": " oğlu", "F": " qızı"}[p.Gender]
		if !strings.HasSuffix(p.Patronymic, wantSuffix) {
			t.Errorf("%s: patronymic %q does not match gender %s", p.FIN, p.Patronymic,
				p.Gender)
		}
	}
}

func post(t *testing.T, url string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "text/xml; charset=utf-8", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestOperations(t *testing.T) {
	is := sampleis.New()
	srv := httptest.NewServer(is)
	defer srv.Close()
	p := is.Persons()[17]

	tests := []struct {
		name       string
		req        []byte
		wantStatus int
		want       []string
	}{
		{"getPerson", sampleis.GetPersonRequest(hdr, p.FIN), 200,
			[]string{p.GivenName, p.Surname, p.BirthDate, "<xrd:id>id-1</xrd:id>",
				"getPersonResponse", "<id:subsystemCode>POLICE</id:subsystemCode>"}},
		{"getPerson lower case", sampleis.GetPersonRequest(hdr, strings.ToLower(p.FIN)),
			200, []string{p.Address}},
		{"unknown FIN", sampleis.GetPersonRequest(hdr, "0000000"), 500,
			[]string{"Client.NotFound", "<xrd:id>id-1</xrd:id>"}},
		{"search by surname", sampleis.SearchPersonsRequest(hdr, sampleis.Search{
			Surname: p.Surname, MaxResults: 3}), 200,
			[]string{"searchPersonsResponse", p.Surname}},
		{"not SOAP", []byte("<a/>"), 500, []string{"not a SOAP 1.1 envelope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, srv.URL, tt.req)
			if status != tt.wantStatus {
				t.Errorf("status %d, want %d: %s", status, tt.wantStatus, body)
			}
			for _, w := range tt.want {
				if !bytes.Contains(body, []byte(w)) {
					t.Errorf("answer lacks %q: %s", w, body)
				}
			}
			if err := xml.Unmarshal(body, new(struct{})); err != nil {
				t.Errorf("answer is not well-formed XML: %v", err)
			}
		})
	}
	_, body := post(t, srv.URL, sampleis.SearchPersonsRequest(hdr, sampleis.Search{
		Surname: p.Surname, MaxResults: 3}))
	if n := bytes.Count(body, []byte("<person ")); n != 3 {
		t.Errorf("search with maxResults 3 returned %d persons", n)
	}
}

func TestWSDLWellFormed(t *testing.T) {
	var d struct {
		XMLName xml.Name
		Service struct {
			Port struct {
				Address struct {
					Location string `xml:"location,attr"`
				} `xml:"address"`
			} `xml:"port"`
		} `xml:"service"`
	}
	if err := xml.Unmarshal(sampleis.WSDL("http://x/?a=1&b=2"), &d); err != nil {
		t.Fatal(err)
	}
	if d.XMLName.Local != "definitions" || d.Service.Port.Address.Location != "http://x/?a=1&b=2" {
		t.Errorf("WSDL root %v, address %q", d.XMLName, d.Service.Port.Address.Location)
	}
}

// TestZeep has Python zeep generate a client from the WSDL and call
// getPerson with the X-Road headers, straight at the register.
func TestZeep(t *testing.T) {
	python := "/usr/bin/python3"
	testenv.NeedFile(t, python)
	if err := exec.Command(python, "-c", "import zeep").Run(); err != nil {
		testenv.Missing(t, "python3-zeep is not installed (make test-deps installs it)")
	}
	is := sampleis.New()
	srv := httptest.NewServer(is)
	defer srv.Close()
	p := is.Persons()[3]
	out, err := exec.Command(python, "testdata/zeep_client.py", srv.URL+"/?wsdl", srv.URL,
		hdr.Client.String(), hdr.Service.String(), p.FIN).Output()
	if err != nil {
		t.Fatalf("zeep: %v\n%s", err, stderr(err))
	}
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("zeep printed %q: %v", out, err)
	}
	if got["fin"] != p.FIN || got["givenName"] != p.GivenName || got["birthDate"] != p.BirthDate {
		t.Errorf("zeep got %v, want %+v", got, p)
	}
}

func stderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// fault is a SOAP 1.1 fault as the register answers it.
type fault struct {
	Code   string `xml:"Body>Fault>faultcode"`
	String string `xml:"Body>Fault>faultstring"`
}

// TestRefusals sends what a strict SOAP 1.1 reader must refuse, to the
// register over HTTP.
func TestRefusals(t *testing.T) {
	is := sampleis.New()
	srv := httptest.NewServer(is)
	defer srv.Close()
	h := hdr
	h.Service.ServiceCode = sampleis.CodeGetPerson
	good := string(sampleis.GetPersonRequest(h, is.Persons()[0].FIN))
	_, start, _ := strings.Cut(good, "?>")
	body := good[strings.Index(good, "<soapenv:Body>"):]

	tests := []struct{ name, req, want string }{
		{"empty", "", "not a SOAP 1.1 envelope"},
		{"not XML", "hello", "not a SOAP 1.1 envelope"},
		{"unclosed", good[:len(good)-5], "not a SOAP 1.1 envelope"},
		{"mismatched tags", strings.Replace(good, "</pr:fin>", "</pr:fim>", 1),
			"not a SOAP 1.1 envelope"},
		{"DTD", `<!DOCTYPE e [<!ENTITY x "y">]>` + start, "DTD"},
		{"undeclared entity", strings.Replace(good, "<pr:fin>", "<pr:fin>&x;", 1),
			"not a SOAP 1.1 envelope"},
		{"SOAP 1.2", strings.ReplaceAll(good, "http://schemas.xmlsoap.org/soap/envelope/",
			"http://www.w3.org/2003/05/soap-envelope"), "not a SOAP 1.1 envelope"},
		{"another root", `<a xmlns:soapenv="urn:x" xmlns:pr="` + sampleis.Namespace + `">` +
			body[:len(body)-len("</soapenv:Envelope>")] + "</a>", "not a SOAP 1.1 envelope"},
		{"element after the Envelope", good + "<x/>", "follows the Envelope"},
		{"text after the Envelope", good + "x", "outside the Envelope"},
		{"text before the Envelope", "x" + start, "outside the Envelope"},
		{"processing instruction", good + "<?pi x?>", "processing instruction"},
		{"processing instruction in the Header", strings.Replace(good, "<xrd:id>",
			"<?pi x?><xrd:id>", 1), "processing instruction"},
		{"end tag after the Envelope", good + "</x>", "not a SOAP 1.1 envelope"},
		{"not UTF-8", strings.Replace(good, is.Persons()[0].FIN, "\xff", 1),
			"not a SOAP 1.1 envelope"},
		{"over 64 KiB", strings.Replace(good, "<pr:fin>",
			"<!--"+strings.Repeat("x", 64<<10)+"--><pr:fin>", 1), "over 64 KiB"},
		{"operation in another namespace", strings.Replace(good, `xmlns:pr="`+
			sampleis.Namespace, `xmlns:pr="urn:other`, 1), "not in the namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, answer := post(t, srv.URL, []byte(tt.req))
			var f fault
			if err := xml.Unmarshal(answer, &f); err != nil {
				t.Fatalf("answer is not well-formed XML: %v: %s", err, answer)
			}
			if status != 500 || !strings.HasPrefix(f.Code, "Client") ||
				!strings.Contains(f.String, tt.want) {
				t.Errorf("status %d, fault %q %q; want 500, Client, %q", status, f.Code,
					f.String, tt.want)
			}
		})
	}
}

// TestHeaderEcho checks that the X-Road headers come back as sent, with
// the characters XML must escape, on both decoding paths: the first
// request is plain, the second one the fast path declines (a reference in
// the body).
func TestHeaderEcho(t *testing.T) {
	is := sampleis.New()
	srv := httptest.NewServer(is)
	defer srv.Close()
	h := hdr
	h.Service.ServiceCode = sampleis.CodeGetPerson
	h.ID = `id <1> & "2" 'ü'`
	h.UserID = "AZ\t123"
	h.Issue = "issue ]]> &amp;"
	fin := is.Persons()[9].FIN
	plain := sampleis.GetPersonRequest(h, fin)
	declined := bytes.Replace(plain, []byte(fin),
		[]byte(fin[:3]+"&#"+fmt.Sprint(int(fin[3]))+";"+fin[4:]), 1)
	for _, req := range [][]byte{plain, declined} {
		status, answer := post(t, srv.URL, req)
		var got struct {
			ID     string `xml:"Header>id"`
			UserID string `xml:"Header>userId"`
			Issue  string `xml:"Header>issue"`
			FIN    string `xml:"Body>getPersonResponse>person>fin"`
		}
		if err := xml.Unmarshal(answer, &got); err != nil {
			t.Fatalf("answer is not well-formed XML: %v: %s", err, answer)
		}
		if status != 200 || got.ID != h.ID || got.UserID != h.UserID ||
			got.Issue != h.Issue || got.FIN != fin {
			t.Errorf("status %d, echoed %+v; want 200 and %q %q %q %s", status, got,
				h.ID, h.UserID, h.Issue, fin)
		}
	}
}
