package server

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/tpm"
)

// OpenKeyStore opens the key store the configuration names: the
// TPM-sealed store of package tpm for "tpm" (clause 6.2.3), or a
// keys.FileStore in KeyDir for "dev". A program that gets a "dev" store
// must say so loudly (keys.DevMode). Close the store when done.
func OpenKeyStore(cfg *Config) (keys.Store, error) {
	if cfg.KeyStore == KeyStoreDev {
		return keys.NewFileStore(cfg.KeyDirPath())
	}
	var opts tpm.StoreOptions
	if cfg.TPM.Authority != "" {
		pub, err := readECPublicKey(cfg.path(cfg.TPM.Authority))
		if err != nil {
			return nil, fmt.Errorf("tpm.authority: %w", err)
		}
		a, err := tpm.ReadApprovalFile(cfg.path(cfg.TPM.Approval))
		if err != nil {
			return nil, fmt.Errorf("tpm.approval: %w", err)
		}
		opts.Authority, opts.Approval = pub, a
	}
	var dev *tpm.TPM
	if len(cfg.TPM.Devices) > 0 {
		var err error
		if dev, err = tpm.Open(cfg.TPM.Devices...); err != nil {
			return nil, fmt.Errorf("open the TPM of tpm.devices: %w", err)
		}
		opts.TPM = dev
	}
	st, err := tpm.OpenStore(false, cfg.path(cfg.TPM.Dir), opts)
	if err != nil {
		if dev != nil {
			dev.Close()
		}
		if errors.Is(err, tpm.ErrNoTPM) {
			return nil, fmt.Errorf("%w; on a machine without a TPM set keyStore to \"dev\" "+
				"(development only)", err)
		}
		return nil, err
	}
	if dev == nil {
		return st, nil
	}
	return &deviceStore{Store: st, dev: dev}, nil
}

// deviceStore is a TPM store over a device this package opened, closed with
// the store.
type deviceStore struct {
	*tpm.Store
	dev *tpm.TPM
}

func (s *deviceStore) Close() error {
	return errors.Join(s.Store.Close(), s.dev.Close())
}

// readECPublicKey reads a PEM PKIX ECDSA public key.
func readECPublicKey(path string) (*ecdsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s holds no PEM block", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s is not an ECDSA public key", path)
	}
	return pub, nil
}
