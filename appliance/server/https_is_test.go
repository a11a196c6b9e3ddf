package server_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/appliance/soap"
	"github.com/qapi-az/qapi/internal/testpki"
)

// TestProviderISOverHTTPS has the provider's server reach its information
// system over HTTPS (clause 4.2.2) that requires a client certificate, as
// configured by tlsCA, tlsCert and tlsKey; a server without the certificate
// is refused by the information system.
func TestProviderISOverHTTPS(t *testing.T) {
	for _, withCert := range []bool{true, false} {
		var hits atomic.Int64
		e := newEnvWith(t, func(e *env, c *server.Config) {
			ists := httptest.NewUnstartedServer(http.HandlerFunc(
				func(w http.ResponseWriter, r *http.Request) {
					hits.Add(1)
					e.is.ServeHTTP(w, r)
				}))
			srvCert := must[*testpki.Cert](t)(e.ca.IssueTLS("register"))
			pool := x509.NewCertPool()
			pool.AddCert(e.ca.Cert)
			ists.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert,
				ClientCAs: pool, Certificates: []tls.Certificate{{
					Certificate: [][]byte{srvCert.Cert.Raw}, PrivateKey: srvCert.Key}}}
			ists.StartTLS()
			t.Cleanup(ists.Close)

			dir := t.TempDir()
			writePEM(t, filepath.Join(dir, "ca.pem"), e.ca.Cert)
			sc := server.ServiceConfig{Provider: provider.String(), Code: "getPerson",
				URL: ists.URL + "/", TLSCA: filepath.Join(dir, "ca.pem")}
			if withCert {
				toIS := must[*testpki.Cert](t)(e.ca.IssueTLS("ss-p-to-register"))
				writePEM(t, filepath.Join(dir, "to-is.pem"), toIS.Cert)
				writeKeyPEM(t, filepath.Join(dir, "to-is.key"), toIS)
				sc.TLSCert = filepath.Join(dir, "to-is.pem")
				sc.TLSKey = filepath.Join(dir, "to-is.key")
			}
			c.Services = []server.ServiceConfig{sc}
		})
		p := e.is.Persons()[9]
		status, body := call(t, http.DefaultClient, e.clientURL(), getPersonReqFor(e, p.FIN))
		if withCert {
			if status != 200 || !bytes.Contains(body, []byte(p.Surname)) || hits.Load() != 1 {
				t.Errorf("with a client certificate: status %d, %d hits: %s", status,
					hits.Load(), body)
			}
			continue
		}
		if status != 500 || faultCode(t, body) != soap.CodeProviderDown || hits.Load() != 0 {
			t.Errorf("without a client certificate: status %d, %d hits: %s", status,
				hits.Load(), body)
		}
	}
}
