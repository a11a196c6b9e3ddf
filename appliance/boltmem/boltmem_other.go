//go:build !linux

package boltmem

func release(string) error { return nil }
