package nsqd

import (
	"errors"
	"os"
	"path/filepath"
)

// storageProbeBytes is what a storage probe writes: several blocks, so that a filesystem that
// only has room left in the partial blocks of open files still fails it.
const storageProbeBytes = 64 << 10

// probeStorage runs while storage is failing (a full disk, say): it writes and removes a file
// in the data path, and once that works the daemon is healthy again. Without it /ping would
// stay NOK until the next publish succeeded, and a load balancer that trusts /ping would
// never send that publish.
func (n *NSQD) probeStorage() {
	dir := n.getOpts().DataPath
	if n.Health() == nil || dir == "" {
		return
	}
	path := filepath.Join(dir, ".storage-probe")
	err := writeFileAtomic(path, make([]byte, storageProbeBytes), true)
	err = errors.Join(err, os.Remove(path))
	if err != nil {
		_ = os.Remove(path + ".tmp")
		return
	}
	n.storageResult(nil)
}
