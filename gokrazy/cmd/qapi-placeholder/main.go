// Command qapi-placeholder stands in for the security server in the
// appliance image while the server cannot run there: it proves the boot
// chain (kernel, initramfs, gokrazy, the perm partition, the network)
// without it. It keeps a development-mode ECDSA P-256 key in a file in its
// $HOME on /perm, unsealed (it says so), and serves GET /healthz on the
// management port with the key's fingerprint, the memory in use and the
// uptime, as JSON.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	listen := flag.String("listen", ":4000", "address of the health endpoint")
	keyPath := flag.String("key", "", "key file (default $HOME/dev-key.pem)")
	flag.String("config", "", "ignored: accepted for the server's command line")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))

	if *keyPath == "" {
		*keyPath = filepath.Join(os.Getenv("HOME"), "dev-key.pem")
	}
	fp, err := loadOrCreate(*keyPath)
	if err != nil {
		slog.Error("placeholder: no key", "err", err)
		os.Exit(1)
	}
	slog.Warn("placeholder: DEVELOPMENT MODE, key kept unsealed on /perm",
		"path", *keyPath, "publicKeySHA256", fp)

	http.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"program":         "qapi-placeholder",
			"keyMode":         "development",
			"publicKeySHA256": fp,
			"memory":          memory(),
		})
	})
	slog.Info("placeholder: listening", "addr", *listen)
	if err := http.ListenAndServe(*listen, nil); err != nil {
		slog.Error("placeholder: serving", "err", err)
		os.Exit(1)
	}
}

// loadOrCreate returns the SHA-256 of the key's SubjectPublicKeyInfo,
// creating the key on first use.
func loadOrCreate(path string) (string, error) {
	var key *ecdsa.PrivateKey
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", err
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", err
		}
		out := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
		if err := os.WriteFile(path, out, 0o600); err != nil {
			return "", fmt.Errorf("storing the new key: %w", err)
		}
	case err != nil:
		return "", err
	default:
		blk, _ := pem.Decode(b)
		if blk == nil {
			return "", fmt.Errorf("%s holds no PEM key", path)
		}
		if key, err = x509.ParseECPrivateKey(blk.Bytes); err != nil {
			return "", fmt.Errorf("parsing %s: %w", path, err)
		}
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:]), nil
}

// memory returns /proc/meminfo's MemTotal and MemAvailable in KiB.
func memory() map[string]string {
	b, _ := os.ReadFile("/proc/meminfo")
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "MemTotal" || k == "MemAvailable") {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}
