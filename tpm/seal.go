package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// MaxSecret is the largest secret Seal takes: a TPM seals at most 128
// bytes in one object; larger data belongs encrypted under a sealed key.
const MaxSecret = 128

// SealOptions say what may unseal a secret.
type SealOptions struct {
	// PCRs selects the SHA-256 PCRs a blob without an Authority is sealed
	// to, at their current values; nil means DefaultPCRs.
	PCRs []int
	// Authority, when set, seals to TPM2_PolicyAuthorize by this ECDSA
	// P-256 key instead: the blob unseals in any boot state the authority
	// approved (see Approval), and PCRs is ignored.
	Authority *ecdsa.PublicKey
	// Base is the anti-rollback counter's base on this TPM (Counter.Base;
	// zero means 1). A blob sealed to an authority unseals only with
	// approvals for the same base.
	Base uint64
}

// Seal seals secret (at most MaxSecret bytes) under the storage root key.
// The secret crosses the bus encrypted to a session salted to the storage
// root key (clause 6.2.3).
func (t *TPM) Seal(secret []byte, opts SealOptions) (*Blob, error) {
	if len(secret) == 0 || len(secret) > MaxSecret {
		return nil, fmt.Errorf("seal: a secret has 1 to %d bytes, not %d", MaxSecret,
			len(secret))
	}
	t.mu.Lock()
	defer t.mu.Unlock()

	b := &Blob{Format: blobFormat}
	if opts.Authority != nil {
		policy, err := authorizePolicy(opts.Authority, opts.Base)
		if err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
		b.Base = opts.Base
		der, err := x509.MarshalPKIXPublicKey(opts.Authority)
		if err != nil {
			return nil, fmt.Errorf("seal: encode the authority key: %w", err)
		}
		b.Policy, b.Authority = policy, der
	} else {
		pcrs := opts.PCRs
		if pcrs == nil {
			pcrs = DefaultPCRs
		}
		pcrs, err := checkPCRs(pcrs)
		if err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
		b.PCRs, err = t.readPCRs(pcrs)
		if err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
		calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
		if err != nil {
			return nil, err
		}
		cmd := tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: pcrDigest(b.PCRs)},
			Pcrs: selection(pcrs)}
		if err := cmd.Update(calc); err != nil {
			return nil, fmt.Errorf("seal: compute PolicyPCR: %w", err)
		}
		b.Policy = calc.Hash().Digest
	}

	k, err := t.loadSRK()
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	defer t.flush(k.handle)
	b.SRKName = k.name.Buffer

	// The object is usable only through its policy (userWithAuth clear)
	// and has no password, so dictionary-attack lockout never blocks it.
	tmpl := tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:    true,
			FixedParent: true,
			NoDA:        true,
		},
		AuthPolicy: tpm2.TPM2BDigest{Buffer: b.Policy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash,
			&tpm2.TPMSKeyedHashParms{Scheme: tpm2.TPMTKeyedHashScheme{
				Scheme: tpm2.TPMAlgNull}}),
	}
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{
			Handle: k.handle,
			Name:   k.name,
			Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16,
				saltedSession(k, encryptIn)...),
		},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
		}},
		InPublic: tpm2.New2B(tmpl),
	}.Execute(t.t)
	if err != nil {
		return nil, t.explain(fmt.Errorf("seal: create the sealed object: %w", err))
	}
	b.Public = tpm2.Marshal(rsp.OutPublic)
	b.Private = tpm2.Marshal(rsp.OutPrivate)
	return b, nil
}

// Unseal returns the secret of b. A blob sealed to an authority needs the
// authority's approval of the current boot state; one sealed to PCRs takes
// nil. Before asking the TPM it checks what it can explain: a blob of
// another TPM gives an *OtherTPMError, PCRs other than the expected ones a
// *PCRMismatchError naming them, an approval not by the authority an error
// wrapping ErrNotApproved. The secret crosses the bus encrypted to a
// session salted to the storage root key.
func (t *TPM) Unseal(b *Blob, a *Approval) ([]byte, error) {
	authority, err := b.authority()
	if err != nil {
		return nil, err
	}
	if authority != nil {
		if a == nil {
			return nil, fmt.Errorf("unseal: %w: the secret is sealed to an authority "+
				"and no approval of this boot state was given", ErrNotApproved)
		}
		if baseOf(a.Base) != baseOf(b.Base) {
			return nil, fmt.Errorf("unseal: %w: the approval is for boxes whose "+
				"anti-rollback counter has base %d, and this box's keys were sealed for "+
				"base %d; install the operator's approval for base %d", ErrNotApproved,
				baseOf(a.Base), baseOf(b.Base), baseOf(b.Base))
		}
		if err := a.Verify(authority); err != nil {
			return nil, fmt.Errorf("unseal: %w", err)
		}
	}
	return t.unseal(b, authority, a)
}

