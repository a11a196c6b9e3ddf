package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/google/go-tpm/tpm2"
)

// DefaultCounterIndex is the NV index of the anti-rollback counter, in the
// owner's range of NV indexes. The counter's base takes the index after it.
const DefaultCounterIndex uint32 = 0x01_00_51_41

// MaxAdvance bounds one Advance: a TPM counter moves by one per command, so
// a step of millions would take hours, and a version that far ahead is a
// mistake rather than a release.
const MaxAdvance = 4096

// advanceRef qualifies the authority's advances of the counter, as
// policyRef does its approvals: neither signature passes as the other.
var advanceRef = []byte("qapi counter advance v1")

// Counter is the anti-rollback counter: a TPM NV counter holding the lowest
// image version the box may boot (clause 6.2.3), which moves only forward
// and only by the authority's signed Advance. See the package
// documentation.
type Counter struct {
	t         *TPM
	index     tpm2.TPMHandle
	authority *ecdsa.PublicKey
	// base is the counter's value when it was defined: version 1.
	base uint64
}

// counterPublic is the NV public area of the counter at index, writable
// only through counterPolicy. written sets TPMA_NV_WRITTEN, which the TPM
// adds at the first increment and which is part of the index's name.
func counterPublic(index uint32, authority *ecdsa.PublicKey,
	written bool) (tpm2.TPMSNVPublic, error) {
	policy, err := counterPolicy(authority)
	if err != nil {
		return tpm2.TPMSNVPublic{}, err
	}
	return tpm2.TPMSNVPublic{
		NVIndex: tpm2.TPMHandle(index),
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			NT:          tpm2.TPMNTCounter,
			PolicyWrite: true,
			OwnerRead:   true,
			AuthRead:    true,
			NoDA:        true,
			Written:     written,
		},
		AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
		DataSize:   8,
	}, nil
}

// counterBranches are the two ways to increment the counter: the first
// increment, which anyone may make and which only brings a new counter
// into use, and increments the authority approved by an Advance.
func counterBranches(authority *ecdsa.PublicKey) (first, signed []byte, err error) {
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, nil, err
	}
	for _, cmd := range []tpm2.PolicyCommand{
		tpm2.PolicyNVWritten{WrittenSet: false},
		tpm2.PolicyCommandCode{Code: tpm2.TPMCCNVIncrement},
	} {
		if err := cmd.Update(calc); err != nil {
			return nil, nil, fmt.Errorf("compute the counter's policy: %w", err)
		}
	}
	first = calc.Hash().Digest
	signed, err = authorizeDigest(authority, advanceRef)
	if err != nil {
		return nil, nil, err
	}
	return first, signed, nil
}

// counterPolicy is the counter's authPolicy: TPM2_PolicyOR of the
// counterBranches.
func counterPolicy(authority *ecdsa.PublicKey) ([]byte, error) {
	or, err := counterOr(authority)
	if err != nil {
		return nil, err
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := or.Update(calc); err != nil {
		return nil, fmt.Errorf("compute the counter's policy: %w", err)
	}
	return calc.Hash().Digest, nil
}

// counterOr is the TPM2_PolicyOR that ends every increment's session.
func counterOr(authority *ecdsa.PublicKey) (tpm2.PolicyOr, error) {
	first, signed, err := counterBranches(authority)
	if err != nil {
		return tpm2.PolicyOr{}, err
	}
	return tpm2.PolicyOr{PHashList: tpm2.TPMLDigest{Digests: []tpm2.TPM2BDigest{
		{Buffer: first}, {Buffer: signed}}}}, nil
}

// counterName is the TPM name of the initialised counter at index, which
// approvals and advances refer to.
func counterName(index uint32, authority *ecdsa.PublicKey) (tpm2.TPM2BName, error) {
	if err := checkCounterIndex(index); err != nil {
		return tpm2.TPM2BName{}, err
	}
	if authority == nil {
		return tpm2.TPM2BName{}, errors.New("the anti-rollback counter needs the " +
			"authority's key, which alone may advance it")
	}
	pub, err := counterPublic(index, authority, true)
	if err != nil {
		return tpm2.TPM2BName{}, err
	}
	n, err := tpm2.NVName(&pub)
	if err != nil {
		return tpm2.TPM2BName{}, fmt.Errorf("name the counter %#x: %w", index, err)
	}
	return *n, nil
}

func checkCounterIndex(index uint32) error {
	if index>>24 != 0x01 || (index+1)>>24 != 0x01 {
		return fmt.Errorf("%#x is not an NV index (with room for the counter's base "+
			"after it)", index)
	}
	return nil
}

// basePublic is the NV public area of the counter's base at index: an
// ordinary index written once, when the counter is defined, and then
// locked until it is deleted.
func basePublic(index uint32, written, locked bool) tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{
		NVIndex: tpm2.TPMHandle(index),
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			OwnerWrite:  true,
			OwnerRead:   true,
			AuthRead:    true,
			NoDA:        true,
			WriteDefine: true,
			Written:     written,
			WriteLocked: locked,
		},
		DataSize: 8,
	}
}

