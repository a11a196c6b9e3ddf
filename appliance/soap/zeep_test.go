package soap

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"reflect"
	"testing"

	"github.com/qapi-az/qapi/internal/testenv"
)

// python3 is Debian's, which python3-zeep installs into.
const python3 = "/usr/bin/python3"

// zeep runs testdata/zeep/client.py with args and returns its output.
func zeep(t *testing.T, args ...string) []byte {
	t.Helper()
	testenv.NeedFile(t, python3)
	if err := exec.Command(python3, "-c", "import zeep").Run(); err != nil {
		testenv.Missing(t, "python3-zeep is not installed (make test-deps installs it)")
	}
	args = append([]string{"testdata/zeep/client.py"}, args...)
	var stderr bytes.Buffer
	cmd := exec.Command(python3, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("zeep client: %v\n%s", err, stderr.Bytes())
	}
	return out
}

// TestZeepRequest parses the request python-zeep, a SOAP client nobody
// here wrote, makes from an X-Road style WSDL.
func TestZeepRequest(t *testing.T) {
	raw := zeep(t, "request", "testdata/zeep/registry.wsdl")
	m, err := ParseRequest(raw, DefaultLimits())
	if err != nil {
		t.Fatalf("ParseRequest: %v\n%s", err, raw)
	}
	if want := testHeader(); !reflect.DeepEqual(m.Header, want) {
		t.Errorf("header\n got %+v\nwant %+v", m.Header, want)
	}
	if m.Body.Space != "http://asan.gov.az/producer" || m.Body.Local != "getPersonByPin" {
		t.Errorf("Body = %v", m.Body)
	}
}

// TestZeepReadsOurMessages has python-zeep call a server that answers
// with NewResponse and with Fault.Envelope, as a security server does.
func TestZeepReadsOurMessages(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(req *Message) (int, []byte)
		want   string
	}{
		{"response", func(req *Message) (int, []byte) {
			return http.StatusOK, NewResponse(req.Header, []byte(testRespBody))
		}, "Əliyev"},
		{"fault", func(req *Message) (int, []byte) {
			f := &Fault{Code: CodeAccessDenied, String: "no access right; ask the provider"}
			return http.StatusInternalServerError, f.Envelope(&req.Header)
		}, "fault Client.AccessDenied no access right; ask the provider"},
		{"fault without headers", func(req *Message) (int, []byte) {
			f := &Fault{Code: CodeMalformed, String: "bad <xml> & such"}
			return http.StatusInternalServerError, f.Envelope(nil)
		}, "fault Client.MalformedSOAP bad <xml> & such"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter,
				r *http.Request) {
				var body bytes.Buffer
				if _, err := body.ReadFrom(r.Body); err != nil {
					t.Error(err)
				}
				req, err := ParseRequest(body.Bytes(), DefaultLimits())
				if err != nil {
					t.Errorf("ParseRequest of zeep's call: %v", err)
					w.WriteHeader(http.StatusBadRequest)
					return
				}
				code, out := tc.answer(req)
				w.Header().Set("Content-Type", "text/xml; charset=utf-8")
				w.WriteHeader(code)
				w.Write(out)
			}))
			defer srv.Close()
			out := zeep(t, "call", "testdata/zeep/registry.wsdl", srv.URL)
			if string(out) != tc.want {
				t.Errorf("zeep printed %q, want %q", out, tc.want)
			}
		})
	}
}
