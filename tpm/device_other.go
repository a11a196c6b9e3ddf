//go:build !linux

package tpm

import "errors"

// DevicePaths are the TPM devices Open tries; none outside Linux.
var DevicePaths []string

// Open reports a *NoTPMError: the appliance talks to its TPM only on Linux.
func Open(paths ...string) (*TPM, error) {
	e := &NoTPMError{Tried: paths}
	for range paths {
		e.Errs = append(e.Errs, errors.New("TPM access is implemented for Linux only"))
	}
	return nil, e
}
