package nsq_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the client's tests, then fails if any goroutine is left: a stopped Producer or
// Consumer, and every daemon a test starts, must leave nothing running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
