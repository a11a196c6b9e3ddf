package tpm

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. Each typed error below matches its sentinel with
// errors.Is, so a caller that only branches needs no type assertion.
var (
	// ErrNoTPM: no TPM device could be opened.
	ErrNoTPM = errors.New("no TPM")
	// ErrLockout: the TPM is in dictionary-attack lockout.
	ErrLockout = errors.New("TPM in dictionary-attack lockout")
	// ErrPCRMismatch: the PCRs differ from what the sealed policy expects.
	ErrPCRMismatch = errors.New("PCRs differ from the sealed policy")
	// ErrOtherTPM: the blob was sealed by another TPM (or before a TPM
	// clear).
	ErrOtherTPM = errors.New("sealed by another TPM")
	// ErrRollback: the anti-rollback counter refused to move back.
	ErrRollback = errors.New("anti-rollback counter refuses to move back")
	// ErrNotApproved: the approval is missing, or not signed by the
	// authority the blob was sealed to.
	ErrNotApproved = errors.New("boot state not approved by the authority")
	// ErrNoEKCertificate: the TPM holds no endorsement key certificate, so
	// CheckEndorsement cannot check it.
	ErrNoEKCertificate = errors.New("no endorsement key certificate in the TPM")
	// ErrEndorsement: the storage root key failed the check against the
	// endorsement key certificate.
	ErrEndorsement = errors.New("TPM endorsement check failed")
	// ErrDevMode: OpenStore was asked for development mode, which this
	// package does not implement; use keys.FileStore.
	ErrDevMode = errors.New("development mode: keys are not sealed by a TPM, use keys.FileStore")
)

// NoTPMError reports that no TPM device could be opened.
type NoTPMError struct {
	// Tried lists the device paths tried, in order.
	Tried []string
	// Errs holds the error of each path of Tried.
	Errs []error
}

// Error says what failed and what to do.
func (e *NoTPMError) Error() string {
	var b strings.Builder
	b.WriteString("no TPM 2.0 found (tried ")
	for i, p := range e.Tried {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p)
		switch {
		case i >= len(e.Errs) || e.Errs[i] == nil:
		case errors.Is(e.Errs[i], fs.ErrNotExist):
			b.WriteString(": missing")
		default:
			fmt.Fprintf(&b, ": %v", e.Errs[i])
		}
	}
	b.WriteString("): enable the TPM in the firmware setup, or run in development mode")
	return b.String()
}

// Is reports whether target is ErrNoTPM.
func (e *NoTPMError) Is(target error) bool { return target == ErrNoTPM }

// Unwrap returns the errors of the paths tried.
func (e *NoTPMError) Unwrap() []error { return e.Errs }

// LockoutError reports that the TPM refused an authorisation because it is
// in dictionary-attack lockout after too many wrong passwords.
type LockoutError struct {
	// FailedTries and MaxTries are the TPM's lockout counter and its limit.
	FailedTries, MaxTries uint32
	// Recovery is how long the TPM takes to forgive one failed try; zero
	// when unknown or when only the lockout authorisation can clear it.
	Recovery time.Duration
	// Err is the TPM's response.
	Err error
}

// Error says what failed and what to do.
func (e *LockoutError) Error() string {
	wait := "until the lockout authorisation clears it"
	if e.Recovery > 0 {
		wait = e.Recovery.String() + " for the TPM to forgive one failed try " +
			"(it counts only while powered on)"
	}
	return fmt.Sprintf("TPM is in dictionary-attack lockout after %d of %d failed tries: "+
		"wait %s, or clear the lockout with the lockout authorisation: %v",
		e.FailedTries, e.MaxTries, wait, e.Err)
}

// Is reports whether target is ErrLockout.
func (e *LockoutError) Is(target error) bool { return target == ErrLockout }

// Unwrap returns the TPM's response.
func (e *LockoutError) Unwrap() error { return e.Err }

// PCRMismatchError reports which PCRs differ from the values the sealed
// policy (or the approval for this boot) expects.
type PCRMismatchError struct {
	// PCRs are the indexes that differ, ascending.
	PCRs []int
	// Expected and Current are the SHA-256 values of each index of PCRs.
	Expected, Current map[int][]byte
	// Approved is true when the expected values come from an authority's
	// approval rather than from the blob itself.
	Approved bool
}

// Error says what failed and what to do.
func (e *PCRMismatchError) Error() string {
	idx := make([]string, len(e.PCRs))
	for i, p := range e.PCRs {
		idx[i] = strconv.Itoa(p)
	}
	what := "the sealed policy"
	todo := "boot the image the secret was sealed under"
	if e.Approved {
		what = "the approval for this boot"
		todo = "boot the approved image, or install the authority's approval for this one"
	}
	noun := "PCR"
	if len(idx) > 1 {
		noun = "PCRs"
	}
	return fmt.Sprintf("%s %s differ from %s (the measured boot chain changed): %s",
		noun, strings.Join(idx, ", "), what, todo)
}

// Is reports whether target is ErrPCRMismatch.
func (e *PCRMismatchError) Is(target error) bool { return target == ErrPCRMismatch }

// OtherTPMError reports that a blob was sealed under a storage root key this
// TPM does not have: the disk moved to another machine, or this TPM was
// cleared.
type OtherTPMError struct {
	// Sealed is the storage root key name recorded in the blob; Current is
	// this TPM's.
	Sealed, Current []byte
}

// Error says what failed and what to do.
func (e *OtherTPMError) Error() string {
	return fmt.Sprintf("sealed by another TPM (storage root key %s, this TPM has %s): "+
		"the disk was moved or the TPM was cleared; generate new keys and register them",
		shortName(e.Sealed), shortName(e.Current))
}

// Is reports whether target is ErrOtherTPM.
func (e *OtherTPMError) Is(target error) bool { return target == ErrOtherTPM }

func shortName(n []byte) string {
	s := hex.EncodeToString(n)
	if len(s) > 20 {
		s = s[:20] + "…"
	}
	return s
}

// RollbackError reports an attempt to move the anti-rollback counter back.
type RollbackError struct {
	Current, Requested uint64
}

// Error says what failed and what to do.
func (e *RollbackError) Error() string {
	return fmt.Sprintf("anti-rollback counter is at %d and refuses to move back to %d: "+
		"this box no longer accepts images older than version %d",
		e.Current, e.Requested, e.Current)
}

// Is reports whether target is ErrRollback.
func (e *RollbackError) Is(target error) bool { return target == ErrRollback }

var (
	_ error = &NoTPMError{}
	_ error = &LockoutError{}
	_ error = &PCRMismatchError{}
	_ error = &OtherTPMError{}
	_ error = &RollbackError{}
)
