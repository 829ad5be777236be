package protocol_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"

	gonsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/protocol"
)

func TestParseIdentify(t *testing.T) {
	// What go-nsq 1.1.0 sends, short_id and long_id included.
	body := `{"client_id":"c1","deflate":false,"deflate_level":6,"feature_negotiation":true,
		"heartbeat_interval":30000,"hostname":"h1","long_id":"h1","msg_timeout":60000,
		"output_buffer_size":16384,"output_buffer_timeout":250,"sample_rate":5,"short_id":"h1",
		"snappy":true,"tls_v1":true,"user_agent":"go-nsq/1.1.0",
		"topology_region":"eu","topology_zone":"eu-1","some_future_field":[1,2]}`
	got, err := protocol.ParseIdentify([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := protocol.IdentifyRequest{
		ClientID: "c1", Hostname: "h1", UserAgent: "go-nsq/1.1.0", FeatureNegotiation: true,
		HeartbeatInterval: 30000, OutputBufferSize: 16384, OutputBufferTimeout: 250, TLSv1: true,
		DeflateLevel: 6, Snappy: true, SampleRate: 5, MsgTimeout: 60000,
		TopologyRegion: "eu", TopologyZone: "eu-1",
	}
	if got != want {
		t.Errorf("ParseIdentify =\n%+v, want\n%+v", got, want)
	}
}

func TestParseIdentifyErrors(t *testing.T) {
	tests := []struct{ name, body string }{
		{"not json", "hello"},
		{"truncated", `{"client_id":"c`},
		{"array", `[1]`},
		{"wrong type", `{"heartbeat_interval":"30s"}`},
		{"sample rate overflow", `{"sample_rate":3000000000}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := protocol.ParseIdentify([]byte(tt.body))
			wantError(t, err, "E_BAD_BODY IDENTIFY failed to decode JSON body", true)
			var pe *protocol.Error
			if errors.As(err, &pe) && pe.Err == nil {
				t.Error("decoder error not kept as the cause")
			}
		})
	}
}

func TestIdentifyJSONNames(t *testing.T) {
	tests := []struct {
		name string
		v    any
		keys []string
	}{
		{"request", protocol.IdentifyRequest{}, []string{
			"client_id", "deflate", "deflate_level", "feature_negotiation", "heartbeat_interval",
			"hostname", "msg_timeout", "output_buffer_size", "output_buffer_timeout", "sample_rate",
			"snappy", "tls_v1", "topology_region", "topology_zone", "user_agent"}},
		{"response", protocol.IdentifyResponse{}, []string{
			"auth_required", "deflate", "deflate_level", "max_deflate_level", "max_msg_timeout",
			"max_rdy_count", "msg_timeout", "output_buffer_size", "output_buffer_timeout",
			"sample_rate", "snappy", "tls_v1", "version"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			var keys []string
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, tt.keys) {
				t.Errorf("JSON keys = %q, want %q", keys, tt.keys)
			}
		})
	}
}

func TestIdentifyResponseForGoNSQ(t *testing.T) {
	resp := protocol.IdentifyResponse{MaxRdyCount: 2500, Version: "1.3.0", TLSv1: true,
		Snappy: true, AuthRequired: true, MaxMsgTimeout: 900000, MsgTimeout: 60000}
	b, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var got gonsq.IdentifyResponse
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := gonsq.IdentifyResponse{MaxRdyCount: 2500, TLSv1: true, Snappy: true, AuthRequired: true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("go-nsq reads %+v, want %+v", got, want)
	}
}