// unseal runs the TPM side of Unseal after the checks of the signature,
// which tests skip to see that the TPM enforces them too.
func (t *TPM) unseal(b *Blob, authority *ecdsa.PublicKey, a *Approval) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()

	k, err := t.loadSRK()
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	defer t.flush(k.handle)
	if !bytes.Equal(k.name.Buffer, b.SRKName) {
		return nil, &OtherTPMError{Sealed: b.SRKName, Current: k.name.Buffer}
	}

	expected, approved := b.PCRs, false
	if authority != nil {
		expected, approved = a.PCRs, true
	}
	if len(expected) == 0 {
		return nil, errors.New("unseal: the blob names no PCRs and no authority")
	}
	if err := t.checkPCRs(expected, approved); err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}

	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](b.Public)
	if err != nil {
		return nil, fmt.Errorf("unseal: parse the sealed object's public area: %w", err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](b.Private)
	if err != nil {
		return nil, fmt.Errorf("unseal: parse the sealed object's private area: %w", err)
	}
	obj, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: k.handle, Name: k.name,
			Auth: tpm2.PasswordAuth(nil)},
		InPrivate: *priv,
		InPublic:  *pub,
	}.Execute(t.t)
	if err != nil {
		return nil, t.explain(fmt.Errorf("unseal: load the sealed object: %w", err))
	}
	defer t.flush(obj.ObjectHandle)

	sess, closeSess, err := tpm2.PolicySession(t.t, tpm2.TPMAlgSHA256, 16,
		saltedSession(k, encryptOut)...)
	if err != nil {
		return nil, t.explain(fmt.Errorf("unseal: start the policy session: %w", err))
	}
	defer closeSess()

	_, err = tpm2.PolicyPCR{
		PolicySession: sess.Handle(),
		PcrDigest:     tpm2.TPM2BDigest{Buffer: pcrDigest(expected)},
		Pcrs:          selection(pcrIndexes(expected)),
	}.Execute(t.t)
	if err != nil {
		return nil, t.policyFailure("PolicyPCR", err, expected, approved)
	}
	if authority != nil {
		if err := t.policyAuthorize(sess, authority, a); err != nil {
			return nil, t.policyFailure("PolicyAuthorize", err, expected, approved)
		}
	}

	rsp, err := tpm2.Unseal{
		ItemHandle: tpm2.AuthHandle{Handle: obj.ObjectHandle, Name: obj.Name, Auth: sess},
	}.Execute(t.t)
	if err != nil {
		return nil, t.policyFailure("Unseal", err, expected, approved)
	}
	return rsp.OutData.Buffer, nil
}

// policyAuthorize runs the approval's counter condition, then has the TPM
// check the authority's signature and replace the session's policy digest
// with the authorised one.
func (t *TPM) policyAuthorize(sess tpm2.Session, authority *ecdsa.PublicKey,
	a *Approval) error {
	if a.Counter != 0 {
		cmd, err := a.policyNV(authority)
		if err != nil {
			return err
		}
		cmd.PolicySession = sess.Handle()
		if _, err := cmd.Execute(t.t); err != nil {
			if errors.Is(err, tpm2.TPMRCPolicy) || errors.Is(err, tpm2.TPMRCHandle) {
				return a.voided(t, err)
			}
			return fmt.Errorf("PolicyNV: %w", err)
		}
	}

	policy, digest, err := a.signedDigest(authority)
	if err != nil {
		return err
	}
	key, ticket, err := t.verifyTicket(authority, digest, a.Signature)
	if err != nil {
		return err
	}
	defer t.flush(key.Handle)
	_, err = tpm2.PolicyAuthorize{
		PolicySession:  sess.Handle(),
		ApprovedPolicy: tpm2.TPM2BDigest{Buffer: policy},
		PolicyRef:      tpm2.TPM2BDigest{Buffer: approvalRef(a.Base)},
		KeySign:        key.Name,
		CheckTicket:    ticket,
	}.Execute(t.t)
	if err != nil {
		return fmt.Errorf("PolicyAuthorize: %w", err)
	}
	return nil
}

