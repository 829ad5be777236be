package lookupd

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the tests of package lookupd and its black-box tests (one binary), then fails
// if any goroutine is left: every daemon and peer a test starts must be gone when it ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
