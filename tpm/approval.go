package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"

	"github.com/google/go-tpm/tpm2"
)

// policyRef qualifies the authority's approvals: TPM2_PolicyAuthorize binds
// it into the sealed object's policy, so a signature the same key makes for
// another purpose can never pass as an approval of a boot state.
var policyRef = []byte("qapi boot approval v1")

// approvalRef is the policyRef of approvals for boxes whose counter has
// base: the plain policyRef for base 1, else the base appended. Sealing
// binds it, so that an approval for another base, whose counter values
// mean other versions, never opens a box's keys.
func approvalRef(base uint64) []byte {
	if baseOf(base) == 1 {
		return policyRef
	}
	return fmt.Appendf(bytes.Clone(policyRef), " base %d", base)
}

// Approval is the authority's (the operator's) signed statement that a boot
// state may unseal the secrets sealed to it: the SHA-256 values of some
// PCRs, and optionally the image version, which ties the approval to the
// anti-rollback counter. Each image ships the approval of the PCR values it
// produces; the sealed blobs never change.
type Approval struct {
	// PCRs are the approved values, ascending by index.
	PCRs []PCRValue `json:"pcrs"`
	// Counter is the NV index of the anti-rollback counter, zero for none.
	// With a counter the approval holds only while the counter is at most
	// Version: advancing the counter past an image's version voids that
	// image's approval, so an old image cannot unseal the keys (clause
	// 6.2.3).
	Counter uint32 `json:"counter,omitempty"`
	// Base is the counter's base (Counter.Base) on the boxes the approval
	// is for; zero means 1, the base of a TPM that never had a counter
	// before. Blobs are sealed for their box's base, and only approvals
	// for that base unseal them.
	Base uint64 `json:"base,omitempty"`
	// Version is the image version the approval is for.
	Version uint64 `json:"version,omitempty"`
	// Signature is the authority's ASN.1 ECDSA P-256 signature over
	// SHA-256(policy digest || "qapi boot approval v1"), with " base N"
	// appended to the latter for a base N above 1.
	Signature []byte `json:"signature"`
}

// PolicyDigest returns the TPM policy digest a approves: TPM2_PolicyPCR of
// its PCR values, then, with a counter, TPM2_PolicyNV requiring the counter
// to be at most Version. authority is the key of the counter (which is part
// of its name); approvals without a counter ignore it.
func (a *Approval) PolicyDigest(authority *ecdsa.PublicKey) ([]byte, error) {
	pcrs, err := checkPCRs(pcrIndexes(a.PCRs))
	if err != nil {
		return nil, fmt.Errorf("approval: %w", err)
	}
	if len(pcrs) != len(a.PCRs) {
		return nil, errors.New("approval: a PCR appears twice")
	}
	for i, v := range a.PCRs {
		if v.Index != pcrs[i] {
			return nil, errors.New("approval: PCRs are not in ascending order")
		}
		if len(v.Value) != sha256.Size {
			return nil, fmt.Errorf("approval: PCR %d has %d bytes, not a SHA-256 value",
				v.Index, len(v.Value))
		}
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	pcr := tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: pcrDigest(a.PCRs)},
		Pcrs: selection(pcrs)}
	if err := pcr.Update(calc); err != nil {
		return nil, fmt.Errorf("approval: compute PolicyPCR: %w", err)
	}
	if a.Counter != 0 {
		nv, err := a.policyNV(authority)
		if err != nil {
			return nil, err
		}
		if err := nv.Update(calc); err != nil {
			return nil, fmt.Errorf("approval: compute PolicyNV: %w", err)
		}
	}
	return calc.Hash().Digest, nil
}

// policyNV is the counter condition of a: the counter's value is at most
// the one of a's version.
func (a *Approval) policyNV(authority *ecdsa.PublicKey) (tpm2.PolicyNV, error) {
	v, err := counterValue(a.Base, a.Version)
	if err != nil {
		return tpm2.PolicyNV{}, fmt.Errorf("approval: %w", err)
	}
	nv, err := counterCondition(a.Counter, authority, v, tpm2.TPMEOUnsignedLE)
	if err != nil {
		return tpm2.PolicyNV{}, fmt.Errorf("approval: %w", err)
	}
	return nv, nil
}

// counterCondition is TPM2_PolicyNV comparing the counter at index, of
// authority, with operand by op (counter op operand).
func counterCondition(index uint32, authority *ecdsa.PublicKey, operand uint64,
	op tpm2.TPMEO) (tpm2.PolicyNV, error) {
	name, err := counterName(index, authority)
	if err != nil {
		return tpm2.PolicyNV{}, err
	}
	return tpm2.PolicyNV{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Name: name,
			Auth: tpm2.PasswordAuth(nil)},
		NVIndex:   tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name},
		OperandB:  tpm2.TPM2BOperand{Buffer: binary.BigEndian.AppendUint64(nil, operand)},
		Offset:    0,
		Operation: op,
	}, nil
}

// signedDigest returns the policy a approves and what the authority signs.
func (a *Approval) signedDigest(authority *ecdsa.PublicKey) ([]byte, []byte, error) {
	policy, err := a.PolicyDigest(authority)
	if err != nil {
		return nil, nil, err
	}
	return policy, refDigest(policy, approvalRef(a.Base)), nil
}

