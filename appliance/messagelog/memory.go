package messagelog

import (
	"time"

	"github.com/qapi-az/qapi/appliance/boltmem"
)

// releaseEvery is how often the writer drops the pages of the file's
// memory map that bbolt has read, so that the security server's resident
// memory stays flat while the log grows (see package boltmem).
const releaseEvery = time.Second

// releaseMemory drops the file's mapped pages. It runs on the writer
// goroutine, between commits, so no write transaction is open. A failure
// costs only memory, never a record, so it is not reported.
func (l *Log) releaseMemory() {
	l.mu.Lock()
	db := l.db
	l.mu.Unlock()
	if db != nil {
		_ = boltmem.Release(db)
	}
}
