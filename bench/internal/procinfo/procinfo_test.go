package procinfo

import (
	"strings"
	"testing"
)

func TestStatusKB(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		field   string
		want    int64
		wantErr bool
	}{
		{name: "VmHWM", status: "Name:\tnsqd\nVmPeak:\t  900 kB\nVmHWM:\t  184320 kB\nVmRSS:\t 1000 kB\n", field: "VmHWM:", want: 184320 << 10},
		{name: "VmRSS", status: "Name:\tnsqd\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n", field: "VmRSS:", want: 10 << 20},
		{name: "missing", status: "Name:\tnsqd\nVmRSS:\t 1000 kB\n", field: "VmHWM:", wantErr: true},
		{name: "bad unit", status: "VmHWM:\t 12 MB\n", field: "VmHWM:", wantErr: true},
		{name: "bad number", status: "VmHWM:\t x kB\n", field: "VmHWM:", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := StatusKB(strings.NewReader(tt.status), tt.field)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}
