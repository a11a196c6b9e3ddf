// Package keys defines how the security server reaches its private keys and
// secrets: the signing key (4.1.2.8), the authentication key that TLS between
// security servers uses (4.1.2.6), and the message-log encryption key (6.3).
//
// Store is the one interface every consumer uses. The software
// implementation in this package keeps keys in files and exists for
// development and the sandbox; the appliance uses the TPM-sealed
// implementation in package tpm (clause 6.2.3).
package keys

import (
	"crypto"
	"errors"
)

// Purpose names one key of the security server.
type Purpose string

// The keys a security server holds.
const (
	// Signing signs every message the server sends (2.2.1, 4.1.2.8).
	Signing Purpose = "signing"
	// Authentication authenticates the server in TLS to other security
	// servers (2.2.4, 4.1.2.6).
	Authentication Purpose = "authentication"
	// LogEncryption is the symmetric key that encrypts the message log at
	// rest (6.3).
	LogEncryption Purpose = "log-encryption"
)

// ErrNotFound is returned (wrapped) when a key does not exist and the caller
// asked not to create it.
var ErrNotFound = errors.New("key not found")

// Store holds the security server's keys. Implementations must be safe for
// concurrent use.
type Store interface {
	// Signer returns the ECDSA P-256 private key for purpose (Signing or
	// Authentication), generating and persisting it on first use. The
	// returned signer stays usable after the Store is closed only if the
	// implementation says so.
	Signer(p Purpose) (crypto.Signer, error)

	// Secret returns the 32-byte symmetric secret for purpose (LogEncryption),
	// generating and persisting it on first use.
	Secret(p Purpose) ([]byte, error)

	// Close releases resources (a TPM connection, for example).
	Close() error
}
