package server_test

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/events"
	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/appliance/sign"
	"github.com/qapi-az/qapi/appliance/soap"
	"github.com/qapi-az/qapi/internal/sampleis"
	"github.com/qapi-az/qapi/internal/testpki"
)

// TestHappyPath sends getPerson from the client's information system
// through both security servers to the register and back.
func TestHappyPath(t *testing.T) {
	e := newEnv(t)
	p := e.is.Persons()[42]
	id := newID()
	status, body := call(t, http.DefaultClient, e.clientURL(),
		sampleis.GetPersonRequest(header(getPerson, id), p.FIN))
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	m, err := soap.ParseResponse(body, soap.Limits{MaxBytes: 1 << 20, MaxDepth: 64})
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.ID != id || m.Header.RequestHash == nil ||
		m.Body.Local != "getPersonResponse" {
		t.Errorf("response header %+v, body %v", m.Header, m.Body)
	}
	if !bytes.Contains(body, []byte(p.Surname)) || !bytes.Contains(body, []byte(p.FIN)) {
		t.Errorf("response lacks the person: %s", body)
	}
	for _, n := range []*node{e.c, e.p} {
		got := logged(t, n.srv.MessageLog(), id)
		want := []messagelog.Kind{messagelog.KindRequest, messagelog.KindResponse}
		if !slices.Equal(got, want) {
			t.Errorf("message log of %s holds %v for the exchange, want %v", n.dir, got, want)
		}
		r := n.events.last()
		if r.MessageID != id || r.Result != events.ResultOK || r.Forwarded.IsZero() ||
			r.Answered.IsZero() || r.Client != client.String() {
			t.Errorf("event record %+v", r)
		}
	}
	if e.is.Hits() != 1 {
		t.Errorf("register hit %d times, want 1", e.is.Hits())
	}
}

// refusal is one request the servers must refuse.
type refusal struct {
	name string
	// setup changes the environment and returns the request to send; it
	// may instead send the request itself and return the answer.
	setup    func(t *testing.T, e *env) (req []byte, answer []byte)
	wantCode string
	// wantText is part of the fault string, to tell refusals of one code
	// apart; "" when the code says enough.
	wantText string
}

func getPersonReq(e *env) []byte { return getPersonReqFor(e, e.is.Persons()[0].FIN) }

func getPersonReqFor(e *env, fin string) []byte {
	return sampleis.GetPersonRequest(header(getPerson, newID()), fin)
}