// verifyTicket loads the authority's key and has the TPM verify sig over
// digest, returning the loaded key, which the caller flushes, and the
// ticket TPM2_PolicyAuthorize takes.
func (t *TPM) verifyTicket(authority *ecdsa.PublicKey, digest,
	sig []byte) (tpm2.NamedHandle, tpm2.TPMTTKVerified, error) {
	tsig, err := tpmSignature(sig)
	if err != nil {
		return tpm2.NamedHandle{}, tpm2.TPMTTKVerified{}, err
	}
	pub, err := authorityPublic(authority)
	if err != nil {
		return tpm2.NamedHandle{}, tpm2.TPMTTKVerified{}, err
	}
	// The owner hierarchy, not the null one: only a key of a real hierarchy
	// gets a verification ticket TPM2_PolicyAuthorize accepts.
	key, err := tpm2.LoadExternal{
		InPublic:  tpm2.New2B(pub),
		Hierarchy: tpm2.TPMRHOwner,
	}.Execute(t.t)
	if err != nil {
		return tpm2.NamedHandle{}, tpm2.TPMTTKVerified{},
			fmt.Errorf("load the authority key: %w", err)
	}
	h := tpm2.NamedHandle{Handle: key.ObjectHandle, Name: key.Name}
	ver, err := tpm2.VerifySignature{
		KeyHandle: h,
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		Signature: tsig,
	}.Execute(t.t)
	if err != nil {
		t.flush(key.ObjectHandle)
		return tpm2.NamedHandle{}, tpm2.TPMTTKVerified{}, fmt.Errorf("%w: the TPM rejects "+
			"the authority's signature: %v", ErrNotApproved, err)
	}
	return h, ver.Validation, nil
}

// voided explains the TPM's refusal of a's counter condition: the counter
// is past a's version (saying where it is, so that the operator can tell
// an old image from a counter of another base), or it is missing.
func (a *Approval) voided(t *TPM, err error) error {
	raw, rerr := readUint64(t, tpm2.TPMHandle(a.Counter))
	base, berr := readUint64(t, tpm2.TPMHandle(a.Counter+1))
	if rerr != nil || berr != nil || base == 0 || raw < base {
		return fmt.Errorf("%w: the approval is for version %d and needs the anti-rollback "+
			"counter %#x, which cannot be read: %v (%v)", ErrNotApproved, a.Version,
			a.Counter, errors.Join(rerr, berr), err)
	}
	v := raw - base + 1
	return fmt.Errorf("%w: the approval is for version %d, and the anti-rollback "+
		"counter %#x is at %d: this box boots version %d or later only: %v",
		ErrNotApproved, a.Version, a.Counter, v, v, err)
}

// checkPCRs compares the current PCR values with expected.
func (t *TPM) checkPCRs(expected []PCRValue, approved bool) error {
	pcrs, err := checkPCRs(pcrIndexes(expected))
	if err != nil {
		return err
	}
	current, err := t.readPCRs(pcrs)
	if err != nil {
		return err
	}
	return comparePCRs(expected, current, approved)
}

// policyFailure explains a TPM's refusal during unsealing: a PCR that
// changed since the check before it (named), a lockout, or else the TPM's
// error.
func (t *TPM) policyFailure(step string, err error, expected []PCRValue,
	approved bool) error {
	if errors.Is(err, ErrNotApproved) {
		return fmt.Errorf("unseal: %w", err)
	}
	if perr := t.checkPCRs(expected, approved); perr != nil {
		return fmt.Errorf("unseal: %w", perr)
	}
	return t.explain(fmt.Errorf("unseal: %s: %w", step, err))
}
