package wire

import (
	"bytes"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
)

// ErrorAnswer is the JSON body of every error answer of the portal's
// endpoints and of the security server's management API.
type ErrorAnswer struct {
	Error string `json:"error"`
}

// ReadAnswer reads the JSON answer resp carries, at most limit bytes, and
// decodes it into out: nothing when out is nil, the bytes themselves when
// out is a *json.RawMessage. An answer other than 200 OK becomes an error
// carrying the ErrorAnswer's text, or else saying that who answered with
// that status and body. The caller closes resp.Body.
func ReadAnswer(resp *http.Response, who string, limit int64, out any) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("read the answer of %s: %w", who, err)
	}
	if int64(len(b)) > limit {
		return fmt.Errorf("the answer of %s is over %d bytes; is its address right?",
			who, limit)
	}
	if resp.StatusCode != http.StatusOK {
		var e ErrorAnswer
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s answered %s: %s", who, resp.Status, bytes.TrimSpace(b))
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *json.RawMessage:
		*o = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the answer of %s is not the expected JSON: %w", who, err)
	}
	return nil
}

// BearerOnly passes to next only the requests whose Authorization header
// is "Bearer token", compared in constant time; it answers every other
// request 401 with refusal as the ErrorAnswer. An empty token refuses
// every request.
func BearerOnly(token, realm, refusal string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	body, _ := json.Marshal(ErrorAnswer{refusal})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if token == "" || subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write(append(body, '\n'))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SetCertHosts adds each of hosts to tmpl as the certificate address a TLS
// client checks: an IP address when the host parses as one, else a DNS
// name. The portal's operator API and the security server's management API
// certify their listeners with it.
func SetCertHosts(tmpl *x509.Certificate, hosts []string) {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
}
