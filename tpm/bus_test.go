package tpm

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// recorder keeps every command and response that crosses the bus.
type recorder struct {
	t       transport.TPM
	traffic [][]byte
}

// Send records cmd before sending it: the simulator decrypts parameters in
// the very buffer it is given.
func (r *recorder) Send(cmd []byte) ([]byte, error) {
	sent := bytes.Clone(cmd)
	rsp, err := r.t.Send(cmd)
	r.traffic = append(r.traffic, sent, bytes.Clone(rsp))
	return rsp, err
}

func (r *recorder) saw(b []byte) bool {
	for _, m := range r.traffic {
		if bytes.Contains(m, b) {
			return true
		}
	}
	return false
}

// Clause 6.2.3: the secret never crosses the bus in the clear, neither
// going into TPM2_Create nor coming out of TPM2_Unseal, in either policy.
func TestSecretNeverOnTheBus(t *testing.T) {
	s := newSim(t)
	rec := &recorder{t: s.t}
	tp := New(rec)
	operator := newKey(t)

	secret := make([]byte, 32)
	rand.Read(secret)
	// The recorder sees what is sent in the clear: a TPM2_Hash of the
	// secret carries it.
	if _, err := (tpm2.Hash{Data: tpm2.TPM2BMaxBuffer{Buffer: secret},
		HashAlg: tpm2.TPMAlgSHA256, Hierarchy: tpm2.TPMRHNull}).Execute(rec); err != nil {
		t.Fatal(err)
	}
	if !rec.saw(secret) {
		t.Fatal("the recorder missed a secret sent in the clear")
	}
	rec.traffic = nil

	for _, opts := range []SealOptions{{}, {Authority: &operator.PublicKey}} {
		b, err := tp.Seal(secret, opts)
		if err != nil {
			t.Fatal(err)
		}
		var a *Approval
		if opts.Authority != nil {
			a = approve(t, &sim{TPM: tp}, operator, []int{7}, 0, 0)
		}
		got, err := tp.Unseal(b, a)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, secret) {
			t.Fatal("Unseal returned other bytes")
		}
	}
	if len(rec.traffic) == 0 {
		t.Fatal("nothing recorded")
	}
	if rec.saw(secret) {
		t.Fatal("the secret crossed the bus in the clear")
	}
}
