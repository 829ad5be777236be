package logstore

import (
	"bytes"
	"testing"
)

// TestBudgetBoundsHotTailsTogether has many disk logs share a small budget: the bytes their
// hot tails hold together never exceed it, every record stays readable (from the files), and
// closing a log gives its share back.
func TestBudgetBoundsHotTailsTogether(t *testing.T) {
	const limit = 64 << 10
	budget := NewBudget(limit)
	body := bytes.Repeat([]byte("x"), 4<<10)
	logs := make([]*Log, 20)
	for i := range logs {
		logs[i] = openLog(t, Options{Dir: t.TempDir(), MemRecords: 1000, MemBytes: 1 << 30, Budget: budget})
	}
	for round := range 10 {
		for i, l := range logs {
			mustAppend(t, l, []Record{{ID: uint64(round), Body: body}, {ID: uint64(round), Body: body}}, uint64(2*round))
			if budget.Used() > limit {
				t.Fatalf("round %d log %d: the hot tails hold %d, over the budget of %d", round, i, budget.Used(), limit)
			}
		}
	}
	if budget.Used() == 0 {
		t.Fatal("nothing kept in memory at all")
	}
	var sum int64
	for _, l := range logs {
		sum += l.HotBytes()
		if got := readAll(t, l.NewReader(Pos{}), 7); len(got) != 20 {
			t.Fatalf("read %d records of 20", len(got))
		}
	}
	if sum != budget.Used() {
		t.Fatalf("the logs hold %d, the budget counts %d", sum, budget.Used())
	}
	for _, l := range logs {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if budget.Used() != 0 {
		t.Fatalf("%d bytes still counted after every log closed", budget.Used())
	}
}

// TestBudgetDropsEphemeralOverflow checks that a memory-only log keeps within the shared
// budget by dropping its oldest records, as its own bound makes it drop them.
func TestBudgetDropsEphemeralOverflow(t *testing.T) {
	budget := NewBudget(10 << 10)
	l := openLog(t, Options{MemRecords: 1000, MemBytes: 1 << 30, Budget: budget})
	body := bytes.Repeat([]byte("e"), 1<<10)
	for i := range 50 {
		mustAppend(t, l, []Record{{ID: uint64(i), Body: body}}, uint64(i))
		if budget.Used() > 10<<10 {
			t.Fatalf("memory log holds %d over the budget", budget.Used())
		}
	}
	if l.Tail() != 50 || l.Depth() == 0 || l.Depth() >= 10 {
		t.Fatalf("tail %d depth %d: want the newest few kept", l.Tail(), l.Depth())
	}
}

// TestDropHot checks that DropHot frees what readers are past, in a disk log only.
func TestDropHot(t *testing.T) {
	budget := NewBudget(1 << 20)
	l := openLog(t, Options{Dir: t.TempDir(), MemRecords: 1000, Budget: budget})
	mustAppend(t, l, testRecords(0, 10), 0)
	before := budget.Used()
	l.DropHot(6)
	if after := budget.Used(); after >= before || after != l.HotBytes() {
		t.Fatalf("budget %d before, %d after, log holds %d", before, after, l.HotBytes())
	}
	all := readAll(t, l.NewReader(Pos{}), 3) // the files still have them
	checkEntries(t, all, 0, 0)
	mustAppend(t, l, testRecords(10, 2), 10)
	rest := readAll(t, l.NewReader(all[6].Pos), 3)
	checkEntries(t, rest, 6, 6)
	if len(all) != 10 || len(rest) != 6 {
		t.Fatalf("read %d and %d records, want 10 and 6", len(all), len(rest))
	}

	mem := openLog(t, Options{MemRecords: 100, Budget: budget})
	mustAppend(t, mem, testRecords(0, 5), 0)
	mem.DropHot(5)
	if mem.Depth() != 5 {
		t.Fatalf("DropHot dropped records of a memory-only log: depth %d", mem.Depth())
	}
}