// Counter opens the anti-rollback counter at NV index (DefaultCounterIndex
// if zero), which only authority's signed Advance moves, defining it on
// first use. A new counter starts at the value the TPM gives it, which
// becomes its base, version 1: a TPM starts each new counter above every
// counter it ever had, which is what keeps deleting and redefining one
// from moving it back, and which puts the base above 1 on a TPM whose
// counters ran before. The base is recorded at index+1.
func (t *TPM) Counter(index uint32, authority *ecdsa.PublicKey) (*Counter, error) {
	if index == 0 {
		index = DefaultCounterIndex
	}
	if _, err := counterName(index, authority); err != nil {
		return nil, err
	}
	c := &Counter{t: t, index: tpm2.TPMHandle(index), authority: authority}
	t.mu.Lock()
	defer t.mu.Unlock()

	pub, err := readNVPublic(t, c.index)
	if errors.Is(err, tpm2.TPMRCHandle) {
		def, derr := counterPublic(index, authority, false)
		if derr != nil {
			return nil, derr
		}
		_, err = tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner,
				Auth: tpm2.PasswordAuth(nil)},
			PublicInfo: tpm2.New2B(def),
		}.Execute(t.t)
		if err != nil {
			return nil, t.explain(fmt.Errorf("define the anti-rollback counter %#x: %w",
				index, err))
		}
		pub, err = readNVPublic(t, c.index)
	}
	if err != nil {
		return nil, fmt.Errorf("read the anti-rollback counter %#x: %w", index, err)
	}
	want, err := counterPublic(index, authority, pub.Attributes.Written)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(tpm2.Marshal(*pub), tpm2.Marshal(want)) {
		return nil, fmt.Errorf("NV index %#x holds something other than Qapı's "+
			"anti-rollback counter for this authority; choose another index or "+
			"remove it", index)
	}
	if !pub.Attributes.Written {
		if err := c.firstIncrement(); err != nil {
			return nil, err
		}
	}
	if err := c.loadBase(); err != nil {
		return nil, err
	}
	return c, nil
}

// readNVPublic reads the NV public area at index.
func readNVPublic(t *TPM, index tpm2.TPMHandle) (*tpm2.TPMSNVPublic, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t.t)
	if err != nil {
		return nil, err
	}
	return rsp.NVPublic.Contents()
}

