package sampleis_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
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
