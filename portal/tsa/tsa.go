// Package tsa is the portal's time-stamping authority (RFC 3161) over HTTP:
// security servers stamp the heads of their message logs' hash chains with
// it. The tokens are made by timestamp.Issue; this package adds the
// transport (RFC 3161 section 3.4) and a persistent serial number.
package tsa

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"time"

	"go.etcd.io/bbolt"

	"github.com/qapi-az/qapi/appliance/timestamp"
)

var bucketTSA = []byte("tsa")

// ContentTypeQuery and ContentTypeReply are the media types of RFC 3161
// section 3.4.
const (
	ContentTypeQuery = "application/timestamp-query"
	ContentTypeReply = "application/timestamp-reply"
)

// TSA answers time-stamp requests. It is safe for concurrent use.
type TSA struct {
	db   *bbolt.DB
	key  crypto.Signer
	cert *x509.Certificate
	now  func() time.Time
}

// New returns a TSA signing with key, whose certificate cert must carry
// the critical timeStamping extended key usage (see Template); serial
// numbers are kept in db. now is the clock, time.Now when nil.
func New(db *bbolt.DB, key crypto.Signer, cert *x509.Certificate,
	now func() time.Time) (*TSA, error) {
	if now == nil {
		now = time.Now
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketTSA)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open time-stamping authority: %w", err)
	}
	return &TSA{db: db, key: key, cert: cert, now: now}, nil
}

// Template returns a certificate template for a time-stamping unit named
// cn: key usage digitalSignature and, as RFC 3161 section 2.3 requires, a
// critical extended key usage of timeStamping alone.
func Template(cn string) *x509.Certificate {
	val, _ := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
	return &x509.Certificate{
		Subject:  pkix.Name{CommonName: cn, Country: []string{"AZ"}},
		KeyUsage: x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 37},
			Critical: true, Value: val}},
	}
}

// Certificate returns the time-stamping unit's certificate.
func (t *TSA) Certificate() *x509.Certificate { return t.cert }

// Stamp answers one DER TimeStampReq with a DER TimeStampResp; a refused
// request gets a rejection response and a nil error.
func (t *TSA) Stamp(req []byte) ([]byte, error) {
	var serial uint64
	err := t.db.Update(func(tx *bbolt.Tx) error {
		var err error
		serial, err = tx.Bucket(bucketTSA).NextSequence()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("time-stamp serial number: %w", err)
	}
	resp, err := timestamp.Issue(req, t.key, t.cert, t.now(),
		new(big.Int).SetUint64(serial))
	if err != nil && !errors.Is(err, timestamp.ErrRejected) {
		return nil, err
	}
	return resp, nil
}

// ServeHTTP takes a POST of a time-stamp query and answers with a reply.
func (t *TSA) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an "+ContentTypeQuery, http.StatusMethodNotAllowed)
		return
	}
	req, err := io.ReadAll(io.LimitReader(r.Body, 16<<10))
	if err != nil {
		http.Error(w, "read time-stamp query: "+err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := t.Stamp(req)
	if err != nil {
		http.Error(w, "time-stamping failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ContentTypeReply)
	w.Write(resp)
}
