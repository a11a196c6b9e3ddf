package manage

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"time"

	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/portal/wire"
)

// MaxRequestBody is the largest request body the management API reads:
// 1 MiB, far more than an anchor, a certificate or an identity needs.
const MaxRequestBody = 1 << 20

// Handler serves the local management API under /api/ for requests
// bearing "Authorization: Bearer token". Serve it over HTTPS on the
// internal interface only.
//
//	GET  /api/status                 Status
//	POST /api/configure              Identity
//	POST /api/anchor                 the anchor file's bytes
//	GET  /api/csr/{auth|signing}     a PEM certificate request
//	POST /api/submit                 hand both requests to the centre
//	POST /api/fetch                  import the certificates issued so far
//	POST /api/import                 a PEM or DER certificate
//	POST /api/register               register at the central server
//	GET  /api/registration           the registration's state
//	GET  /api/notices                NoticeList: service notices (3.12, 3.14)
//
// A request body over MaxRequestBody is refused with 413.
func (m *Manager) Handler(token string) http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, f func(*http.Request) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBody)
			v, err := f(r)
			w.Header().Set("Content-Type", "application/json")
			var tooLarge *http.MaxBytesError
			switch {
			case errors.As(err, &tooLarge):
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				json.NewEncoder(w).Encode(wire.ErrorAnswer{Error: fmt.Sprintf(
					"the request body is over %d MiB, more than any anchor, "+
						"certificate or identity; check that the file is the right one",
					MaxRequestBody>>20)})
				return
			case err != nil:
				w.WriteHeader(http.StatusBadRequest)
				json.NewEncoder(w).Encode(wire.ErrorAnswer{Error: err.Error()})
				return
			}
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(v)
		})
	}
	read := func(r *http.Request) ([]byte, error) { return io.ReadAll(r.Body) }
	h("GET /api/status", func(*http.Request) (any, error) { return m.Status(), nil })
	h("POST /api/configure", func(r *http.Request) (any, error) {
		var id Identity
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&id); err != nil {
			return nil, fmt.Errorf("request body is not an identity: %w", err)
		}
		return m.Status(), m.Configure(id)
	})
	h("POST /api/anchor", func(r *http.Request) (any, error) {
		b, err := read(r)
		if err != nil {
			return nil, err
		}
		return m.InstallAnchor(b)
	})
	h("GET /api/csr/{purpose}", func(r *http.Request) (any, error) {
		p := keys.Signing
		switch r.PathValue("purpose") {
		case "auth":
			p = keys.Authentication
		case "signing":
		default:
			return nil, errors.New("ask for the csr of auth or signing")
		}
		der, err := m.CertificateRequest(p)
		if err != nil {
			return nil, err
		}
		return struct {
			PEM string `json:"pem"`
		}{string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST",
			Bytes: der}))}, nil
	})
	h("POST /api/submit", func(r *http.Request) (any, error) {
		a, s, err := m.SubmitRequests(r.Context())
		return struct {
			AuthRequest    uint64 `json:"authRequest"`
			SigningRequest uint64 `json:"signingRequest"`
		}{a, s}, err
	})
	h("POST /api/fetch", func(r *http.Request) (any, error) {
		done, err := m.FetchCertificates(r.Context())
		return struct {
			Imported bool `json:"imported"`
		}{done}, err
	})
	h("POST /api/import", func(r *http.Request) (any, error) {
		b, err := read(r)
		if err != nil {
			return nil, err
		}
		p, err := m.ImportCertificate(r.Context(), b)
		return struct {
			Purpose keys.Purpose `json:"purpose"`
		}{p}, err
	})
	h("POST /api/register", func(r *http.Request) (any, error) {
		return m.Register(r.Context())
	})
	h("GET /api/registration", func(r *http.Request) (any, error) {
		return m.RegistrationStatus(r.Context())
	})
	h("GET /api/notices", func(r *http.Request) (any, error) {
		return m.Notices(r.Context())
	})
	return wire.BearerOnly(token, "qapi-server", "missing or wrong management token; "+
		"use the connection file the security server wrote (qapi register -conn FILE)", mux)
}

// Conn is the connection file of the management API: 'qapi register
// -conn FILE' reads it.
type Conn struct {
	URL   string `json:"url"`
	Token string `json:"token"`
	// Cert is the PEM certificate of the API's TLS key.
	Cert string `json:"cert"`
}

// APIListener prepares serving the API: a self-signed TLS certificate for
// the given host names and addresses (the server's own, on the internal
// interface), a random token, and the connection file written to
// Dir/manage.json. Give the returned config to tls.NewListener.
func (m *Manager) APIListener(url string, hosts []string) (*tls.Config, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "Qapı management API"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	wire.SetCertHosts(tmpl, hosts)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, "", err
	}
	tok := make([]byte, 24)
	rand.Read(tok)
	token := hex.EncodeToString(tok)
	conn := Conn{URL: url, Token: token,
		Cert: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
	b, _ := json.MarshalIndent(conn, "", "  ")
	if err := writeFile(m.path("manage.json"), b); err != nil {
		return nil, "", fmt.Errorf("write management connection file: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{
		Certificate: [][]byte{der}, PrivateKey: key}}}, token, nil
}

// Client calls the management API.
type Client struct {
	conn Conn
	http *http.Client
}

// DialAPI reads a connection file and returns a client.
func DialAPI(path string) (*Client, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read management connection file: %w", err)
	}
	var c Conn
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("management connection file %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(c.Cert)) {
		return nil, fmt.Errorf("management connection file %s has no certificate", path)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool,
		MinVersion: tls.VersionTLS13}}
	return &Client{conn: c, http: &http.Client{Transport: tr, Timeout: time.Minute}}, nil
}

// Do sends body (raw bytes, or JSON of any other value; nothing when nil)
// to path and decodes the JSON answer into out.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.conn.URL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.conn.Token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reach the management API (is the security server "+
			"running?): %w", err)
	}
	defer resp.Body.Close()
	return wire.ReadAnswer(resp, "the management API", 1<<20, out)
}
