package server_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/appliance/soap"
)

// redirectTo starts a server that answers every request with a 307 to
// target; tc, when set, makes it HTTPS with that configuration.
func redirectTo(t *testing.T, target string, tc *tls.Config) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter,
		r *http.Request) {
		http.Redirect(w, r, target, http.StatusTemporaryRedirect)
	}))
	if tc != nil {
		srv.TLS = tc
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

// TestNoRedirects has the provider's security server and the provider's
// information system answer with a redirect to a plain HTTP server: the
// request must go only where the global configuration and the service
// configuration say (2.2.4), so the plain server must see nothing and the
// client must get a fault.
func TestNoRedirects(t *testing.T) {
	var hits atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter,
		r *http.Request) {
		hits.Add(1)
	}))
	t.Cleanup(sink.Close)

	t.Run("provider's security server", func(t *testing.T) {
		hits.Store(0)
		e := newEnv(t)
		fake := redirectTo(t, sink.URL, &tls.Config{MinVersion: tls.VersionTLS13,
			ClientAuth: tls.RequireAnyClientCert,
			Certificates: []tls.Certificate{{Certificate: [][]byte{e.p.auth.Cert.Raw},
				PrivateKey: e.p.auth.Key}}})
		addr := fake.Listener.Addr().String()
		e.setConf(func(c, p *globalconf.Conf) { c.SecurityServers[0].Address = addr })
		status, body := call(t, http.DefaultClient, e.clientURL(), getPersonReq(e))
		if status != http.StatusInternalServerError ||
			faultCode(t, body) != soap.CodeProviderFault {
			t.Errorf("status %d, %s; want a %s fault", status, body, soap.CodeProviderFault)
		}
		if n := hits.Load(); n != 0 {
			t.Errorf("the signed request followed a redirect to plain HTTP %d times", n)
		}
	})

	t.Run("provider's information system", func(t *testing.T) {
		hits.Store(0)
		is := redirectTo(t, sink.URL, nil)
		e := newEnvWith(t, func(e *env, c *server.Config) {
			for i := range c.Services {
				c.Services[i].URL = is.URL
			}
		})
		status, body := call(t, http.DefaultClient, e.clientURL(), getPersonReq(e))
		if status != http.StatusInternalServerError ||
			faultCode(t, body) != soap.CodeProviderFault {
			t.Errorf("status %d, %s; want a %s fault", status, body, soap.CodeProviderFault)
		}
		if n := hits.Load(); n != 0 {
			t.Errorf("the request followed the information system's redirect %d times", n)
		}
	})
}