// loadBase reads the counter's base, recording the counter's current
// value as the base when none is recorded yet: a counter defined a moment
// ago, or one whose definition stopped before its base was written.
func (c *Counter) loadBase() error {
	idx := tpm2.TPMHandle(uint32(c.index) + 1)
	fail := func(err error) error {
		return c.t.explain(fmt.Errorf("record the base of the anti-rollback counter "+
			"%#x at %#x: %w", uint32(c.index), uint32(idx), err))
	}
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	pub, err := readNVPublic(c.t, idx)
	if errors.Is(err, tpm2.TPMRCHandle) {
		_, err = tpm2.NVDefineSpace{
			AuthHandle: owner,
			PublicInfo: tpm2.New2B(basePublic(uint32(idx), false, false)),
		}.Execute(c.t.t)
		if err != nil {
			return fail(err)
		}
		pub, err = readNVPublic(c.t, idx)
	}
	if err != nil {
		return fail(err)
	}
	a := pub.Attributes
	if !bytes.Equal(tpm2.Marshal(*pub),
		tpm2.Marshal(basePublic(uint32(idx), a.Written, a.WriteLocked))) {
		return fmt.Errorf("NV index %#x holds something other than the base of Qapı's "+
			"anti-rollback counter %#x; remove it", uint32(idx), uint32(c.index))
	}
	raw, err := c.raw()
	if err != nil {
		return err
	}
	name, err := tpm2.NVName(pub)
	if err != nil {
		return fail(err)
	}
	h := tpm2.NamedHandle{Handle: idx, Name: *name}
	if !a.Written {
		_, err = tpm2.NVWrite{
			AuthHandle: owner,
			NVIndex:    h,
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: binary.BigEndian.AppendUint64(nil, raw)},
		}.Execute(c.t.t)
		if err != nil {
			return fail(err)
		}
		pub.Attributes.Written = true
		if name, err = tpm2.NVName(pub); err != nil {
			return fail(err)
		}
		h.Name = *name
	}
	if !a.WriteLocked {
		if _, err = (tpm2.NVWriteLock{AuthHandle: owner, NVIndex: h}).Execute(c.t.t); err != nil {
			return fail(err)
		}
	}
	c.base, err = readUint64(c.t, idx)
	if err != nil {
		return fail(err)
	}
	if c.base == 0 || c.base > raw {
		return fmt.Errorf("the base %d recorded at %#x does not fit the anti-rollback "+
			"counter %#x at %d; remove both indexes only if the box is to start afresh",
			c.base, uint32(idx), uint32(c.index), raw)
	}
	return nil
}

// Index returns the counter's NV index.
func (c *Counter) Index() uint32 { return uint32(c.index) }

// Base returns the counter's value at version 1: 1 on a TPM that never had
// a counter before. Approvals and advances name it (Approval.Base,
// Advance.Base), and blobs are sealed for it.
func (c *Counter) Base() uint64 { return c.base }

// handle returns the counter's index with the name the TPM reports.
func (c *Counter) handle() (tpm2.NamedHandle, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: c.index}.Execute(c.t.t)
	if err != nil {
		return tpm2.NamedHandle{}, fmt.Errorf("read the anti-rollback counter %#x: %w",
			uint32(c.index), err)
	}
	return tpm2.NamedHandle{Handle: c.index, Name: rsp.NVName}, nil
}

// firstIncrement brings a new counter into use by the policy branch that
// holds only while the counter was never written.
func (c *Counter) firstIncrement() error {
	return c.incrementWith(func(sess tpm2.Session) error {
		_, err := tpm2.PolicyNVWritten{PolicySession: sess.Handle(),
			WrittenSet: false}.Execute(c.t.t)
		if err != nil {
			return err
		}
		_, err = tpm2.PolicyCommandCode{PolicySession: sess.Handle(),
			Code: tpm2.TPMCCNVIncrement}.Execute(c.t.t)
		return err
	})
}

// incrementWith increments the counter once in a policy session that
// branch brings to one of the counter's policy branches.
func (c *Counter) incrementWith(branch func(tpm2.Session) error) error {
	fail := func(err error) error {
		return c.t.explain(fmt.Errorf("advance the anti-rollback counter %#x: %w",
			uint32(c.index), err))
	}
	h, err := c.handle()
	if err != nil {
		return err
	}
	or, err := counterOr(c.authority)
	if err != nil {
		return err
	}
	sess, closeSess, err := tpm2.PolicySession(c.t.t, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return fail(err)
	}
	defer closeSess()
	if err := branch(sess); err != nil {
		return fail(err)
	}
	or.PolicySession = sess.Handle()
	if _, err := or.Execute(c.t.t); err != nil {
		return fail(err)
	}
	_, err = tpm2.NVIncrement{
		AuthHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: sess},
		NVIndex:    h,
	}.Execute(c.t.t)
	if err != nil {
		return fail(err)
	}
	return nil
}

