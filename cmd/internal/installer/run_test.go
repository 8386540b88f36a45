package installer

import (
	"context"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// TestRunUninstallMarksCleanup: the uninstall subcommand, like the
// uninstall at the end of install, hands the node to kata-cleanup.
func TestRunUninstallMarksCleanup(t *testing.T) {
	in := installNode(t, true, map[string]string{kataLabel: "true", runtimeLabel: "containerd"})
	assert.Check(t, is.Equal(nodeLabels(t, in.cs)[kataLabel], "true"))
	sd, rt := fakeSystemd{}, fakeCRI{}
	assert.NilError(t, Run(context.Background(), in.config(&sd, &rt), RunOptions{Command: "uninstall"}))
	assert.Check(t, is.Equal(nodeLabels(t, in.cs)[kataLabel], "cleanup"))
}

func TestRunUnknownCommand(t *testing.T) {
	err := Run(context.Background(), &Config{}, RunOptions{Command: "reinstall"})
	assert.Check(t, is.ErrorContains(err, `unknown subcommand "reinstall"`))
}
