package tpm

import (
	"testing"
)

// The simulator runs the reference TPM in-process, far faster than a
// discrete TPM; these figures bound what this package adds, not what a
// real TPM takes.

func BenchmarkSeal(b *testing.B) {
	tp := newSim(b)
	secret := make([]byte, 32)
	for b.Loop() {
		if _, err := tp.Seal(secret, SealOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnseal(b *testing.B) {
	for _, bc := range []struct {
		name      string
		authority bool
	}{{"PCR 7", false}, {"approved", true}} {
		b.Run(bc.name, func(b *testing.B) {
			tp := newSim(b)
			var opts SealOptions
			var a *Approval
			if bc.authority {
				operator := newKey(b)
				opts.Authority = &operator.PublicKey
				a = approve(b, tp, operator, []int{7}, 0, 0)
			}
			blob, err := tp.Seal(make([]byte, 32), opts)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := tp.Unseal(blob, a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
