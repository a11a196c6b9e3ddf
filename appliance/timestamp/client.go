package timestamp

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"
)

// maxResponse bounds what Client reads from a TSA: a token is a TSTInfo,
// a signature and a short certificate chain.
const maxResponse = 64 << 10

// Client fetches time stamps from one TSA over HTTP (RFC 3161 section 3.4)
// and verifies them. It implements messagelog.Stamper.
type Client struct {
	// URL is the TSA's address.
	URL string
	// Roots hold the trusted TSA certificate or the CA that issued it
	// (the TSAs of the global configuration).
	Roots *x509.CertPool
	// HTTP is the client used; http.DefaultClient when nil.
	HTTP *http.Client
	// MaxSkew is how far the stamp's time may lie from this machine's clock
	// (default five minutes): a TSA with a wrong clock gives worthless
	// evidence.
	MaxSkew time.Duration
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
}

// Stamp requests a time stamp over a SHA-256 digest and returns the
// verified token's DER. It fails when the TSA is unreachable, refuses, or
// answers with a token that does not verify against Roots.
func (c *Client) Stamp(ctx context.Context, digest []byte) ([]byte, error) {
	tok, err := c.StampToken(ctx, digest)
	if err != nil {
		return nil, err
	}
	return tok.DER, nil
}

// StampToken is Stamp returning the parsed token.
func (c *Client) StampToken(ctx context.Context, digest []byte) (*Token, error) {
	req, nonce, err := NewRequest(digest)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(req))
	if err != nil {
		return nil, fmt.Errorf("time stamp request to %s: %w", c.URL, err)
	}
	hr.Header.Set("Content-Type", ContentTypeQuery)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("time stamp request to %s: %w", c.URL, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("reading the time stamp response of %s: %w", c.URL, err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("time stamp request to %s: HTTP %s", c.URL, res.Status)
	}
	if len(body) > maxResponse {
		return nil, fmt.Errorf("time stamp response of %s is over %d bytes", c.URL,
			maxResponse)
	}
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt != ContentTypeReply {
		return nil, fmt.Errorf("time stamp response of %s has Content-Type %q, want %s",
			c.URL, res.Header.Get("Content-Type"), ContentTypeReply)
	}
	tok, err := VerifyResponse(body, digest, nonce, c.Roots)
	if err != nil {
		return nil, fmt.Errorf("time stamp from %s: %w", c.URL, err)
	}
	now, skew := time.Now, c.MaxSkew
	if c.Now != nil {
		now = c.Now
	}
	if skew <= 0 {
		skew = 5 * time.Minute
	}
	if d := tok.Info.GenTime.Sub(now()).Abs(); d > skew+tok.Info.Accuracy {
		return nil, fmt.Errorf("%w: the stamp from %s says %s, %v away from this "+
			"server's clock; check the clocks of both", ErrVerification, c.URL,
			tok.Info.GenTime.Format(time.RFC3339), d.Round(time.Second))
	}
	return tok, nil
}
