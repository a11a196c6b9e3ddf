package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// TPM is a connection to a TPM 2.0. Its methods are safe for concurrent use:
// they take turns, since a TPM runs one command at a time anyway.
type TPM struct {
	mu     sync.Mutex
	t      transport.TPM
	closer io.Closer
}

// New wraps an open transport (a device, a simulator in tests). Close does
// not close t; the caller keeps owning it.
func New(t transport.TPM) *TPM {
	return &TPM{t: t}
}

// Close closes the device if Open opened it.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closer == nil {
		return nil
	}
	err := t.closer.Close()
	t.closer = nil
	return err
}

// Transport returns the transport t talks through, for callers that need a
// command this package does not wrap. Calls through it must not overlap
// calls of t's methods.
func (t *TPM) Transport() transport.TPM { return t.t }

// srk is the storage root key while it is loaded.
type srk struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	public tpm2.TPMTPublic
}

// loadSRK creates the storage root key: the owner hierarchy's primary key
// from the TCG ECC P-256 template. The same seed always yields the same key,
// so it needs no persistent handle and its name identifies this TPM (and
// this owner seed: a TPM2_Clear changes it). The caller flushes it.
func (t *TPM) loadSRK() (*srk, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t.t)
	if err != nil {
		return nil, t.explain(fmt.Errorf("create the storage root key: %w", err))
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		t.flush(rsp.ObjectHandle)
		return nil, fmt.Errorf("parse the storage root key: %w", err)
	}
	// Name the key from its public area rather than take the name the
	// response carries: the sessions are salted to this public area, and
	// comparing its own name with a blob's is what makes a substituted key
	// (an interposer on the bus) fail as "another TPM".
	name, err := tpm2.ObjectName(pub)
	if err != nil {
		t.flush(rsp.ObjectHandle)
		return nil, fmt.Errorf("name the storage root key: %w", err)
	}
	if !bytes.Equal(name.Buffer, rsp.Name.Buffer) {
		t.flush(rsp.ObjectHandle)
		return nil, errors.New("the TPM named the storage root key other than its public " +
			"area says; something between this program and the TPM alters its answers")
	}
	return &srk{handle: rsp.ObjectHandle, name: *name, public: *pub}, nil
}

// flush unloads a transient object or session. A failure leaves a handle
// behind in the TPM, which the resource manager reclaims when the
// connection closes; there is nothing better to do with the error.
func (t *TPM) flush(h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t.t)
}

// SRKName returns the TPM name of the storage root key. It identifies this
// TPM's owner seed: sealed blobs record it, and it changes when the TPM is
// replaced or cleared.
func (t *TPM) SRKName() ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k, err := t.loadSRK()
	if err != nil {
		return nil, err
	}
	defer t.flush(k.handle)
	return k.name.Buffer, nil
}

// saltedSession returns the options of a session salted to the storage root
// key, with AES-128-CFB parameter encryption in direction dir: the session
// key comes from a secret only the TPM can decrypt, so an eavesdropper on
// the bus sees neither the sealed secret going in nor coming out (clause
// 6.2.3).
func saltedSession(k *srk, dir int) []tpm2.AuthOption {
	d := tpm2.EncryptIn
	if dir == encryptOut {
		d = tpm2.EncryptOut
	}
	return []tpm2.AuthOption{
		tpm2.Salted(k.handle, k.public),
		tpm2.AESEncryption(128, d),
	}
}

const (
	encryptIn = iota
	encryptOut
)

// Status is what the TPM says about itself, for the console and `qapi tpm
// status`.
type Status struct {
	// Manufacturer is the four-letter vendor code (e.g. "IFX ", "STM ").
	Manufacturer string
	// SRKName is the storage root key's TPM name.
	SRKName []byte
	// InLockout reports dictionary-attack lockout: objects authorised by a
	// password are refused until Recovery has passed.
	InLockout bool
	// FailedTries counts failed password authorisations; MaxTries of them
	// start the lockout.
	FailedTries, MaxTries uint32
	// Recovery is how long the TPM takes to forgive one failed try.
	Recovery time.Duration
}

// Status reads the TPM's manufacturer, its storage root key name and its
// dictionary-attack state.
func (t *TPM) Status() (*Status, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	props, err := t.properties(tpm2.TPMPTManufacturer)
	if err != nil {
		return nil, err
	}
	var s Status
	var m [4]byte
	binary.BigEndian.PutUint32(m[:], props[tpm2.TPMPTManufacturer])
	s.Manufacturer = string(m[:])
	if err := t.lockoutState(&s); err != nil {
		return nil, err
	}
	k, err := t.loadSRK()
	if err != nil {
		return nil, err
	}
	t.flush(k.handle)
	s.SRKName = k.name.Buffer
	return &s, nil
}

// properties reads TPM properties starting at first.
func (t *TPM) properties(first tpm2.TPMPT) (map[tpm2.TPMPT]uint32, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(first),
		PropertyCount: 32,
	}.Execute(t.t)
	if err != nil {
		return nil, fmt.Errorf("read the TPM's properties: %w", err)
	}
	list, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return nil, fmt.Errorf("parse the TPM's properties: %w", err)
	}
	props := make(map[tpm2.TPMPT]uint32, len(list.TPMProperty))
	for _, p := range list.TPMProperty {
		props[p.Property] = p.Value
	}
	return props, nil
}

// lockoutState fills the dictionary-attack fields of s.
func (t *TPM) lockoutState(s *Status) error {
	perm, err := t.properties(tpm2.TPMPTPermanent)
	if err != nil {
		return err
	}
	// TPMA_PERMANENT bit 9 is inLockout.
	s.InLockout = perm[tpm2.TPMPTPermanent]&(1<<9) != 0
	props, err := t.properties(tpm2.TPMPTLockoutCounter)
	if err != nil {
		return err
	}
	s.FailedTries = props[tpm2.TPMPTLockoutCounter]
	s.MaxTries = props[tpm2.TPMPTMaxAuthFail]
	s.Recovery = time.Duration(props[tpm2.TPMPTLockoutInterval]) * time.Second
	return nil
}

// explain turns a TPM's dictionary-attack refusal in err into a
// *LockoutError that says how long to wait; other errors pass unchanged.
func (t *TPM) explain(err error) error {
	if !errors.Is(err, tpm2.TPMRCLockout) {
		return err
	}
	var s Status
	if serr := t.lockoutState(&s); serr != nil {
		return &LockoutError{Err: err}
	}
	return &LockoutError{
		FailedTries: s.FailedTries,
		MaxTries:    s.MaxTries,
		Recovery:    s.Recovery,
		Err:         err,
	}
}