// signerPublic returns the ECDSA P-256 public key of an authority's
// signer.
func signerPublic(authority crypto.Signer) (*ecdsa.PublicKey, error) {
	pub, ok := authority.Public().(*ecdsa.PublicKey)
	if _, err := authorityPublic(authority.Public()); err != nil || !ok {
		return nil, fmt.Errorf("the authority key must be ECDSA P-256, not %T",
			authority.Public())
	}
	return pub, nil
}

// digestFunc returns a policy and the digest of it an authority signs.
type digestFunc func(authority *ecdsa.PublicKey) (policy, digest []byte, err error)

// authorise signs, with the authority's ECDSA P-256 key, the digest that
// digest computes for it; what names the document in errors.
func authorise(authority crypto.Signer, digest digestFunc, what string) ([]byte, error) {
	pub, err := signerPublic(authority)
	if err != nil {
		return nil, err
	}
	_, d, err := digest(pub)
	if err != nil {
		return nil, err
	}
	sig, err := authority.Sign(rand.Reader, d, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sign the %s: %w", what, err)
	}
	return sig, nil
}

// authorised reports whether sig is authority's signature over the digest
// that digest computes for it.
func authorised(authority *ecdsa.PublicKey, digest digestFunc, sig []byte) (bool, error) {
	_, d, err := digest(authority)
	if err != nil {
		return false, err
	}
	return ecdsa.VerifyASN1(authority, d, sig), nil
}

// Sign signs a with the authority's ECDSA P-256 key and sets a.Signature.
func (a *Approval) Sign(authority crypto.Signer) (err error) {
	a.Signature, err = authorise(authority, a.signedDigest, "approval")
	return err
}

// Verify reports an error wrapping ErrNotApproved unless a carries a valid
// signature by authority.
func (a *Approval) Verify(authority *ecdsa.PublicKey) error {
	ok, err := authorised(authority, a.signedDigest, a.Signature)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: the approval's signature is not by the authority the "+
			"secret was sealed to; install the approval the operator signed for this image",
			ErrNotApproved)
	}
	return nil
}

// MarshalApproval encodes a as JSON, the form images ship it in.
func MarshalApproval(a *Approval) ([]byte, error) { return json.MarshalIndent(a, "", "\t") }

// ParseApproval decodes an approval from its JSON form.
func ParseApproval(b []byte) (*Approval, error) {
	var a Approval
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("parse the approval: %w", err)
	}
	return &a, nil
}

// ReadApprovalFile reads the approval an image ships, in its JSON form.
func ReadApprovalFile(path string) (*Approval, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the approval of this boot: %w", err)
	}
	a, err := ParseApproval(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// tpmSignature converts an ASN.1 ECDSA signature to the TPM's form.
func tpmSignature(sig []byte) (tpm2.TPMTSignature, error) {
	var rs struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(sig, &rs)
	if err != nil || len(rest) != 0 || rs.R == nil || rs.S == nil {
		return tpm2.TPMTSignature{}, fmt.Errorf("%w: the approval's signature is not "+
			"an ASN.1 ECDSA signature", ErrNotApproved)
	}
	return tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgECDSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       tpm2.TPMAlgSHA256,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: rs.R.FillBytes(make([]byte, 32))},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: rs.S.FillBytes(make([]byte, 32))},
		}),
	}, nil
}

// authorityPublic is the TPM public area of the authority's key, as
// TPM2_LoadExternal loads it; its name goes into the sealed policy.
func authorityPublic(pub crypto.PublicKey) (tpm2.TPMTPublic, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return tpm2.TPMTPublic{}, fmt.Errorf("the authority key must be ECDSA P-256, not %T",
			pub)
	}
	ecdh, err := k.ECDH()
	if err != nil {
		return tpm2.TPMTPublic{}, fmt.Errorf("the authority key: %w", err)
	}
	raw := ecdh.Bytes() // 0x04 || X || Y
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			SignEncrypt:  true,
			UserWithAuth: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme: tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA,
					&tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]},
			Y: tpm2.TPM2BECCParameter{Buffer: raw[33:65]},
		}),
	}, nil
}

// authorizePolicy is the policy of an object sealed to authority on a box
// whose counter has base: TPM2_PolicyAuthorize by the authority's key with
// approvalRef(base).
func authorizePolicy(authority *ecdsa.PublicKey, base uint64) ([]byte, error) {
	return authorizeDigest(authority, approvalRef(base))
}

// authorizeDigest is the policy digest of TPM2_PolicyAuthorize by the
// authority's key with ref.
func authorizeDigest(authority *ecdsa.PublicKey, ref []byte) ([]byte, error) {
	pub, err := authorityPublic(authority)
	if err != nil {
		return nil, err
	}
	name, err := tpm2.ObjectName(&pub)
	if err != nil {
		return nil, fmt.Errorf("name the authority key: %w", err)
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	cmd := tpm2.PolicyAuthorize{
		KeySign:   *name,
		PolicyRef: tpm2.TPM2BDigest{Buffer: ref},
	}
	if err := cmd.Update(calc); err != nil {
		return nil, fmt.Errorf("compute PolicyAuthorize: %w", err)
	}
	return calc.Hash().Digest, nil
}
