package server_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"testing"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/soap"
	"github.com/qapi-az/qapi/internal/sampleis"
	"github.com/qapi-az/qapi/internal/testenv"
)

func get(t *testing.T, u string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestListClients(t *testing.T) {
	e := newEnv(t)
	status, body := get(t, e.clientURL()+"listClients")
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	var list struct {
		Members []struct {
			ID struct {
				Type      string `xml:"objectType,attr"`
				Code      string `xml:"memberCode"`
				Subsystem string `xml:"subsystemCode"`
			} `xml:"id"`
			Name string `xml:"name"`
		} `xml:"member"`
	}
	if err := xml.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range list.Members {
		got = append(got, m.ID.Type+" "+m.ID.Code+"/"+m.ID.Subsystem)
	}
	want := []string{"MEMBER 3003/", "SUBSYSTEM 3003/X", "MEMBER 1001/", "SUBSYSTEM 1001/EDR",
		"MEMBER 2002/", "SUBSYSTEM 2002/POLICE"}
	if !slices.Equal(got, want) {
		t.Errorf("listClients = %q, want %q", got, want)
	}
}

func TestListAndAllowedMethods(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		code string
		want []string
	}{
		{"listMethods", []string{"getPerson", "searchPersons"}},
		{"allowedMethods", []string{"getPerson"}},
	} {
		h := soap.Header{Client: client, ID: newID(), ProtocolVersion: soap.ProtocolVersion,
			Service: ident.Service{Client: provider, ServiceCode: tt.code}}
		req := soap.NewRequest(h, []byte("<xrd:"+tt.code+"/>"))
		status, body := call(t, http.DefaultClient, e.clientURL(), req)
		if status != 200 {
			t.Fatalf("%s: status %d: %s", tt.code, status, body)
		}
		var resp struct {
			Codes []string `xml:"Body>Response>service>serviceCode"`
		}
		// Rename the response element so one struct reads both.
		body = bytes.ReplaceAll(body, []byte(tt.code+"Response"), []byte("Response"))
		if err := xml.Unmarshal(body, &resp); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(resp.Codes, tt.want) {
			t.Errorf("%s = %q, want %q", tt.code, resp.Codes, tt.want)
		}
	}
	if e.is.Hits() != 0 {
		t.Errorf("meta-services reached the information system %d times", e.is.Hits())
	}
}

// TestZeepThroughProxies has Python zeep read the register's WSDL from the
// client proxy (fetched from the provider's server with getWsdl) and call
// getPerson through both security servers with the X-Road headers.
func TestZeepThroughProxies(t *testing.T) {
	python := "/usr/bin/python3"
	testenv.NeedFile(t, python)
	if err := exec.Command(python, "-c", "import zeep").Run(); err != nil {
		testenv.Missing(t, "python3-zeep is not installed (make test-deps installs it)")
	}
	e := newEnv(t)
	wsdlURL := e.clientURL() + "wsdl?" + url.Values{"client": {client.String()},
		"service": {getPerson.String()}}.Encode()
	status, wsdl := get(t, wsdlURL)
	if status != 200 || !bytes.Contains(wsdl, []byte(`location="`+e.clientURL()+`"`)) {
		t.Fatalf("GET %s: status %d, endpoint not rewritten to the client proxy:\n%s",
			wsdlURL, status, wsdl)
	}
	if bytes.Contains(wsdl, []byte(e.isURL)) {
		t.Error("the WSDL reveals the provider's information system address")
	}

	p := e.is.Persons()[7]
	e.is.ResetHits()
	cmd := exec.Command(python, "../../internal/sampleis/testdata/zeep_client.py", wsdlURL,
		e.clientURL(), client.String(), getPerson.String(), p.FIN)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("zeep: %v\n%s", err, stderr)
	}
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("zeep printed %q: %v", out, err)
	}
	if got["fin"] != p.FIN || got["surname"] != p.Surname {
		t.Errorf("zeep got %v, want %+v", got, p)
	}
	// Once for the WSDL that zeep read, once for getPerson.
	if e.is.Hits() != 2 {
		t.Errorf("register hit %d times, want 2", e.is.Hits())
	}
}