func TestRefusals(t *testing.T) {
	refusals := []refusal{
		{"blocked client at the client's server", func(t *testing.T, e *env) ([]byte, []byte) {
			e.setConf(func(c, p *globalconf.Conf) {
				c.Blocked = []globalconf.Blocked{{Client: client, Since: time.Now()}}
			})
			return getPersonReq(e), nil
		}, soap.CodeBlocked, "client AZ/GOV/2002/POLICE is blocked"},
		{"blocked client at the provider's server", func(t *testing.T, e *env) ([]byte, []byte) {
			e.setConf(func(c, p *globalconf.Conf) {
				p.Blocked = []globalconf.Blocked{{Client: clientMember, Since: time.Now()}}
			})
			return getPersonReq(e), nil
		}, soap.CodeBlocked, "client AZ/GOV/2002/POLICE is blocked"},
		{"blocked provider", func(t *testing.T, e *env) ([]byte, []byte) {
			e.setConf(func(c, p *globalconf.Conf) {
				c.Blocked = []globalconf.Blocked{{Client: providerMember, Since: time.Now()}}
			})
			return getPersonReq(e), nil
		}, soap.CodeBlocked, "provider AZ/GOV/1001/EDR is blocked"},
		{"blocked provider at the provider's server",
			func(t *testing.T, e *env) ([]byte, []byte) {
				e.setConf(func(c, p *globalconf.Conf) {
					p.Blocked = []globalconf.Blocked{{Client: provider, Since: time.Now()}}
				})
				return getPersonReq(e), nil
			}, soap.CodeBlocked, "provider AZ/GOV/1001/EDR is blocked by the operator"},
		{"no access right", func(t *testing.T, e *env) ([]byte, []byte) {
			return sampleis.SearchPersonsRequest(header(searchPersons, newID()),
				sampleis.Search{Surname: "Əliyev"}), nil
		}, soap.CodeAccessDenied, "no access right"},
		{"replayed message id", func(t *testing.T, e *env) ([]byte, []byte) {
			req := getPersonReq(e)
			if status, body := call(t, http.DefaultClient, e.clientURL(), req); status != 200 {
				t.Fatalf("first use of the id refused: %s", body)
			}
			e.is.ResetHits()
			return req, nil
		}, soap.CodeReplay, "already used"},
		{"signing time outside the window", func(t *testing.T, e *env) ([]byte, []byte) {
			e.c.clock.offset.Store(int64(-10 * time.Minute))
			return getPersonReq(e), nil
		}, soap.CodeSigningTime, "signing time"},
		{"stale global configuration at the client's server",
			func(t *testing.T, e *env) ([]byte, []byte) {
				e.setConf(func(c, p *globalconf.Conf) { c.Expires = time.Now().Add(-time.Second) })
				return getPersonReq(e), nil
			}, soap.CodeStaleConf, "no valid global configuration"},
		{"stale global configuration at the provider's server",
			func(t *testing.T, e *env) ([]byte, []byte) {
				e.setConf(func(c, p *globalconf.Conf) { p.Expires = time.Now().Add(-time.Second) })
				return getPersonReq(e), nil
			}, soap.CodeStaleConf, "provider's security server has no valid"},
		{"oversized request", func(t *testing.T, e *env) ([]byte, []byte) {
			return sampleis.SearchPersonsRequest(header(getPerson, newID()),
				sampleis.Search{Purpose: strings.Repeat("x", 10240)}), nil
		}, soap.CodeSizeExceeded, "10240 bytes"},
		{"client not served by this server", func(t *testing.T, e *env) ([]byte, []byte) {
			h := header(getPerson, newID())
			h.Client = sub(rogueMember, "X")
			return sampleis.GetPersonRequest(h, "0000000"), nil
		}, soap.CodeUnknownClient, "does not serve client"},
		{"provider's server not pinned", func(t *testing.T, e *env) ([]byte, []byte) {
			e.setConf(func(c, p *globalconf.Conf) {
				c.SecurityServers[0].AuthCertHashes = []string{
					globalconf.CertHash(e.foreignAuth.Cert.Raw)}
			})
			return getPersonReq(e), nil
		}, soap.CodeBadCertificate, "does not pin"},
		{"client's server not pinned", func(t *testing.T, e *env) ([]byte, []byte) {
			// A server presenting an authentication certificate that the
			// configuration does not pin calls the provider directly.
			return nil, postSigned(t, e, tlsClient(e.foreignAuth), e.c.sign, getPersonReq(e))
		}, soap.CodeBadCertificate, "not pinned in the global"},
		{"bad signature", func(t *testing.T, e *env) ([]byte, []byte) {
			a := sampleis.GetPersonRequest(header(getPerson, "same-id"), e.is.Persons()[1].FIN)
			b := sampleis.GetPersonRequest(header(getPerson, "same-id"), e.is.Persons()[2].FIN)
			body, ct := signWith(t, e.c.sign, a)
			// Swap the signed message for another one of the same length,
			// sent as it is or base64-encoded, as package sign chose.
			forged := bytes.Replace(body, a, b, 1)
			if bytes.Equal(forged, body) {
				encA, encB := base64.StdEncoding.EncodeToString(a),
					base64.StdEncoding.EncodeToString(b)
				forged = bytes.Replace(body, []byte(lines(encA)), []byte(lines(encB)), 1)
			}
			if bytes.Equal(forged, body) {
				t.Fatal("test could not find the message part to swap")
			}
			return nil, post(t, e, tlsClient(e.c.auth), forged, ct)
		}, soap.CodeBadSignature, ""},
		{"calling server does not serve the client", func(t *testing.T, e *env) ([]byte,
			[]byte) {
			// The provider's own server is pinned, but serves only the
			// provider: it may not send as the police subsystem.
			return nil, postSigned(t, e, tlsClient(e.p.auth), e.c.sign, getPersonReq(e))
		}, soap.CodeAccessDenied, "not registered to serve client"},
		{"signed by another member", func(t *testing.T, e *env) ([]byte, []byte) {
			return nil, postSigned(t, e, tlsClient(e.c.auth), e.rogueSign, getPersonReq(e))
		}, soap.CodeSignerMismatch, ""},
		{"response bound to another request", func(t *testing.T, e *env) ([]byte, []byte) {
			fake := misbehavingProvider(t, e)
			e.setConf(func(c, p *globalconf.Conf) { c.SecurityServers[0].Address = fake })
			return getPersonReq(e), nil
		}, soap.CodeRequestHash, ""},
		{"information system without its pinned certificate",
			func(t *testing.T, e *env) ([]byte, []byte) {
				h := header(getPerson, newID())
				h.Client = clientMember
				return sampleis.GetPersonRequest(h, e.is.Persons()[0].FIN), nil
			}, soap.CodeAccessDenied, "pinned TLS client certificate"},
	}
	e := newEnv(t)
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			e.setConf(nil)
			e.c.clock.offset.Store(0)
			e.is.ResetHits()
			req, answer := r.setup(t, e)
			if answer == nil {
				status, body := call(t, http.DefaultClient, e.clientURL(), req)
				if status != http.StatusInternalServerError {
					t.Errorf("status %d, want 500", status)
				}
				answer = body
			}
			checkRefused(t, e, answer, r.wantCode, r.wantText)
		})
	}
}