// readUint64 reads the 8 bytes of the NV index at idx, authorised by its
// empty password.
func readUint64(t *TPM, idx tpm2.TPMHandle) (uint64, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: idx}.Execute(t.t)
	if err != nil {
		return 0, err
	}
	read, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: idx, Name: rsp.NVName,
			Auth: tpm2.PasswordAuth(nil)},
		NVIndex: tpm2.NamedHandle{Handle: idx, Name: rsp.NVName},
		Size:    8,
	}.Execute(t.t)
	if err != nil {
		return 0, t.explain(err)
	}
	if len(read.Data.Buffer) != 8 {
		return 0, fmt.Errorf("got %d bytes, not 8", len(read.Data.Buffer))
	}
	return binary.BigEndian.Uint64(read.Data.Buffer), nil
}

// raw reads the counter's value as the TPM holds it.
func (c *Counter) raw() (uint64, error) {
	v, err := readUint64(c.t, c.index)
	if err != nil {
		return 0, fmt.Errorf("read the anti-rollback counter %#x: %w", uint32(c.index), err)
	}
	return v, nil
}

// Read returns the lowest image version the box may boot.
func (c *Counter) Read() (uint64, error) {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return c.read()
}

func (c *Counter) read() (uint64, error) {
	raw, err := c.raw()
	if err != nil {
		return 0, err
	}
	if raw < c.base {
		return 0, fmt.Errorf("the anti-rollback counter %#x reads %d, below its base %d",
			uint32(c.index), raw, c.base)
	}
	return raw - c.base + 1, nil
}

// Advance moves the counter to adv.Version, after which images older than
// that no longer boot and their approvals no longer unseal. adv must be
// signed by the counter's authority and name its index and base. Advance
// returns a *RollbackError when the version is below the counter, does
// nothing when it equals it, and refuses steps above MaxAdvance. The TPM
// checks the signature too, and moves the counter no further than the
// version, however often adv is replayed.
func (c *Counter) Advance(adv *Advance) error {
	if adv.Counter != uint32(c.index) || baseOf(adv.Base) != c.base {
		return fmt.Errorf("%w: the advance is for counter %#x with base %d, and this box's "+
			"counter %#x has base %d; ask the operator for an advance with -counter %#x "+
			"-base %d", ErrNotApproved, adv.Counter, baseOf(adv.Base), uint32(c.index),
			c.base, uint32(c.index), c.base)
	}
	if err := adv.Verify(c.authority); err != nil {
		return err
	}
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	cur, err := c.read()
	if err != nil {
		return err
	}
	if adv.Version < cur {
		return &RollbackError{Current: cur, Requested: adv.Version}
	}
	if adv.Version-cur > MaxAdvance {
		return fmt.Errorf("advance the anti-rollback counter from %d to %d: steps above %d "+
			"are refused as a likely mistake; advance in smaller steps", cur, adv.Version,
			MaxAdvance)
	}
	if adv.Version == cur {
		return nil
	}
	return c.advance(adv, adv.Version-cur)
}

