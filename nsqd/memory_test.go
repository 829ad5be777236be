package nsqd

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMemoryLimits(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	meminfo := write("meminfo", "MemFree:   1000 kB\nMemTotal:       24576000 kB\nSwapTotal: 0 kB\n")
	if got := memTotal(meminfo); got != 24576000<<10 {
		t.Errorf("MemTotal = %d", got)
	}
	for content, want := range map[string]int64{
		"max\n":                 0,
		"536870912\n":           536870912,
		"9223372036854771712\n": 0, // cgroup v1 without a limit
		"garbage":               0,
	} {
		if got := cgroupLimit(write("limit", content)); got != want {
			t.Errorf("cgroupLimit(%q) = %d, want %d", content, got, want)
		}
	}
	if memTotal(filepath.Join(dir, "missing")) != 0 || cgroupLimit(filepath.Join(dir, "missing")) != 0 {
		t.Error("a missing file gave a limit")
	}
	if d := defaultMemQueueBytes(); d <= 0 || d > availableMemory() && availableMemory() > 0 {
		t.Errorf("default %d with %d available", d, availableMemory())
	}
}
