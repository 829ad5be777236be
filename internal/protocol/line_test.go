package protocol_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/protocol"
)

func TestReadLine(t *testing.T) {
	const tooLong16 = "E_INVALID command line longer than 16 bytes"
	tests := []struct {
		name    string
		in      string
		bufSize int // bufio buffer size (16 is bufio's minimum)
		maxLen  int
		want    []string // lines read before the final error
		err     error    // final error, if not a *protocol.Error
		errText string   // final *protocol.Error text
	}{
		{name: "one line", in: "NOP\n", bufSize: 64, maxLen: 64, want: []string{"NOP"}, err: io.EOF},
		{name: "crlf", in: "NOP\r\n", bufSize: 64, maxLen: 64, want: []string{"NOP"}, err: io.EOF},
		{name: "only one cr stripped", in: "NOP\r\r\n", bufSize: 64, maxLen: 64, want: []string{"NOP\r"}, err: io.EOF},
		{name: "cr alone is kept", in: "A\rB\n", bufSize: 64, maxLen: 64, want: []string{"A\rB"}, err: io.EOF},
		{name: "empty line", in: "\n\r\n", bufSize: 64, maxLen: 64, want: []string{"", ""}, err: io.EOF},
		{name: "pipelined", in: "RDY 1\nFIN 0123456789abcdef\nNOP\n", bufSize: 64, maxLen: 64,
			want: []string{"RDY 1", "FIN 0123456789abcdef", "NOP"}, err: io.EOF},
		{name: "partial line at EOF", in: "NOP\nSUB a", bufSize: 64, maxLen: 64, want: []string{"NOP"}, err: io.ErrUnexpectedEOF},
		{name: "empty input", in: "", bufSize: 64, maxLen: 64, err: io.EOF},
		{name: "exactly maxLen", in: "0123456789abcdef\n", bufSize: 64, maxLen: 16,
			want: []string{"0123456789abcdef"}, err: io.EOF},
		{name: "exactly maxLen with crlf", in: "0123456789abcdef\r\n", bufSize: 64, maxLen: 16,
			want: []string{"0123456789abcdef"}, err: io.EOF},
		{name: "one over maxLen", in: "0123456789abcdefX\n", bufSize: 64, maxLen: 16, errText: tooLong16},
		{name: "cr does not excuse a long line", in: "0123456789abcdefX\r\n", bufSize: 64, maxLen: 16, errText: tooLong16},
		{name: "over maxLen without newline", in: strings.Repeat("x", 100), bufSize: 16, maxLen: 16, errText: tooLong16},
		{name: "longer than buffer, within maxLen", in: strings.Repeat("y", 40) + "\nNOP\n", bufSize: 16, maxLen: 64,
			want: []string{strings.Repeat("y", 40), "NOP"}, err: io.EOF},
		{name: "longer than buffer, crlf at maxLen", in: strings.Repeat("y", 64) + "\r\n", bufSize: 16, maxLen: 64,
			want: []string{strings.Repeat("y", 64)}, err: io.EOF},
		{name: "longer than buffer and maxLen", in: strings.Repeat("y", 65) + "\n", bufSize: 16, maxLen: 64,
			errText: "E_INVALID command line longer than 64 bytes"},
		{name: "longer than buffer, EOF", in: strings.Repeat("y", 40), bufSize: 16, maxLen: 64, err: io.ErrUnexpectedEOF},
		{name: "maxLen 0 means buffer size", in: strings.Repeat("z", 15) + "\n" + strings.Repeat("z", 17) + "\n",
			bufSize: 16, maxLen: 0, want: []string{strings.Repeat("z", 15)}, errText: tooLong16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tt.in), tt.bufSize)
			var got []string
			var err error
			for {
				var line []byte
				line, err = protocol.ReadLine(r, tt.maxLen)
				if err != nil {
					break
				}
				got = append(got, string(line))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Errorf("lines = %q, want %q", got, tt.want)
			}
			if tt.errText != "" {
				wantError(t, err, tt.errText, true)
			} else if !errors.Is(err, tt.err) {
				t.Errorf("final error = %v, want %v", err, tt.err)
			}
		})
	}
}

func TestReadLineIsBounded(t *testing.T) {
	// A peer that never sends a newline must not make ReadLine read (and keep) more than
	// about maxLen bytes, whatever the buffer size.
	tests := []struct{ bufSize, maxLen int }{{16, 1000}, {4096, 100}, {4096, 5000}}
	for _, tt := range tests {
		src := &countingReader{r: &endless{pattern: []byte("garbage")}}
		r := bufio.NewReaderSize(src, tt.bufSize)
		_, err := protocol.ReadLine(r, tt.maxLen)
		wantError(t, err, "E_INVALID command line longer than "+strconv.Itoa(tt.maxLen)+" bytes", true)
		if limit := int64(max(tt.bufSize, tt.maxLen) + 2*tt.bufSize); src.n > limit {
			t.Errorf("buf %d maxLen %d: read %d bytes, want at most %d", tt.bufSize, tt.maxLen, src.n, limit)
		}
	}
}