// advance increments the counter steps times under adv, without the checks
// of Advance, which tests skip to see that the TPM enforces them too.
func (c *Counter) advance(adv *Advance, steps uint64) error {
	policy, digest, err := adv.signedDigest(c.authority)
	if err != nil {
		return err
	}
	key, ticket, err := c.t.verifyTicket(c.authority, digest, adv.Signature)
	if err != nil {
		return err
	}
	defer c.t.flush(key.Handle)
	nv, err := adv.policyNV(c.authority)
	if err != nil {
		return err
	}
	for range steps {
		err := c.incrementWith(func(sess tpm2.Session) error {
			_, err := tpm2.PolicyCommandCode{PolicySession: sess.Handle(),
				Code: tpm2.TPMCCNVIncrement}.Execute(c.t.t)
			if err != nil {
				return err
			}
			nv.PolicySession = sess.Handle()
			if _, err := nv.Execute(c.t.t); err != nil {
				return fmt.Errorf("%w: the counter is at the advance's version %d "+
					"already: %v", ErrNotApproved, adv.Version, err)
			}
			_, err = tpm2.PolicyAuthorize{
				PolicySession:  sess.Handle(),
				ApprovedPolicy: tpm2.TPM2BDigest{Buffer: policy},
				PolicyRef:      tpm2.TPM2BDigest{Buffer: advanceRef},
				KeySign:        key.Name,
				CheckTicket:    ticket,
			}.Execute(c.t.t)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// baseOf is the counter value of version 1 for a recorded base: zero, as
// in approvals made before bases were recorded, means 1.
func baseOf(base uint64) uint64 { return max(base, 1) }

// counterValue is the counter's value at version v for a counter with
// base.
func counterValue(base, v uint64) (uint64, error) {
	if v == 0 {
		return 0, errors.New("image versions start at 1")
	}
	b := baseOf(base)
	if v-1 > math.MaxUint64-b {
		return 0, fmt.Errorf("version %d with counter base %d overflows the counter", v, b)
	}
	return b + v - 1, nil
}

// Advance is the authority's signed order to move the anti-rollback
// counter to Version on every box whose counter has Base.
type Advance struct {
	// Counter is the NV index of the counter.
	Counter uint32 `json:"counter"`
	// Base is the counter's base (Counter.Base) on the boxes the advance
	// is for; zero means 1.
	Base uint64 `json:"base,omitempty"`
	// Version is the lowest image version the boxes may boot after it.
	Version uint64 `json:"version"`
	// Signature is the authority's ASN.1 ECDSA P-256 signature over
	// SHA-256(policy digest || "qapi counter advance v1").
	Signature []byte `json:"signature"`
}

// policyNV is the condition of every increment under a: the counter is
// below a's version.
func (a *Advance) policyNV(authority *ecdsa.PublicKey) (tpm2.PolicyNV, error) {
	target, err := counterValue(a.Base, a.Version)
	if err != nil {
		return tpm2.PolicyNV{}, fmt.Errorf("advance: %w", err)
	}
	return counterCondition(a.Counter, authority, target, tpm2.TPMEOUnsignedLT)
}

// signedDigest returns the policy a approves and what the authority signs.
func (a *Advance) signedDigest(authority *ecdsa.PublicKey) (policy, digest []byte,
	err error) {
	nv, err := a.policyNV(authority)
	if err != nil {
		return nil, nil, err
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, nil, err
	}
	for _, cmd := range []tpm2.PolicyCommand{
		tpm2.PolicyCommandCode{Code: tpm2.TPMCCNVIncrement}, nv,
	} {
		if err := cmd.Update(calc); err != nil {
			return nil, nil, fmt.Errorf("advance: compute its policy: %w", err)
		}
	}
	policy = calc.Hash().Digest
	return policy, refDigest(policy, advanceRef), nil
}

// Sign signs a with the authority's ECDSA P-256 key and sets a.Signature.
func (a *Advance) Sign(authority crypto.Signer) (err error) {
	a.Signature, err = authorise(authority, a.signedDigest, "advance")
	return err
}

// Verify reports an error wrapping ErrNotApproved unless a carries a valid
// signature by authority.
func (a *Advance) Verify(authority *ecdsa.PublicKey) error {
	ok, err := authorised(authority, a.signedDigest, a.Signature)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: the advance's signature is not by the authority the "+
			"counter belongs to; use the advance the operator signed", ErrNotApproved)
	}
	return nil
}

// MarshalAdvance encodes a as JSON.
func MarshalAdvance(a *Advance) ([]byte, error) { return json.MarshalIndent(a, "", "\t") }

// ParseAdvance decodes an advance from its JSON form.
func ParseAdvance(b []byte) (*Advance, error) {
	var a Advance
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("parse the counter advance: %w", err)
	}
	return &a, nil
}

// refDigest is what the authority signs for a policy qualified by ref: the
// aHash of TPM2_VerifySignature before TPM2_PolicyAuthorize.
func refDigest(policy, ref []byte) []byte {
	h := sha256.New()
	h.Write(policy)
	h.Write(ref)
	return h.Sum(nil)
}
