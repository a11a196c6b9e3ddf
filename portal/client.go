package portal

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/qapi-az/qapi/portal/wire"
)

// Conn is the operator's connection file: where the operator API listens,
// the token, and the certificate that the API's TLS certificate chains to.
// qapi-portal writes it, mode 0600, into its data directory as
// operator.json; 'qapi portal -conn FILE' reads it.
type Conn struct {
	URL   string `json:"url"`
	Token string `json:"token"`
	// CACert is the PEM certificate the API's TLS certificate chains to.
	CACert string `json:"caCert"`
}

// NewToken returns a random operator token.
func NewToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// WriteConn writes c to path, readable by its owner only, also when the
// file existed with a wider mode.
func WriteConn(path string, c Conn) error {
	b, _ := json.MarshalIndent(c, "", "  ")
	// os.WriteFile keeps an existing file's mode; narrow it before the
	// token is written.
	if err := os.Chmod(path, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("protect operator connection file: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write operator connection file: %w", err)
	}
	return nil
}

// Client calls the operator API.
type Client struct {
	conn Conn
	http *http.Client
}

// Dial reads the connection file at path and returns a client for it.
func Dial(path string) (*Client, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read operator connection file (qapi-portal writes "+
			"operator.json in its data directory): %w", err)
	}
	var c Conn
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("operator connection file %s: %w", path, err)
	}
	return NewClient(c)
}

// NewClient returns a client for c.
func NewClient(c Conn) (*Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(c.CACert)) {
		return nil, errors.New("operator connection has no CA certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool,
		MinVersion: tls.VersionTLS13}}
	return &Client{conn: c, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}},
		nil
}

// Do sends in (when not nil) as JSON to the API path with method, and
// decodes the answer into out (when not nil). An API error comes back as
// an error carrying the portal's message.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.conn.URL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.conn.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reach the portal's operator API (is qapi-portal running?): %w",
			err)
	}
	defer resp.Body.Close()
	return wire.ReadAnswer(resp, "the portal", 64<<20, out)
}

// CertPEM encodes a DER certificate as PEM.
func CertPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
