package tpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// DefaultPCRs is the PCR set sealing uses unless told otherwise: PCR 7, the
// Secure Boot state (whether it is on, and which keys the firmware trusts),
// which stays the same across updates signed under the same keys.
var DefaultPCRs = []int{7}

// maxPCR bounds PCR indexes to the 24 of a PC Client TPM.
const maxPCR = 23

// PCRValue is one PCR of the SHA-256 bank and its value. In JSON the value
// is hexadecimal, as tools that read PCRs print it.
type PCRValue struct {
	Index int
	Value []byte
}

type pcrJSON struct {
	Index int    `json:"index"`
	Value string `json:"sha256"`
}

// MarshalJSON encodes v as {"index": 7, "sha256": "hex"}.
func (v PCRValue) MarshalJSON() ([]byte, error) {
	return json.Marshal(pcrJSON{v.Index, hex.EncodeToString(v.Value)})
}

// UnmarshalJSON decodes the form MarshalJSON writes.
func (v *PCRValue) UnmarshalJSON(b []byte) error {
	var j pcrJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	val, err := hex.DecodeString(j.Value)
	if err != nil {
		return fmt.Errorf("PCR %d: the value is not hexadecimal: %w", j.Index, err)
	}
	*v = PCRValue{Index: j.Index, Value: val}
	return nil
}

// checkPCRs returns pcrs sorted and without duplicates, or an error naming
// an index out of range.
func checkPCRs(pcrs []int) ([]int, error) {
	if len(pcrs) == 0 {
		return nil, fmt.Errorf("no PCRs selected: name at least one (PCR 7 is the usual)")
	}
	s := slices.Clone(pcrs)
	slices.Sort(s)
	s = slices.Compact(s)
	for _, p := range s {
		if p < 0 || p > maxPCR {
			return nil, fmt.Errorf("PCR %d does not exist: a TPM has PCRs 0 to %d", p, maxPCR)
		}
	}
	return s, nil
}

// selection is the TPM's SHA-256 bank selection of pcrs.
func selection(pcrs []int) tpm2.TPMLPCRSelection {
	u := make([]uint, len(pcrs))
	for i, p := range pcrs {
		u[i] = uint(p)
	}
	return tpm2.TPMLPCRSelection{
		PCRSelections: []tpm2.TPMSPCRSelection{{
			Hash:      tpm2.TPMAlgSHA256,
			PCRSelect: tpm2.PCClientCompatible.PCRs(u...),
		}},
	}
}

// ReadPCRs reads the SHA-256 values of pcrs, in ascending order.
func (t *TPM) ReadPCRs(pcrs []int) ([]PCRValue, error) {
	pcrs, err := checkPCRs(pcrs)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.readPCRs(pcrs)
}

// readPCRs reads sorted, distinct pcrs. A TPM answers at most eight values
// per TPM2_PCR_Read, so it asks until every index is in.
func (t *TPM) readPCRs(pcrs []int) ([]PCRValue, error) {
	got := make(map[int][]byte, len(pcrs))
	for len(got) < len(pcrs) {
		var want []int
		for _, p := range pcrs {
			if _, ok := got[p]; !ok {
				want = append(want, p)
			}
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: selection(want)}.Execute(t.t)
		if err != nil {
			return nil, fmt.Errorf("read PCRs %v: %w", want, err)
		}
		var out []int
		for _, s := range rsp.PCRSelectionOut.PCRSelections {
			if s.Hash != tpm2.TPMAlgSHA256 {
				continue
			}
			for i, b := range s.PCRSelect {
				for bit := range 8 {
					if b&(1<<bit) != 0 {
						out = append(out, i*8+bit)
					}
				}
			}
		}
		if len(out) == 0 || len(out) != len(rsp.PCRValues.Digests) {
			return nil, fmt.Errorf("read PCRs %v: the TPM has no SHA-256 bank for them; "+
				"enable the SHA-256 PCR bank in the firmware setup", want)
		}
		for i, p := range out {
			got[p] = rsp.PCRValues.Digests[i].Buffer
		}
	}
	vals := make([]PCRValue, len(pcrs))
	for i, p := range pcrs {
		vals[i] = PCRValue{Index: p, Value: got[p]}
	}
	return vals, nil
}

// pcrDigest is the digest TPM2_PolicyPCR compares: SHA-256 over the values
// concatenated in ascending index order. vals must be sorted.
func pcrDigest(vals []PCRValue) []byte {
	h := sha256.New()
	for _, v := range vals {
		h.Write(v.Value)
	}
	return h.Sum(nil)
}

// pcrIndexes returns the indexes of vals.
func pcrIndexes(vals []PCRValue) []int {
	idx := make([]int, len(vals))
	for i, v := range vals {
		idx[i] = v.Index
	}
	return idx
}

// comparePCRs returns a *PCRMismatchError naming every index whose current
// value differs from expected, or nil when all match. Both are sorted by
// index over the same set.
func comparePCRs(expected, current []PCRValue, approved bool) error {
	e := &PCRMismatchError{
		Expected: map[int][]byte{},
		Current:  map[int][]byte{},
		Approved: approved,
	}
	for i, x := range expected {
		if i >= len(current) || current[i].Index != x.Index {
			return fmt.Errorf("compare PCRs: read %v, expected %v",
				pcrIndexes(current), pcrIndexes(expected))
		}
		if !bytes.Equal(x.Value, current[i].Value) {
			e.PCRs = append(e.PCRs, x.Index)
			e.Expected[x.Index] = x.Value
			e.Current[x.Index] = current[i].Value
		}
	}
	if len(e.PCRs) == 0 {
		return nil
	}
	return e
}

// ExtendPCR extends PCR index of every bank with the SHA-256 digest d, as a
// boot component does when it measures the next one. The appliance itself
// never needs it; diagnostics and tests do.
func (t *TPM) ExtendPCR(index int, d [sha256.Size]byte) error {
	if _, err := checkPCRs([]int{index}); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{
			Handle: tpm2.TPMHandle(index),
			Auth:   tpm2.PasswordAuth(nil),
		},
		Digests: tpm2.TPMLDigestValues{
			Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: d[:]}},
		},
	}.Execute(t.t)
	if err != nil {
		return fmt.Errorf("extend PCR %d: %w", index, err)
	}
	return nil
}
