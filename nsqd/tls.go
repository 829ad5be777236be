package nsqd

import (
	"errors"
	"time"
)

// tlsHandshakeTimeout bounds the TLS handshake of an IDENTIFY upgrade, as NSQ's.
const tlsHandshakeTimeout = 5 * time.Second

// errTLSAgain refuses a second TLS upgrade, or one after compression, on a connection.
var errTLSAgain = errors.New("IDENTIFY cannot negotiate TLS again, or after compression")