func TestReadLinePassesReadErrors(t *testing.T) {
	boom := errors.New("boom")
	_, err := protocol.ReadLine(bufio.NewReader(errReader{boom}), 64)
	if !errors.Is(err, boom) {
		t.Errorf("error = %v, want %v", err, boom)
	}
	// A long line cut short by an error keeps the error too.
	r := bufio.NewReaderSize(io.MultiReader(strings.NewReader(strings.Repeat("a", 20)), errReader{boom}), 16)
	if _, err := protocol.ReadLine(r, 64); !errors.Is(err, boom) {
		t.Errorf("long line error = %v, want %v", err, boom)
	}
}

func TestReadLineLeavesBody(t *testing.T) {
	// PUB's body follows the line in the same buffer: ReadLine must not consume it.
	in := cat("PUB t\n", be32(2), "hiNOP\n")
	r := bufio.NewReader(bytes.NewReader(in))
	line, err := protocol.ReadLine(r, 64)
	if err != nil || string(line) != "PUB t" {
		t.Fatalf("ReadLine = (%q, %v)", line, err)
	}
	body, err := protocol.ReadBody(r, nil, 10, protocol.ErrBadMessage, "PUB")
	if err != nil || string(body) != "hi" {
		t.Fatalf("ReadBody = (%q, %v)", body, err)
	}
	line, err = protocol.ReadLine(r, 64)
	if err != nil || string(line) != "NOP" {
		t.Fatalf("ReadLine = (%q, %v)", line, err)
	}
}

func TestSplitParams(t *testing.T) {
	tests := []struct {
		line string
		want []string
	}{
		{"", []string{""}},
		{"NOP", []string{"NOP"}},
		{"SUB topic channel", []string{"SUB", "topic", "channel"}},
		{"RDY  5", []string{"RDY", "", "5"}},
		{"RDY ", []string{"RDY", ""}},
		{" x", []string{"", "x"}},
		{"a\tb", []string{"a\tb"}},
	}
	for _, tt := range tests {
		got := protocol.SplitParams([]byte(tt.line), nil)
		var strs []string
		for _, p := range got {
			strs = append(strs, string(p))
		}
		if strings.Join(strs, "|") != strings.Join(tt.want, "|") || len(strs) != len(tt.want) {
			t.Errorf("SplitParams(%q) = %q, want %q", tt.line, strs, tt.want)
		}
		// NSQ splits with bytes.Split; the results must agree.
		if ref := bytes.Split([]byte(tt.line), []byte(" ")); len(ref) != len(got) {
			t.Errorf("SplitParams(%q) gives %d params, bytes.Split %d", tt.line, len(got), len(ref))
		}
	}
}

func TestSplitParamsReusesDst(t *testing.T) {
	dst := make([][]byte, 0, 4)
	got := protocol.SplitParams([]byte("a b c"), dst)
	if &got[:1][0] != &dst[:1][0] {
		t.Error("SplitParams did not reuse dst")
	}
	// Reuse must not keep stale entries.
	got = protocol.SplitParams([]byte("x"), got)
	if len(got) != 1 || string(got[0]) != "x" {
		t.Errorf("second split = %q", got)
	}
}

func TestParseInt(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  error
	}{
		{"0", 0, nil},
		{"1", 1, nil},
		{"2500", 2500, nil},
		{"007", 7, nil},
		{"999999999999999999", 999999999999999999, nil}, // 18 digits, the short path's longest
		{"1000000000000000000", 1000000000000000000, nil},
		{"12345678901234567x", 0, strconv.ErrSyntax},
		{"9223372036854775807", math.MaxInt64, nil},
		{"9223372036854775808", 0, strconv.ErrRange},
		{"18446744073709551616", 0, strconv.ErrRange},
		{"99999999999999999999999", 0, strconv.ErrRange},
		{"99999999999999999999999x", 0, strconv.ErrSyntax},
		{"", 0, strconv.ErrSyntax},
		{"-1", 0, strconv.ErrSyntax},
		{"+1", 0, strconv.ErrSyntax},
		{" 1", 0, strconv.ErrSyntax},
		{"1 ", 0, strconv.ErrSyntax},
		{"1.5", 0, strconv.ErrSyntax},
		{"0x10", 0, strconv.ErrSyntax},
		{"１", 0, strconv.ErrSyntax},
	}
	for _, tt := range tests {
		got, err := protocol.ParseInt([]byte(tt.in))
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
			t.Errorf("ParseInt(%q) = (%d, %v), want (%d, %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}
