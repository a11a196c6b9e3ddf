// Package boltmem keeps the memory map of a bbolt database from counting
// against a process's resident memory once its pages have been read.
//
// bbolt reads its file through a shared, read-only memory map. Every page
// a transaction touches stays mapped into the process until memory runs
// short, so a message log that only grows makes the security server's
// resident set grow with it although those pages are clean copies of the
// file. Release drops the mappings; the pages stay in the kernel's page
// cache, and the next read maps them again at the cost of a minor fault.
package boltmem

import (
	bolt "go.etcd.io/bbolt"
)

// Release drops this process's page mappings of db's file. Nothing is
// lost: the map is read-only and bbolt writes through the file, so the
// next access to a page maps it again from the page cache. Release holds a
// read transaction while it works, so that bbolt cannot move the map
// meanwhile; it must not be called from inside a transaction that writes.
// On systems other than Linux it does nothing.
func Release(db *bolt.DB) error {
	return db.View(func(*bolt.Tx) error {
		return release(db.Path())
	})
}