// TestPinnedInformationSystem sends as a client pinned to an information
// system's TLS certificate, over the client proxy's HTTPS listener.
func TestPinnedInformationSystem(t *testing.T) {
	e := newEnv(t)
	h := header(getPerson, newID())
	// The member itself has no access right to getPerson: its request,
	// let through by the client proxy, is refused by the provider.
	h.Client = clientMember
	req := sampleis.GetPersonRequest(h, e.is.Persons()[0].FIN)
	status, body := call(t, tlsClient(e.isTLS), e.clientHTTPSURL, req)
	if status != http.StatusInternalServerError || faultCode(t, body) != soap.CodeAccessDenied {
		t.Fatalf("status %d, body %s", status, body)
	}
	// The pinned certificate got past the client proxy: the refusal is the
	// provider's, for want of an access right, not the client proxy's.
	if !bytes.Contains(body, []byte("no access right")) {
		t.Errorf("refused before reaching the provider: %s", body)
	}
	h.Client = client
	status, body = call(t, tlsClient(e.isTLS), e.clientHTTPSURL,
		sampleis.GetPersonRequest(h, e.is.Persons()[0].FIN))
	if faultCode(t, body) != soap.CodeAccessDenied || status != 500 {
		t.Errorf("a certificate pinned to %s was accepted for %s: %s", clientMember, client,
			body)
	}
}

func TestListClientsJSON(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest(http.MethodGet, e.clientURL()+"listClients", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Member []struct {
			ID struct {
				ObjectType string `json:"object_type"`
				MemberCode string `json:"member_code"`
				Subsystem  string `json:"subsystem_code"`
			} `json:"id"`
			SubsystemName string `json:"subsystem_name"`
		} `json:"member"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list.Member) != 6 || list.Member[3].ID.Subsystem != "EDR" ||
		list.Member[3].ID.ObjectType != "SUBSYSTEM" ||
		list.Member[3].SubsystemName != "Əhali reyestri" {
		t.Errorf("listClients JSON = %+v", list)
	}
}

// TestGetWsdlAttachment calls getWsdl as SOAP, the X-Road way, and reads
// the WSDL from the second part of the multipart/related answer.
func TestGetWsdlAttachment(t *testing.T) {
	e := newEnv(t)
	h := soap.Header{Client: client, ID: newID(), ProtocolVersion: soap.ProtocolVersion,
		Service: ident.Service{Client: provider, ServiceCode: "getWsdl"}}
	req := soap.NewRequest(h, []byte("<xrd:getWsdl><xrd:serviceCode>getPerson"+
		"</xrd:serviceCode></xrd:getWsdl>"))
	resp, err := http.Post(e.clientURL(), "text/xml", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("Content-Type %q: %s", resp.Header.Get("Content-Type"), b)
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	var parts [][]byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		parts = append(parts, b)
	}
	if len(parts) != 2 || !bytes.Contains(parts[0], []byte("getWsdlResponse")) ||
		!bytes.Contains(parts[1], []byte(`location="http://example.org/xroad-endpoint"`)) ||
		!bytes.Contains(parts[1], []byte("populationRegisterBinding")) {
		t.Errorf("answer has %d parts; want the SOAP response and the WSDL with its "+
			"endpoint hidden", len(parts))
	}
}

// TestGetWsdlNeedsAccessRight asks getWsdl for services the client has no
// right to call: one with its own WSDL (searchPersons is configured
// without one, so the provider's catch-all entry, which has a WSDL, is
// named by an unlisted code) must be refused as the service itself is,
// and the information system must not be asked for it.
func TestGetWsdlNeedsAccessRight(t *testing.T) {
	e := newEnv(t)
	for _, code := range []string{"unlistedService", sampleis.CodeSearchPersons} {
		h := soap.Header{Client: client, ID: newID(), ProtocolVersion: soap.ProtocolVersion,
			Service: ident.Service{Client: provider, ServiceCode: "getWsdl"}}
		req := soap.NewRequest(h, []byte("<xrd:getWsdl><xrd:serviceCode>"+code+
			"</xrd:serviceCode></xrd:getWsdl>"))
		status, body := call(t, http.DefaultClient, e.clientURL(), req)
		if status != http.StatusInternalServerError ||
			faultCode(t, body) != soap.CodeAccessDenied {
			t.Errorf("getWsdl of %s without an access right: status %d, %s; want %s",
				code, status, body, soap.CodeAccessDenied)
		}
	}
	if e.is.Hits() != 0 {
		t.Errorf("the information system was asked %d times for a WSDL", e.is.Hits())
	}
}
