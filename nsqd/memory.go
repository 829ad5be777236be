package nsqd

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// memoryFraction is the share of the available memory that --mem-queue-bytes defaults to:
// enough for consumers that keep up to read from memory, leaving the rest to what nsqd holds
// besides (messages in flight, connection buffers) and to the page cache the logs live in.
const memoryFraction = 8

// fallbackMemQueueBytes is the default when the available memory cannot be found out.
const fallbackMemQueueBytes = 256 << 20

// defaultMemQueueBytes is --mem-queue-bytes' default: an eighth of availableMemory.
func defaultMemQueueBytes() int64 {
	if m := availableMemory(); m > 0 {
		return m / memoryFraction
	}
	return fallbackMemQueueBytes
}

// availableMemory returns how much memory the process may use: the smallest of the machine's
// physical memory and the limit of the cgroup it runs in (a container's memory limit), or 0
// if none can be read.
func availableMemory() int64 {
	avail := int64(0)
	consider := func(n int64) {
		if n > 0 && (avail == 0 || n < avail) {
			avail = n
		}
	}
	consider(memTotal("/proc/meminfo"))
	consider(cgroupLimit("/sys/fs/cgroup/memory.max"))                   // cgroup v2
	consider(cgroupLimit("/sys/fs/cgroup/memory/memory.limit_in_bytes")) // cgroup v1
	return avail
}

// memTotal reads MemTotal from a meminfo file, in bytes; 0 if it cannot.
func memTotal(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		rest, ok := strings.CutPrefix(s.Text(), "MemTotal:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// cgroupLimit reads a cgroup memory limit in bytes; 0 if there is none ("max", or v1's
// near-infinite value) or it cannot be read.
func cgroupLimit(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n >= 1<<62 {
		return 0
	}
	return n
}
