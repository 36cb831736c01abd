package homeserver_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// TestMatrixNio runs scripts/clientcompat/nio_check.py (register, create a
// room, send, sync, read back with matrix-nio) against a test server. It
// needs Debian's python3-matrix-nio, which .ci/run installs; without it the
// test is skipped.
func TestMatrixNio(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import nio").Run(); err != nil {
		t.Skip("matrix-nio is not installed (apt-get install python3-matrix-nio)")
	}
	srv := mxtest.Start(t, "sqlite")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	script := filepath.Join("..", "..", "scripts", "clientcompat", "nio_check.py")
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", script, srv.URL).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nOK") {
		t.Fatalf("nio check failed: %v\n%s", err, out)
	}
}
