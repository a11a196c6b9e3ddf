// Package tpm keeps the security server's keys sealed by the box's TPM 2.0
// and holds the anti-rollback counter (clauses 2.3, 6.2.3): a disk moved to
// another machine, or booted into another system, yields no key.
//
// Most callers want OpenStore, the keys.Store of the appliance. Open
// connects to the TPM device (/dev/tpmrm0, else /dev/tpm0), or to a TPM
// emulator's Unix socket (swtpm) in development; New wraps any go-tpm
// transport, such as a simulator in tests. TPM.Seal and TPM.Unseal seal a
// secret of up to 128 bytes; TPM.Counter opens the counter, which only the
// operator's signed Advance moves. The package is pure Go: the TPM
// simulator is linked into its tests only.
//
// # Keys
//
// The signing and authentication keys (ECDSA P-256) and the message-log
// secret are generated in software on the box, and only their sealed form
// is written to disk: one blob file per purpose. Each is unsealed once,
// when first asked for, and then held in memory. Keys created inside the
// TPM would never leave it, but a discrete TPM takes tens of milliseconds
// per ECDSA signature, one at a time: too slow for the 60 requests per
// second of clause 5.4, each of which needs a signature and often a TLS
// handshake. The cost of the choice is that the keys sit in the server
// process's memory while it runs, where a memory disclosure would reveal
// them. A P-256 private key is a 32-byte scalar, well inside the 128 bytes
// one sealed object holds.
//
// A blob that exists but does not unseal is reported, never replaced: the
// certificate of its key is registered with the certification centre.
//
// # The policy choice
//
// A secret sealed to PCR values opens only while the PCRs hold those
// values, and an update changes what is measured at boot. Of the two ways
// around that, this package implements TPM2_PolicyAuthorize: a secret is
// sealed to the operator's key (the authority) instead of to values, and
// each image ships an Approval, the authority's signature over the policy
// digest of the PCR values that image produces. At unseal the TPM checks
// the PCRs against the approval and the approval's signature against the
// key in the sealed policy. The sealed blobs never change, so no update,
// fallback to the other slot, or power loss in the middle of one can strand
// the keys, and a box that boots an image nobody approved opens nothing.
//
// The other way, resealing to predicted values before the reboot into a new
// slot, would have needed the updater to compute the new slot's PCR values
// exactly (firmware, boot loader and kernel measurements of this machine),
// to reseal every secret for both slots at every update (a PolicyOR of the
// two), and to do so while the keys are unsealed in the running system:
// a wrong prediction or an interrupted reseal locks the keys out, with the
// operator far away.
//
// Without an authority (SealOptions.Authority nil) Seal uses a plain
// TPM2_PolicyPCR of the current values, which suits a box whose measured
// boot never changes and diagnostics.
//
// # Rollback
//
// An approval stays valid forever, so an old image with a known flaw would
// still unseal the keys. An approval may therefore name the anti-rollback
// counter and the image's version: its policy then also requires, by
// TPM2_PolicyNV, that the counter be at most that version. Once an update
// is committed, the operator's signed Advance moves the counter to the new
// version, and every older image's approval stops unsealing. Until then
// the old slot still opens the keys, as a fallback must.
//
// # The counter
//
// The counter is an NV index of the TPM's counter type (TPM_NT_COUNTER,
// default index 0x01005141) holding the lowest image version the box may
// boot. The TPM moves such a counter only up, by one per TPM2_NV_Increment,
// and starts a new counter above every value any counter of that TPM ever
// held, so even deleting and redefining it cannot lower it. An ordinary NV
// index checked in software was the alternative; anyone with the owner
// authorisation could then write it back. The price of the counter type:
// it moves one step per command, so image versions are release sequence
// numbers (1, 2, 3, ...), not dates, and Counter.Advance refuses steps
// above MaxAdvance and, with a *RollbackError, steps back.
//
// The counter belongs to the operator: its authorisation is its own
// policy, not the owner's (which is empty on the box, so root holds it),
// and that policy is TPM2_PolicyOR of two branches. The first allows one
// TPM2_NV_Increment while the index was never written (TPM2_PolicyNvWritten),
// which is how a new counter comes into use; the second is
// TPM2_PolicyAuthorize by the operator's key with its own policyRef ("qapi
// counter advance v1"), and an Advance is the operator's signature over
// TPM2_PolicyCommandCode(NV_Increment) and TPM2_PolicyNV(counter < the
// value of the advance's version). So only the operator's advance moves
// the counter, one step per use, and never past its version, however often
// it is replayed. Since the operator's key is part of the counter's policy,
// and so of its name, Counter and the approvals' policies need that key.
// Root can still delete the counter and define it again, which brings it
// back only above every value it held: a refusal of service, like deleting
// the blobs, never a rollback.
//
// # Counter base
//
// A TPM whose counters ran before (another program's counter, deleted)
// starts a new counter above 1, at its base. Versions count from the base
// (version = value - base + 1), and the base is recorded at the NV index
// after the counter, written once and write-locked. The TPM cannot add:
// TPM2_PolicyNV compares an index with a constant from the signed policy,
// and no policy command compares with the sum of a constant and another
// index, so an approval that holds for every base cannot be written. An
// approval and an advance therefore name the base (Approval.Base,
// Advance.Base; 1, the base of a TPM that never had a counter, is the
// default) and compare the counter with base + version - 1. What makes
// that sound is the seal: a blob is sealed for its box's base, with the
// base appended to the approvals' policyRef ("qapi boot approval v1 base
// N"), so an approval for another base, whose counter values mean other
// versions, is refused by the TPM. Recording the base in software only
// would not do: root could claim another base. The record at the NV index
// serves Read and the first seal; rewriting it cannot reopen keys already
// sealed. The TPM does not check an advance's base, since an advance for
// another base moves the counter only up; Counter.Advance does. A fleet of
// TPMs that never had counters needs one approval per image; a box with
// another base needs its own, which `qapi tpm counter read` reveals at
// commissioning.
//
// # Sessions
//
// The storage root key is the owner hierarchy's primary key from the TCG
// ECC P-256 template, created again as needed: the same owner seed always
// yields the same key, so it needs no persistent handle, and its name
// identifies the TPM. That name is computed from the public area the TPM
// returns, the one the sessions are salted to, so a key substituted on the
// bus fails the comparison with a blob's name. The commands that carry a
// secret (TPM2_Create going in, TPM2_Unseal coming out) run in sessions
// salted to the storage root key, with AES-128-CFB parameter encryption,
// so the secret never crosses the bus in the clear.
//
// # Endorsement
//
// What the salt cannot stop alone is an interposer already on the bus at
// the first seal, answering with a storage root key of its own.
// TPM.CheckEndorsement closes that gap where the manufacturer provisioned
// an endorsement key (EK) certificate, at NV index 0x01c0000a (ECC) or
// 0x01c00002 (RSA): it verifies the certificate against the manufacturers'
// roots the caller trusts, compares the certificate's key with the EK the
// TPM creates, and then proves the storage root key resident in that same
// TPM by credential activation: a secret encrypted here to the EK for the
// storage root key's name comes back only from the TPM holding both. The
// storage root key is a decryption key and cannot be certified by a
// signature, and the EK cannot sign either; activation is the TPM's own
// way to relate the two. OpenStore runs the check before its first seal
// when StoreOptions.EKRoots is set, and seals nothing if it fails; a TPM
// without an EK certificate (some firmware TPMs, swtpm unless set up with
// one) fails it unless StoreOptions.EKOptional is set. After the first
// seal the blobs' storage root key name does the same work at every
// unseal. The check is tested against the simulator with a certificate
// the test makes and against swtpm set up by swtpm_setup, whose local CA
// signs RSA and ECC P-384 EK certificates: the RSA one, at 0x01c00002, is
// the one read; EK certificates of the high range (0x01c00012 and on) are
// not read.
//
// # The blob format
//
// A Blob is a JSON file (format 1) holding: the storage root key's name;
// the sealed object's TPM2B_PUBLIC and TPM2B_PRIVATE; its policy digest;
// and either the expected SHA-256 values of the sealed PCRs, or the PKIX
// form of the authority's key and the counter base it was sealed for.
// Nothing in it is secret. It is written atomically with mode 0600.
//
// # Errors
//
// Errors that callers branch on have types, each matching a sentinel with
// errors.Is: *NoTPMError (ErrNoTPM) names every device path tried;
// *LockoutError (ErrLockout) says how long the TPM needs to forgive a try;
// *PCRMismatchError (ErrPCRMismatch) names each PCR that differs from the
// sealed policy or the approval, found by comparing the stored values with
// the current ones before asking the TPM; *OtherTPMError (ErrOtherTPM) says
// "sealed by another TPM" when the blob's storage root key name is not this
// TPM's; *RollbackError (ErrRollback) refuses a lower counter value.
// ErrNoEKCertificate and ErrEndorsement report the endorsement check.
// ErrNotApproved means a missing approval, or one the authority did not
// sign, or one for another counter base, or one the counter has voided, or
// an advance the authority did not sign; ErrDevMode answers OpenStore's
// development mode.
//
// The sealed objects carry no password (policy only, and noDA), so a
// dictionary-attack lockout, which some other program may cause, never
// blocks the keys; Status reports it.
package tpm
