// Command qapi-firstboot makes the machine's keys on its first boot and
// proves on every boot that they still open: the signing and authentication
// keys (ECDSA P-256, 4.1.2.6, 4.1.2.8) and the message-log secret (6.3),
// generated on the box and sealed by its TPM (6.2.3) into one blob file per
// key on /perm. It then serves GET /healthz on the management port: 200
// with the keys' public-key fingerprints and the memory in use, or 503 with
// the reason the keys did not open.
//
// A disk moved to another machine, or a machine whose TPM was cleared,
// opens nothing; the program says so on the console and in its log, and
// never makes new keys over blobs that exist (their certificates are
// registered with the certification centre).
//
// The security server opens the same blobs (keyStore "tpm" with tpm.dir set
// to the same folder) once they exist; the image's init starts it only then,
// so that the two never both make a key. Both open the TPM through the
// kernel's resource manager, /dev/tpmrm0, which admits several processes.
//
// /healthz also carries each key's public key, PKIX DER in base64, so that
// a certification centre can issue the certificates for them.
//
// With -dev the keys are kept in plain files (keys.FileStore) for machines
// without a TPM, and the program says so loudly.
//
// When the file named by -ek-roots exists, it holds the TPM manufacturers'
// certificates (PEM; self-signed ones are roots, the others intermediates),
// and before the first key is sealed the TPM's endorsement key certificate
// must verify against them and the storage root key must prove itself in
// that TPM (tpm.TPM.CheckEndorsement, clause 6.2.3); otherwise nothing is
// sealed and /healthz answers 503 saying why. /healthz then names the
// certificate's issuer as "endorsementIssuer". Without the file the first
// seal trusts the TPM unchecked and the log says so.
package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/tpm"
)

func main() {
	listen := flag.String("listen", ":4000", "address of the health endpoint")
	dir := flag.String("keys", "/perm/qapi/sealed", "`folder` of the sealed key blobs")
	dev := flag.Bool("dev", false, "development mode: keys in plain files, no TPM")
	devices := flag.String("tpm", strings.Join(tpm.DevicePaths, ","),
		"comma-separated TPM `devices` (or swtpm sockets) tried in order")
	ekRoots := flag.String("ek-roots", "", "PEM `file` of the TPM manufacturers' "+
		"certificates that the endorsement key certificate must chain to before the "+
		"first seal; no check when the file does not exist")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))

	report, err := openKeys(*dir, *dev, strings.Split(*devices, ","), *ekRoots)
	status := http.StatusOK
	if err != nil {
		status = http.StatusServiceUnavailable
		report = map[string]any{"error": err.Error()}
		slog.Error("KEYS REFUSED: the machine's keys do not unseal on this TPM; the "+
			"security server cannot sign or authenticate. If this disk came from another "+
			"machine or the TPM was cleared, put the disk back in its machine, or "+
			"re-register this machine for new keys", "dir", *dir, "err", err)
	}
	report["memory"] = memory()

	http.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		report["memory"] = memory()
		json.NewEncoder(w).Encode(report)
	})
	slog.Info("firstboot: health endpoint listening", "addr", *listen)
	if err := http.ListenAndServe(*listen, nil); err != nil {
		slog.Error("firstboot: serving health", "err", err)
		os.Exit(1)
	}
}

// openKeys opens (or on first boot creates) every key, with the TPM of the
// first of devices that opens, and returns what /healthz reports.
func openKeys(dir string, dev bool, devices []string, ekRoots string) (map[string]any,
	error) {
	var store keys.Store
	var endorsement string // the EK certificate's issuer, when checked
	mode := "tpm"
	_, statErr := os.Stat(filepath.Join(dir, string(keys.Signing)+".sealed"))
	first := errors.Is(statErr, fs.ErrNotExist)
	if dev {
		mode = "development"
		fs, err := keys.NewFileStore(dir)
		if err != nil {
			return nil, err
		}
		slog.Warn(keys.DevMode, "keyDir", dir)
		store = fs
	} else {
		t, err := tpm.Open(devices...)
		if err != nil {
			return nil, err
		}
		defer t.Close()
		if first {
			issuer, err := checkEndorsement(t, ekRoots)
			if err != nil {
				return nil, err
			}
			endorsement = issuer
		}
		ts, err := tpm.OpenStore(false, dir, tpm.StoreOptions{TPM: t})
		if err != nil {
			return nil, err
		}
		store = ts
	}
	defer store.Close()

	report := map[string]any{"keyMode": mode}
	for _, p := range []keys.Purpose{keys.Signing, keys.Authentication} {
		s, err := store.Signer(p)
		if err != nil {
			return nil, fmt.Errorf("%s key: %w", p, err)
		}
		spki, err := x509.MarshalPKIXPublicKey(s.Public())
		if err != nil {
			return nil, fmt.Errorf("%s key: %w", p, err)
		}
		sum := sha256.Sum256(spki)
		report[string(p)+"PublicKeySHA256"] = hex.EncodeToString(sum[:])
		report[string(p)+"PublicKey"] = spki // base64 in JSON
	}
	if _, err := store.Secret(keys.LogEncryption); err != nil {
		return nil, fmt.Errorf("%s secret: %w", keys.LogEncryption, err)
	}
	event := "keys unsealed"
	if first && !dev {
		event = "first boot: keys generated and sealed to this TPM"
	}
	report["createdThisBoot"] = first
	if endorsement != "" {
		report["endorsementIssuer"] = endorsement
	}
	slog.Info("firstboot: "+event, "mode", mode,
		"signingPublicKeySHA256", report["signingPublicKeySHA256"],
		"authenticationPublicKeySHA256", report["authenticationPublicKeySHA256"])
	return report, nil
}

// memory returns /proc/meminfo's MemTotal and MemAvailable.
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

// checkEndorsement checks the TPM's endorsement against the manufacturers'
// certificates in the PEM file at path, before the first seal, and returns
// the EK certificate's issuer. Without the file it checks nothing, says so
// in the log and returns "".
func checkEndorsement(t *tpm.TPM, path string) (string, error) {
	b, err := os.ReadFile(path)
	if path == "" || errors.Is(err, fs.ErrNotExist) {
		slog.Warn("firstboot: TPM endorsement not checked: no manufacturer certificates "+
			"at -ek-roots; the first seal trusts this TPM as it answers", "ekRoots", path)
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("TPM manufacturer certificates: %w", err)
	}
	roots, intermediates, err := tpm.ParseManufacturerCertificates(b)
	if err != nil {
		return "", fmt.Errorf("TPM manufacturer certificates %s: %w; put the "+
			"manufacturers' certificates there, or remove the file", path, err)
	}
	e, err := t.CheckEndorsement(roots, intermediates)
	if err != nil {
		return "", fmt.Errorf("nothing sealed: %w", err)
	}
	slog.Info("firstboot: TPM endorsement checked: the storage root key is this TPM's",
		"ekIssuer", e.Certificate.Issuer.String())
	return e.Certificate.Issuer.String(), nil
}
