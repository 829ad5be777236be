package protocol

import "encoding/json"

// IdentifyRequest is the JSON body of a client's IDENTIFY command. Durations are in
// milliseconds; for the numeric settings 0 asks for the server's default and -1, where
// allowed, disables the feature (reference §2.1). The server range-checks them.
//
// go-nsq also sends short_id and long_id, removed from NSQ in 1.0; decoding ignores them,
// like any other unknown field, so that newer clients can send extensions to older servers.
type IdentifyRequest struct {
	// ClientID is a free-form identifier shown in stats.
	ClientID string `json:"client_id"`
	// Hostname is the client's host, shown in stats.
	Hostname string `json:"hostname"`
	// UserAgent names the client library, such as "go-nsq/1.1.0".
	UserAgent string `json:"user_agent"`
	// FeatureNegotiation asks for an IdentifyResponse instead of a plain OK.
	FeatureNegotiation bool `json:"feature_negotiation"`
	// HeartbeatInterval in ms; -1 disables heartbeats (and with them SUB).
	HeartbeatInterval int `json:"heartbeat_interval"`
	// OutputBufferSize in bytes; -1 disables output buffering.
	OutputBufferSize int `json:"output_buffer_size"`
	// OutputBufferTimeout in ms; -1 disables the timed flush.
	OutputBufferTimeout int `json:"output_buffer_timeout"`
	// TLSv1 asks to upgrade the connection to TLS.
	TLSv1 bool `json:"tls_v1"`
	// Deflate asks for deflate compression.
	Deflate bool `json:"deflate"`
	// DeflateLevel is the deflate level wanted, 1..the server's maximum.
	DeflateLevel int `json:"deflate_level"`
	// Snappy asks for snappy compression; it excludes Deflate.
	Snappy bool `json:"snappy"`
	// SampleRate, 0..99, delivers only about that percentage of the channel's messages.
	SampleRate int32 `json:"sample_rate"`
	// MsgTimeout in ms overrides the server's message timeout for this client.
	MsgTimeout int `json:"msg_timeout"`
	// TopologyRegion is the client's region, for topology-aware delivery.
	TopologyRegion string `json:"topology_region"`
	// TopologyZone is the client's zone, for topology-aware delivery.
	TopologyZone string `json:"topology_zone"`
}

// IdentifyResponse is the JSON the server answers IDENTIFY with when the client asked for
// feature negotiation: NSQ 1.3's fields exactly. Timeouts are in milliseconds. go-nsq reads max_rdy_count, tls_v1,
// deflate, snappy and auth_required.
type IdentifyResponse struct {
	// MaxRdyCount is the largest RDY the server accepts.
	MaxRdyCount int64 `json:"max_rdy_count"`
	// Version is the server's NSQ version.
	Version string `json:"version"`
	// MaxMsgTimeout is the largest msg_timeout the server accepts.
	MaxMsgTimeout int64 `json:"max_msg_timeout"`
	// MsgTimeout is the message timeout in force for this client.
	MsgTimeout int64 `json:"msg_timeout"`
	// TLSv1 says the connection upgrades to TLS next.
	TLSv1 bool `json:"tls_v1"`
	// Deflate says the connection switches to deflate next.
	Deflate bool `json:"deflate"`
	// DeflateLevel is the deflate level granted.
	DeflateLevel int `json:"deflate_level"`
	// MaxDeflateLevel is the server's highest deflate level.
	MaxDeflateLevel int `json:"max_deflate_level"`
	// Snappy says the connection switches to snappy next.
	Snappy bool `json:"snappy"`
	// SampleRate is the sample rate in force.
	SampleRate int32 `json:"sample_rate"`
	// AuthRequired says the client must AUTH before SUB or publishing.
	AuthRequired bool `json:"auth_required"`
	// OutputBufferSize is the output buffer size in force, in bytes.
	OutputBufferSize int `json:"output_buffer_size"`
	// OutputBufferTimeout is the output buffer timeout in force.
	OutputBufferTimeout int64 `json:"output_buffer_timeout"`
}

// ParseIdentify decodes an IDENTIFY body. A body that is not a JSON object of the right
// field types is the fatal E_BAD_BODY "IDENTIFY failed to decode JSON body" NSQ sends, with
// the decoder's error kept as the cause.
func ParseIdentify(body []byte) (IdentifyRequest, error) {
	var req IdentifyRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return IdentifyRequest{}, wrapFatal(err, ErrBadBody, "IDENTIFY failed to decode JSON body")
	}
	return req, nil
}