// checkRefused checks that answer is a fault with code and a text that
// says want, and that the provider's information system was not reached
// since e.is.ResetHits.
func checkRefused(t *testing.T, e *env, answer []byte, code, want string) {
	t.Helper()
	if got := faultCode(t, answer); got != code {
		t.Errorf("fault code %q, want %q: %s", got, code, answer)
	}
	if got := faultString(t, answer); !strings.Contains(got, want) {
		t.Errorf("fault says %q, want it to say %q", got, want)
	}
	if n := e.is.Hits(); n != 0 {
		t.Errorf("the provider's information system was reached %d times", n)
	}
}

// signWith signs req as package sign does, with the key of c.
func signWith(t *testing.T, c *testpki.Cert, req []byte) ([]byte, string) {
	t.Helper()
	body, ct, err := (&sign.Signer{Key: c.Key, Cert: c.Cert}).Sign(req, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return body, ct
}

// post sends a signed body to the provider's server proxy as a security
// server would, and returns the answer.
func post(t *testing.T, e *env, hc *http.Client, body []byte, ct string) []byte {
	t.Helper()
	resp, err := hc.Post("https://"+e.p.srv.Addr(server.RoleServer)+"/", ct,
		bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("provider's server answered status %d, want 500", resp.StatusCode)
	}
	return b
}

func postSigned(t *testing.T, e *env, hc *http.Client, signer *testpki.Cert,
	req []byte) []byte {
	t.Helper()
	body, ct := signWith(t, signer, req)
	return post(t, e, hc, body, ct)
}

// misbehavingProvider starts a server that holds the provider's server's
// pinned certificate and signing key but answers every request with a
// signed response bound to another request. It returns its address.
func misbehavingProvider(t *testing.T, e *env) string {
	t.Helper()
	other := sampleis.GetPersonRequest(header(getPerson, "other"), "0000000")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter,
		r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		part, _ := multipart.NewReader(bytes.NewReader(body), params["boundary"]).NextPart()
		var req []byte
		if part.Header.Get("Content-Transfer-Encoding") == "base64" {
			req, _ = io.ReadAll(base64.NewDecoder(base64.StdEncoding, part))
		} else {
			req, _ = io.ReadAll(part)
		}
		m, err := soap.ParseRequest(req, soap.DefaultLimits())
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		resp := soap.NewResponse(m.Header, []byte(`<x:getPersonResponse `+
			`xmlns:x="http://qapi.az/xsd/population-register"/>`))
		resp, _ = soap.WithRequestHash(resp, other)
		out, ct := signWith(t, e.p.sign, resp)
		w.Header().Set("Content-Type", ct)
		w.Write(out)
	}))
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAnyClientCert,
		Certificates: []tls.Certificate{{Certificate: [][]byte{e.p.auth.Cert.Raw},
			PrivateKey: e.p.auth.Key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// lines splits base64 text as package sign writes it: 76 characters a line.
func lines(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	b.WriteString(s)
	return b.String()
}

// TestProviderFault passes a fault of the provider's information system
// back to the client, signed and logged on both sides like any answer.
func TestProviderFault(t *testing.T) {
	e := newEnv(t)
	id := newID()
	status, body := call(t, http.DefaultClient, e.clientURL(),
		sampleis.GetPersonRequest(header(getPerson, id), "0000000"))
	if status != http.StatusInternalServerError || faultCode(t, body) != "Client.NotFound" {
		t.Fatalf("status %d: %s", status, body)
	}
	for _, n := range []*node{e.c, e.p} {
		got := logged(t, n.srv.MessageLog(), id)
		if !slices.Equal(got, []messagelog.Kind{messagelog.KindRequest,
			messagelog.KindResponse}) {
			t.Errorf("message log holds %v for the exchange", got)
		}
		if r := n.events.last(); r.Result != events.ResultFault ||
			r.FaultCode != "Client.NotFound" {
			t.Errorf("event record %+v does not count the provider's fault", r)
		}
	}
}
